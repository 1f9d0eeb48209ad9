"""Checkpoints survive a SIGKILL mid-save; the kernel cache is emptied when the kernel
sources change."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import fastbp as fb
from fastbp import _cache

SAVER = textwrap.dedent("""
    import sys, numpy as np, fastbp as fb
    path = sys.argv[1]
    m = fb.Sequential([fb.layers.Dense(300, 300), fb.layers.Dense(300, 300)], dtype="float64")
    m.compile(fb.optim.Adam(), "mse")
    print("ready", flush=True)
    i = 0
    while True:
        m.params[:] = i
        m.save(path)
        i += 1
""")


@pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL")
def test_sigkill_during_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "ck.fbp"
    m = fb.Sequential([fb.layers.Dense(300, 300), fb.layers.Dense(300, 300)], dtype="float64")
    m.compile(fb.optim.Adam(), "mse")
    m.params[:] = -1.0
    m.save(path)
    for delay in (0.05, 0.2, 0.6):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = fb.load(path)  # never a torn file
        value = loaded.params[0]
        assert np.all(loaded.params == value)
        assert loaded.optimizer.state.shape == m.optimizer.state.shape
    # The next save removes temporary files a killed save left behind.
    m.save(path)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "ck.fbp"]
    assert leftovers == []


def test_cache_stamp_empties_a_folder_of_stale_kernels(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "engine.train_step-1.py311.nbi").write_bytes(b"index")
    (folder / "engine.train_step-1.py311.1.nbc").write_bytes(b"code")
    (folder / "other.txt").write_text("kept")
    monkeypatch.setattr(_cache, "kernel_cache_dirs", lambda: {str(folder)})
    _cache.ensure_fresh()  # no stamp yet: the cached kernels cannot be trusted
    assert sorted(p.name for p in folder.iterdir()) == ["fastbp-kernels.stamp", "other.txt"]
    (folder / "engine.train_step-1.py311.nbi").write_bytes(b"index")
    _cache.ensure_fresh()  # same sources: kept
    assert (folder / "engine.train_step-1.py311.nbi").exists()
    monkeypatch.setattr(_cache, "sources_hash", lambda: "changed")
    _cache.ensure_fresh()  # a kernel source changed: emptied
    assert not (folder / "engine.train_step-1.py311.nbi").exists()
    assert (folder / "fastbp-kernels.stamp").read_text() == "changed"


def test_sources_hash_covers_every_kernel_file():
    names = {os.path.basename(p) for p in _cache._sources()}
    assert {"interpreter.py", "planner.py", "dense.py", "optim.py", "embedding.py",
             "_config.py"} <= names


def test_cached_callers_of_the_blas_kernels_run_from_the_cache(tmp_path):
    """User functions with cache=True that call the dense kernels (the BLAS path, an
    external symbol linked when the cached code is loaded) give the same results when
    loaded from numba's cache in a fresh process."""
    script = tmp_path / "caller.py"
    script.write_text(textwrap.dedent("""
        import sys
        import numba
        import numpy as np
        from fastbp.kernels.dense import dense_backward, dense_forward

        numba.get_num_threads()  # before the cached callers load (fastbp.kernels' docstring)

        @numba.njit(cache=True)
        def forward(n, x, W, b, a, work):
            for _ in range(n):
                dense_forward(x, W, b, a, work, 1, 0.0, False)

        @numba.njit(cache=True)
        def backward(n, x, a, W, g, dW, db, gin):
            for _ in range(n):
                dense_backward(x, a, W, g, dW, db, gin, 1, 0.0, True, False)

        m, k, n = 32, 64, 128
        x = np.ones((m, k), np.float32)
        W = np.ones((k, n), np.float32)
        a = np.zeros((m, n), np.float32)
        forward(2, x, W, np.zeros(n, np.float32), a, np.empty(m * n, np.float32))
        g = np.ones((m, n), np.float32)
        dW, db, gin = np.zeros_like(W), np.zeros(n, np.float32), np.zeros_like(x)
        backward(2, x, a, W, g, dW, db, gin)
        print(a.sum(), dW.sum(), gin.sum())
    """))
    # The script's cache goes to tmp_path/__pycache__; fastbp's kernels use theirs.
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    outputs = []
    for _ in range(2):
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             env=env, timeout=300)
        assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
        outputs.append(run.stdout.split())
    assert outputs[0] == outputs[1]
    assert [float(v) for v in outputs[0]] == [32 * 128 * 64.0, 64 * 128 * 32.0, 32 * 64 * 128.0]
    assert any(p.suffix == ".nbi" for p in tmp_path.rglob("*")), "nothing was cached"


def test_first_run_after_compiling_equals_runs_from_the_cache(tmp_path):
    """The process that compiles the kernels (an empty cache) and a later one that
    loads them from the cache train to the same bits.  With LLVM's ``contract`` flag
    the two fused different multiply-adds and differed in the last bits."""
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent("""
        import hashlib
        import numpy as np
        import fastbp as fb
        rng = np.random.default_rng(0)
        X = rng.standard_normal((600, 40)).astype(np.float32)
        y = rng.integers(0, 5, 600)
        m = fb.Sequential([fb.layers.Dense(40, 64, activation="tanh"), fb.layers.Dense(64, 5)],
                          seed=0)
        m.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
        m.fit(X, y, epochs=2, batch_size=64, seed=1)
        print(hashlib.sha256(m.params.tobytes()).hexdigest())
    """))
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    digests = []
    for _ in range(2):
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                             env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        digests.append(run.stdout.split()[-1])
    assert any(p.suffix == ".nbi" for p in (tmp_path / "cache").rglob("*")), "nothing cached"
    assert digests[0] == digests[1]
