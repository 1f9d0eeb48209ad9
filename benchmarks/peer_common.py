"""Shared pieces of the peer comparison: timing, the report, the models of each peer,
the machine description.  See ``compare_peers.py``."""
from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time

import numpy as np

TARGETS = {
    "fig7_8": ">= 50x",
    "mlp_small": ">= 20x",
    "mlp_784_b128": ">= 1.6x",
    "mlp_784_b1024": ">= 1.3x",
    "gemm_eff": ">= 85% of sgemm",
    "mnist": ">= 1.5x, test acc >= 97.8%",
    "threads": ">= 1.7x (2 vs 1 thread)",
    "startup": "<= 1.0 s (warm cache)",
}

PAUSE_S = 0.05  # between two peers' samples: lets spinning BLAS/OpenMP workers go idle

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------------------------------
# timing helpers
# ---------------------------------------------------------------------------------------
def alternate(peers: dict, repeats: int, warmup: int = 1) -> dict:
    """Run every peer's sample function ``warmup`` times, then ``repeats`` rounds in turn.

    peers : name -> callable() returning the seconds of one sample (each callable
    times its own work, so that untimed set-up can sit inside it).
    Returns name -> list of seconds.
    """
    for fn in peers.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in peers}
    for _ in range(repeats):
        for name, fn in peers.items():
            gc.collect()
            time.sleep(PAUSE_S)
            times[name].append(fn())
    return times


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt_time(seconds: float, unit: str) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    scale = {"s": 1.0, "ms": 1e3, "us": 1e6}[unit]
    v = seconds * scale
    digits = 3 if v < 10 else (2 if v < 100 else 1)
    return f"{v:.{digits}f} {unit.replace('us', 'µs')}"


def fmt_ratio(num, den) -> str:
    if num is None or den is None or not (math.isfinite(num) and math.isfinite(den)) or den <= 0:
        return "n/a"
    r = num / den
    return f"{r:.1f}x" if r >= 10 else f"{r:.2f}x"


class Report:
    """Collects table rows, per-peer details and notes; renders markdown."""

    def __init__(self):
        self.rows = []      # dicts with the main table's cells
        self.details = []   # (workload, peer, unit, list of seconds, per)
        self.notes = []

    def add_row(self, **cells):
        self.rows.append(cells)
        print("  | " + " | ".join(str(cells.get(c, "")) for c in ROW_COLUMNS) + " |", flush=True)

    def add_times(self, workload, times: dict, unit: str, per: int = 1):
        for peer, ts in times.items():
            self.details.append((workload, peer, unit, [t / per for t in ts]))

    def note(self, text):
        self.notes.append(text)
        print("  note: " + text, flush=True)

    def markdown(self, header: str) -> str:
        out = [header, "", "| " + " | ".join(ROW_HEADERS) + " |",
               "|" + "|".join("---" for _ in ROW_COLUMNS) + "|"]
        for r in self.rows:
            out.append("| " + " | ".join(str(r.get(c, "")) for c in ROW_COLUMNS) + " |")
        out += ["", "Every sample, per peer (median, min, max; n samples):", "",
                "| workload | peer | median | min | max | n |", "|---|---|---|---|---|---|"]
        for w, peer, unit, ts in self.details:
            out.append(f"| {w} | {peer} | {fmt_time(median(ts), unit)} | "
                       f"{fmt_time(min(ts), unit)} | {fmt_time(max(ts), unit)} | {len(ts)} |")
        if self.notes:
            out += ["", "Notes:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(out) + "\n"


ROW_COLUMNS = ("workload", "measure", "torch", "fastbp", "jax", "fb_vs_torch", "jax_vs_torch",
               "target", "met")
ROW_HEADERS = ("workload", "measure (median)", "torch", "fastbp", "jax", "fastbp/torch",
               "jax/torch", "target", "met?")


def verdict(ok) -> str:
    return "n/a" if ok is None else ("yes" if ok else "**no**")


# ---------------------------------------------------------------------------------------
# peers: model builders
# ---------------------------------------------------------------------------------------
def fb_mlp(sizes, seed=0):
    import fastbp as fb
    layers = [fb.layers.Dense(a, b, activation="relu" if i < len(sizes) - 2 else None)
              for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:]))]
    return fb.Sequential(layers, dtype="float32", seed=seed)


def torch_mlp(sizes, he_uniform=False, seed=0):
    import torch
    from torch import nn
    torch.manual_seed(seed)
    mods = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            mods.append(nn.ReLU())
    model = nn.Sequential(*mods)
    if he_uniform:  # the book's weights_init
        for m in model:
            if isinstance(m, nn.Linear):
                nn.init.kaiming_uniform_(m.weight)
                m.bias.data.fill_(0.0)
    return model


