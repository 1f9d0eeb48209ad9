"""Data-parallel fit over MPI (fastbp.distributed) under ``mpiexec -n 2`` and ``-n 3``
on this machine, against one process on the same global minibatches; and Hogwild.

The MPI runs need mpi4py and an ``mpiexec`` (``pip install 'fastbp[mpi]'``); CI
installs them.  Each scenario is tests/mpi_worker.py run by mpiexec with a timeout,
so a hang fails the test instead of stalling the suite."""
from __future__ import annotations

import os
import shutil
import re
import subprocess
import sys
import time

import numpy as np
import pytest

import fastbp as fb
from fastbp import layers as L

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "mpi_worker.py")


def _mpiexec():
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or \
        shutil.which("mpiexec")
    return found


def _needs_mpi():
    pytest.importorskip("mpi4py")
    if _mpiexec() is None:
        pytest.skip("no mpiexec (pip install 'fastbp[mpi]')")


def _fastbp_path():
    """PYTHONPATH for the workers: the folder of the fastbp this test imported (the
    installed package in CI, the checkout in a development install), so that they run
    the same code and share its kernel cache."""
    return os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))]
                           + [p for p in [os.environ.get("PYTHONPATH")] if p])


def _run(scenario, out, ranks, timeout=600, env=None):
    """Run a scenario; returns (exit code, output, the time it ended)."""
    cmd = [sys.executable, WORKER, scenario, str(out)]
    if ranks:
        cmd = [_mpiexec(), "-n", str(ranks)] + cmd
    full_env = dict(os.environ, **(env or {}))
    full_env["PYTHONPATH"] = _fastbp_path()
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"{scenario} on {ranks} ranks hung past {timeout} s:\n"
                    f"{(e.stdout or b'')!s}\n{(e.stderr or b'')!s}")
    return done.returncode, done.stdout + done.stderr, time.time()


def _after_failure(text, ended):
    """Seconds from rank 1's failure (it prints the time) to the end of the job."""
    match = re.search(r"rank 1 fails at ([0-9.]+)", text)
    assert match, text
    return ended - float(match.group(1))


def _ok(scenario, out, ranks):
    code, text, _ = _run(scenario, out, ranks)
    assert code == 0, text
    return text


def _load(out, name, rank=0):
    with np.load(os.path.join(out, f"{name}-{rank}.npz"), allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _same_within(a, b, tol):
    for k in ("params", "tables", "state", "loss"):
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=tol, err_msg=k)


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("mpi")


