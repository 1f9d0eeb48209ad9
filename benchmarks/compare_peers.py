"""fastbp against its peers: PyTorch (CPU, eager) and JAX (jit + optax), one process.

Every workload is written the way a user of each library would write it:

* fastbp: ``Sequential`` + ``compile`` + ``fit`` (or ``train_on_batch``);
* PyTorch: ``nn.Sequential``, ``torch.optim``, ``loss.backward()`` in a Python loop;
* JAX (when ``jax`` and ``optax`` import): the whole training step under ``jax.jit``
  with an optax optimizer, called from a Python loop; for the fig. 7.8 program also
  the whole program (100 epochs, shuffling included) as one ``jax.jit`` with ``lax.scan``.

Each peer is warmed up first (JIT compilation, caches), then the peers take turns,
``--repeats`` rounds, so slow drifts of a shared machine hit all of them alike.
Reported: medians (time.perf_counter), and speed ratios against PyTorch
(``fastbp/torch = torch_time / fastbp_time``: above 1 means fastbp is faster).

Usage (from the repository root)::

    unset OPENBLAS_CORETYPE OPENBLAS_L2_SIZE    # let OpenBLAS pick its AVX-512 kernels
    .venv/bin/python -m benchmarks.compare_peers                 # everything, ~5 min
    .venv/bin/python -m benchmarks.compare_peers --quick         # a fast smoke run
    .venv/bin/python -m benchmarks.compare_peers --workloads fig7_8,mlp_small --repeats 7 \
        --threads 2 --markdown-out results.md

Workloads: fig7_8, mlp_small, mlp_784_b128, mlp_784_b1024, mnist, threads, startup,
optim_10m, window, pos, bilstm (see ``WORKLOADS`` below and docs/performance.md); pos_seeds
(the POS accuracy over five seeds) and bilstm_seeds (the BiLSTM tagger's over three) run
only when named.
"""

import argparse
import os
import sys
import time

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    # appended, so that a fastbp on PYTHONPATH still wins over the checkout's
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from . import peer_workloads as W  # noqa: E402
from . import peer_workloads_seq as Q  # noqa: E402
from . import peer_workloads_sparse as S  # noqa: E402
from .peer_common import Report, have_jax, machine_info  # noqa: E402

WORKLOADS = ("fig7_8", "mlp_small", "mlp_784_b128", "mlp_784_b1024", "mnist", "threads",
             "startup", "optim_10m", "window", "pos", "bilstm")
#: Run only when named: the POS accuracy over five seeds takes about 3 minutes, the
#: BiLSTM tagger's over three seeds about 15 on 2 cores.
OPTIONAL = ("pos_seeds", "bilstm_seeds")

RUNNERS = {
    "fig7_8": W.workload_fig7_8,
    "mlp_small": W.workload_mlp_small,
    "mlp_784_b128": lambda args, rep: W.workload_mlp_784(args, rep, 128),
    "mlp_784_b1024": lambda args, rep: W.workload_mlp_784(args, rep, 1024),
    "mnist": W.workload_mnist,
    "threads": W.workload_threads,
    "startup": W.workload_startup,
    "optim_10m": S.workload_optim_10m,
    "window": S.workload_window,
    "pos": S.workload_pos,
    "pos_seeds": S.workload_pos_seeds,
    "bilstm": Q.workload_bilstm,
    "bilstm_seeds": Q.workload_bilstm_seeds,
}


# ---------------------------------------------------------------------------------------
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help=f"comma-separated subset of {', '.join(WORKLOADS + OPTIONAL)} "
                        f"(default: all but {', '.join(OPTIONAL)})")
    p.add_argument("--repeats", type=int, default=None,
                   help="alternating rounds per workload (default 5, or 3 with --quick)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for fastbp, torch and BLAS (default: all cores)")
    p.add_argument("--quick", action="store_true",
                   help="fewer rounds and steps; MNIST 1 epoch; one empty-cache start-up")
    p.add_argument("--no-jax", action="store_true", help="leave JAX out even if it imports")
    p.add_argument("--markdown-out", metavar="FILE", help="also write the markdown report here")
    args = p.parse_args(argv)
    args.workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in args.workloads if w not in WORKLOADS + OPTIONAL]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {', '.join(WORKLOADS + OPTIONAL)}")
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    if args.threads is None:
        args.threads = os.cpu_count() or 1
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.threads == 1 and "XLA_FLAGS" not in os.environ:
        # XLA's CPU backend sizes its thread pools at import
        os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                   "intra_op_parallelism_threads=1")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    import fastbp as fb
    import torch
    fb.set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    args.jax = (not args.no_jax) and have_jax()

    info = machine_info(args)
    print(info, flush=True)
    load = os.getloadavg()[0]
    if load > 0.5 * (os.cpu_count() or 1):
        print(f"warning: load average {load:.2f} on {os.cpu_count()} cores: other processes are "
              "running, multi-threaded timings will be noisy (compare with --threads 1)",
              file=sys.stderr, flush=True)
    rep = Report()
    t_start = time.perf_counter()
    for w in args.workloads:
        print(f"\n== {w}", flush=True)
        t0 = time.perf_counter()
        RUNNERS[w](args, rep)
        print(f"   ({time.perf_counter() - t0:.1f} s)", flush=True)
    header = ("## fastbp vs PyTorch and JAX\n\n" + info + "\n\nRatios are speed ratios: "
              "fastbp/torch = torch time / fastbp time (above 1: fastbp is faster). "
              f"Total run time {time.perf_counter() - t_start:.0f} s; load average at the end "
              f"{os.getloadavg()[0]:.2f} (on a shared machine, a load above the core count "
              "means other processes took CPU time during the run: multi-threaded timings "
              "suffer most).")
    md = rep.markdown(header)
    print("\n" + md)
    if args.markdown_out:
        with open(args.markdown_out, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