def jax_mlp_init(sizes, seed=0):
    """He-uniform weights and zero biases as a list of (W (n_in, n_out), b) jax arrays."""
    import jax.numpy as jnp
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        lim = math.sqrt(6.0 / a)
        params.append((jnp.asarray(rng.uniform(-lim, lim, (a, b)).astype(np.float32)),
                       jnp.zeros(b, jnp.float32)))
    return params


def jax_mlp_apply(params, x):
    import jax
    for W, b in params[:-1]:
        x = jax.nn.relu(x @ W + b)
    W, b = params[-1]
    return x @ W + b


def jax_loss_fn(kind):
    import jax
    import jax.numpy as jnp
    import optax

    if kind == "mse":
        def loss(params, x, y):
            return jnp.mean((jax_mlp_apply(params, x) - y) ** 2)
    else:
        def loss(params, x, y):
            logits = jax_mlp_apply(params, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return loss


def jax_step_fn(loss, opt):
    """The plain (un-jitted) step: (params, opt_state, x, y) -> (params, opt_state, loss)."""
    import jax
    import optax

    def step(params, opt_state, x, y):
        value, grads = jax.value_and_grad(loss)(params, x, y)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value
    return step


def have_jax() -> bool:
    try:
        import jax  # noqa: F401
        import optax  # noqa: F401
    except Exception:
        return False
    return True


def block(tree):
    import jax
    return jax.block_until_ready(tree)


def gemm_flops(sizes, batch):
    """2 m n k per GEMM: forward (every layer), dW (every layer), input grads (every
    layer but the first)."""
    fwd = sum(2 * batch * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    din = sum(2 * batch * a * b for a, b in zip(sizes[1:-1], sizes[2:]))
    return 2 * fwd + din


# ---------------------------------------------------------------------------------------
# the machine
# ---------------------------------------------------------------------------------------
def machine_info(args) -> str:
    import fastbp as fb
    import numba
    import torch
    cpu = platform.processor() or "?"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = line
                    break
    except OSError:
        pass
    avx512 = "avx512f" in flags.split()
    blas = []
    try:
        from threadpoolctl import threadpool_info
        for d in threadpool_info():
            if d.get("user_api") == "blas":
                blas.append(f"{d.get('internal_api')} {d.get('version')} "
                            f"({d.get('architecture')}, {d.get('num_threads')} threads, "
                            f"{os.path.basename(d.get('filepath', ''))})")
    except Exception:  # pragma: no cover
        pass
    jax_v = "not installed"
    if args.jax:
        import jax
        import optax
        jax_v = f"jax {jax.__version__} ({jax.default_backend()}), optax {optax.__version__}"
    env_blas = {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ}
    lines = [
        f"- CPU: {cpu}, {os.cpu_count()} cores, AVX-512: {'yes' if avx512 else 'no'}; "
        f"load average at start {os.getloadavg()[0]:.2f}",
        f"- BLAS (numpy's and SciPy's; fastbp's products call SciPy's): {'; '.join(blas) or '?'}"
        + (f"; environment {env_blas}" if env_blas else ""),
        f"- torch {torch.__version__} (BLAS: {_torch_blas(torch)}, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}), {torch.get_num_threads()} threads",
        f"- {jax_v}",
        f"- fastbp {fb.__version__} from {fastbp_source(fb)}",
        f"- numba {numba.__version__} (threading layer "
        f"{_threading_layer()}), numpy {np.__version__}, Python {platform.python_version()}",
        f"- threads: fastbp {fb.get_num_threads()}, torch {torch.get_num_threads()}, "
        f"repeats {args.repeats}{' (quick)' if args.quick else ''}",
    ]
    return "\n".join(lines)


def fastbp_source(fb) -> str:
    """Where the imported fastbp lives and, in a git checkout, its commit (+ dirty flag)."""
    import subprocess
    folder = os.path.dirname(os.path.dirname(os.path.abspath(fb.__file__)))
    try:
        commit = subprocess.run(["git", "-C", folder, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10)
        if commit.returncode != 0:
            raise OSError
        dirty = subprocess.run(["git", "-C", folder, "status", "--porcelain", "--", "fastbp"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{folder} (commit {commit.stdout.strip()}{', fastbp/ modified' if dirty else ''})"
    except (OSError, subprocess.SubprocessError):
        stamp = os.path.join(folder, "COMMIT")
        if os.path.exists(stamp):
            with open(stamp) as f:
                return f"{folder} (snapshot of commit {f.read().strip()})"
        return folder


def _torch_blas(torch):
    cfg = torch.__config__.show()
    for token in cfg.replace(",", " ").split():
        if token.startswith("BLAS_INFO="):
            return token.split("=", 1)[1]
    return "?"


def _threading_layer():
    import numba
    try:
        return numba.threading_layer()
    except ValueError:
        return "not yet chosen"