@pytest.mark.parametrize("scenario", ["mlp", "window", "accumulate", "bilstm"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_ranks_equal_one_process_and_replicas_are_identical(out, scenario, ranks):
    """float64: R ranks on the same global minibatches as one process, within 1e-12
    (only the order of the sums differs); every rank's weights the same bits."""
    _needs_mpi()
    folder = out / f"{scenario}{ranks}"
    folder.mkdir()
    _ok(scenario, folder, 0)
    one = _load(folder, scenario)
    _ok(scenario, folder, ranks)
    ranked = [_load(folder, scenario, r) for r in range(ranks)]
    _same_within(ranked[0], one, 1e-12)
    for r in range(1, ranks):
        for k in ranked[0]:
            np.testing.assert_array_equal(ranked[r][k], ranked[0][k], err_msg=f"rank {r} {k}")
    assert not np.array_equal(one["params"], _fresh_params(scenario))  # it trained


def _fresh_params(scenario):
    import importlib.util
    spec = importlib.util.spec_from_file_location("mpi_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    m, _, _ = getattr(mod, scenario if scenario in ("window", "bilstm") else "mlp")()
    return m.params.copy()


def test_resume_from_rank0_checkpoint_on_another_rank_count(out):
    """One epoch on 2 ranks (rank 0 saves a checkpoint), one more on 3 ranks from it: the
    weights of two uninterrupted epochs in one process, within 1e-12."""
    _needs_mpi()
    folder = out / "resume"
    folder.mkdir()
    text = _ok("resume_first", folder, 2)
    assert os.path.exists(folder / "resume.fbp"), text
    assert sorted(os.listdir(folder)) == ["resume.fbp", "resume_first-0.npz",
                                          "resume_first-1.npz"]  # rank 0 alone wrote it
    _ok("resume_second", folder, 3)
    _ok("uninterrupted", folder, 0)
    resumed, whole = _load(folder, "resume_second"), _load(folder, "uninterrupted")
    for k in ("params", "tables", "state"):
        np.testing.assert_allclose(resumed[k], whole[k], rtol=0, atol=1e-12, err_msg=k)
    np.testing.assert_allclose(resumed["loss"], whole["loss"][1:], rtol=0, atol=1e-12)


def test_a_rank_that_raises_stops_the_others_with_a_named_error(out):
    _needs_mpi()
    code, text, ended = _run("raise", out, 2)
    assert code != 0
    assert "rank 1's layer failed on purpose" in text, text  # rank 1's own error
    assert "DistributedError: rank(s) [1] raised an error in minibatch" in text, text  # rank 0's
    assert _after_failure(text, ended) < 30


def test_a_rank_that_dies_ends_the_job(out):
    """Killed by a signal (the OOM killer's SIGKILL): mpiexec says so and stops the other
    ranks at once.  Gone through os._exit(3): it passes the exit code on."""
    _needs_mpi()
    code, text, ended = _run("killed", out, 2)
    assert code == 9, text
    assert "BAD TERMINATION OF ONE OF YOUR APPLICATION PROCESSES" in text
    assert "CLEANING UP REMAINING PROCESSES" in text
    assert _after_failure(text, ended) < 30
    code, text, ended = _run("die", out, 2)
    assert code == 3, text
    assert _after_failure(text, ended) < 30


def test_a_rank_that_vanishes_makes_the_others_give_up_within_the_timeout(out):
    """Rank 1 leaves before fit: rank 0 waits FASTBP_MPI_TIMEOUT seconds at its first
    collective, raises DistributedError and ends the job (MPI_Abort) instead of hanging."""
    _needs_mpi()
    t0 = time.time()
    code, text, ended = _run("vanish", out, 2, env={"FASTBP_MPI_TIMEOUT": "5"})
    assert code != 0, text
    assert "DistributedError: rank 0 of 2 waited 5 s for the other ranks" in text, text
    assert ended - t0 < 60, text  # the wait comes before any kernel is compiled


def test_ranks_that_disagree_on_the_data_size_raise_a_named_error(out):
    _needs_mpi()
    code, text, _ = _run("disagree", out, 2)
    assert code != 0, text
    assert ("DistributedError: fit(distributed=True): rank(s) [1] differ from rank 0 on the "
            "number of training rows (rank 0: 101, rank 1: 100)") in text


def test_ranks_that_disagree_on_the_model_raise_a_named_error(out):
    _needs_mpi()
    code, text, _ = _run("disagree_model", out, 2)
    assert code != 0
    assert text.count("DistributedError: fit(distributed=True): rank(s) [1] differ from "
                      "rank 0 on the model (its config)") >= 2, text  # both ranks say so


def test_a_batch_smaller_than_the_ranks_is_refused(out):
    _needs_mpi()
    code, text, _ = _run("small_batch", out, 3)
    assert code != 0
    assert "ValueError: fit(distributed=True): batch_size 2 is smaller than the 3 ranks" in text


def test_ranks_times_threads_stay_within_the_cores(out):
    _needs_mpi()
    cores = len(os.sched_getaffinity(0))
    if cores > 2:
        pytest.skip("the scenario counts on 2 cores")
    text = _ok("threads", out, 2)
    assert text.count("threads 1,") == 2, text
    assert "set_num_threads(2) with 2 ranks on 2 cores would run 4 threads" in text, text
    folder = out / "oversubscribed"
    folder.mkdir()
    text = _ok("mlp", folder, 3)
    assert "3 ranks share this node's 2 cores (oversubscribed)" in text, text


def test_one_process_warns_and_trains_as_a_plain_fit(out):
    """distributed=True outside mpiexec: a warning, then the plain fit's numbers."""
    pytest.importorskip("mpi4py")
    code = (
        "import warnings, numpy as np, fastbp as fb\n"
        "import mpi_worker as w\n"
        "a, X, y = w.mlp(); b, _, _ = w.mlp()\n"
        "with warnings.catch_warnings(record=True) as seen:\n"
        "    warnings.simplefilter('always')\n"
        "    a.fit(X, y, epochs=2, batch_size=16, seed=5, distributed=True)\n"
        "b.fit(X, y, epochs=2, batch_size=16, seed=5)\n"
        "assert np.array_equal(a.params, b.params)\n"
        "print([str(x.message) for x in seen])\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=240, cwd=HERE, stdin=subprocess.DEVNULL,
                          env=dict(os.environ, PYTHONPATH=_fastbp_path()))
    assert done.returncode == 0, done.stderr
    assert "the only MPI rank" in done.stdout


def _small():
    m = fb.Sequential([L.Dense(6, 8, activation="tanh"), L.Dense(8, 3)], dtype="float64",
                      seed=3)
    m.compile(optimizer=fb.optim.Adam(lr=1e-2), loss="softmax_cross_entropy")
    rng = np.random.default_rng(0)
    return m, rng.standard_normal((40, 6)), rng.integers(0, 3, 40)


def test_without_mpi4py_the_error_names_the_extra(monkeypatch):
    m, X, y = _small()
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install 'fastbp\[mpi\]'"):
        m.fit(X, y, distributed=True)


def test_bad_flags_are_refused_before_training():
    m, X, y = _small()
    before = m.params.copy()
    with pytest.raises(TypeError, match="distributed must be a bool, got 'yes'"):
        m.fit(X, y, distributed="yes")
    with pytest.raises(ValueError, match="exclude each other"):
        m.fit(X, y, distributed=True, hogwild=True)
    with pytest.raises(ValueError, match="without accumulation; got accumulate=2"):
        m.fit(X, y, hogwild=True, accumulate=2)
    np.testing.assert_array_equal(m.params, before)


# -- Hogwild ------------------------------------------------------------------------------
def _window_tagger(seed=0):
    import importlib.util
    spec = importlib.util.spec_from_file_location("mpi_worker", WORKER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.window()


def test_hogwild_trains_the_window_tagger_without_locks():
    """Two threads on disjoint minibatches: the loss falls as the synchronous fit's does,
    every minibatch is seen once per epoch (the optimizer counts them), and the result is
    near (not equal to) the synchronous one."""
    before = fb.get_num_threads()
    try:
        fb.set_num_threads(min(2, fb.threads.numba.config.NUMBA_NUM_THREADS))
        hog, X, y = _window_tagger()
        sync, _, _ = _window_tagger()
        h1 = hog.fit(X, y, epochs=8, batch_size=8, seed=1, hogwild=True)
        h2 = sync.fit(X, y, epochs=8, batch_size=8, seed=1)
    finally:
        fb.set_num_threads(before)
    n_batches = -(-83 // 8)
    assert int(hog.optimizer.step[0]) <= 8 * n_batches  # racing increments may be lost
    assert int(hog.optimizer.step[0]) >= 8 * n_batches // 2
    assert h1["loss"][-1] < 0.8 * h1["loss"][0]
    assert abs(h1["loss"][-1] - h2["loss"][-1]) < 0.25 * h2["loss"][0]
    assert np.isfinite(hog.params).all() and np.isfinite(hog.tables).all()
