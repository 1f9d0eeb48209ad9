"""The workloads of the peer comparison, each in fastbp, PyTorch and (optionally) JAX.
See ``compare_peers.py`` for how to run them."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time

import numpy as np

from .datasets import load_mnist, random_classification, random_regression
from .peer_common import (TARGETS, Report, alternate, block, fb_mlp, fmt_ratio, fmt_time,
                          gemm_flops, jax_loss_fn, jax_mlp_apply, jax_mlp_init, jax_step_fn,
                          median, torch_mlp, verdict)

# ---------------------------------------------------------------------------------------
# a. the fig. 7.8 program
# ---------------------------------------------------------------------------------------
FIG78 = dict(sizes=(10, 40, 40, 5), n=100, batch=10, epochs=100, lr=0.01, momentum=0.9,
             step_size=10, gamma=0.5)


def workload_fig7_8(args, rep: Report):
    import fastbp as fb
    import torch
    from torch import nn
    from torch.optim.lr_scheduler import StepLR
    from torch.utils.data import DataLoader, TensorDataset

    c = FIG78
    epochs = c["epochs"]
    X, Y = random_regression(c["n"], c["sizes"][0], c["sizes"][-1], seed=0)

    def run_fastbp():
        model = fb_mlp(c["sizes"])
        model.compile(fb.optim.SGD(lr=c["lr"], momentum=c["momentum"]), "mse")
        t0 = time.perf_counter()
        model.fit(X, Y, epochs=epochs, batch_size=c["batch"],
                  schedule=fb.schedules.StepDecay(c["step_size"], c["gamma"]))
        return time.perf_counter() - t0

    x_t, y_t = torch.from_numpy(X), torch.from_numpy(Y)

    def run_torch_dataloader():
        # seed 002, figure 7.8, minus the print
        model = torch_mlp(c["sizes"], he_uniform=True)
        criterion = nn.MSELoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=c["lr"], momentum=c["momentum"])
        scheduler = StepLR(optimizer, step_size=c["step_size"], gamma=c["gamma"])
        data_loader = DataLoader(TensorDataset(x_t, y_t), batch_size=c["batch"], shuffle=True)
        t0 = time.perf_counter()
        for epoch in range(epochs):
            epoch_loss = 0.0
            for i, data in enumerate(data_loader):
                x_batch, y_batch = data
                optimizer.zero_grad()
                pred = model(x_batch)
                loss = criterion(pred, y_batch)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item()
            scheduler.step()
        return time.perf_counter() - t0

    def run_torch_manual():
        # the same, with the batches cut by indexing a random permutation
        model = torch_mlp(c["sizes"], he_uniform=True)
        criterion = nn.MSELoss()
        optimizer = torch.optim.SGD(model.parameters(), lr=c["lr"], momentum=c["momentum"])
        scheduler = StepLR(optimizer, step_size=c["step_size"], gamma=c["gamma"])
        n, bs = c["n"], c["batch"]
        t0 = time.perf_counter()
        for epoch in range(epochs):
            epoch_loss = 0.0
            perm = torch.randperm(n)
            for s in range(0, n, bs):
                idx = perm[s:s + bs]
                x_batch, y_batch = x_t[idx], y_t[idx]
                optimizer.zero_grad()
                loss = criterion(model(x_batch), y_batch)
                loss.backward()
                optimizer.step()
                epoch_loss += loss.item()
            scheduler.step()
        return time.perf_counter() - t0

    peers = {"fastbp fit": run_fastbp, "torch DataLoader (book)": run_torch_dataloader,
             "torch manual indexing": run_torch_manual}

    if args.jax:
        import jax
        import jax.numpy as jnp
        import optax
        from jax import lax

        steps_per_epoch = c["n"] // c["batch"]
        sched = optax.exponential_decay(c["lr"], transition_steps=c["step_size"] * steps_per_epoch,
                                        decay_rate=c["gamma"], staircase=True)
        opt = optax.sgd(sched, momentum=c["momentum"])
        step = jax_step_fn(jax_loss_fn("mse"), opt)
        jstep = jax.jit(step)

        def run_jax_step():
            params = jax_mlp_init(c["sizes"])
            opt_state = opt.init(params)
            rng = np.random.default_rng(0)
            n, bs = c["n"], c["batch"]
            t0 = time.perf_counter()
            for epoch in range(epochs):
                epoch_loss = 0.0
                perm = rng.permutation(n)
                for s in range(0, n, bs):
                    idx = perm[s:s + bs]
                    params, opt_state, loss = jstep(params, opt_state, X[idx], Y[idx])
                    epoch_loss += float(loss)
            block(params)
            return time.perf_counter() - t0

        @jax.jit
        def program(params, Xj, Yj, key):
            opt_state = opt.init(params)
            n, bs = c["n"], c["batch"]

            def epoch_fn(carry, key_e):
                perm = jax.random.permutation(key_e, n)
                xb = Xj[perm].reshape(n // bs, bs, -1)
                yb = Yj[perm].reshape(n // bs, bs, -1)

                def batch_fn(carry, b):
                    p, s, l = step(*carry, b[0], b[1])
                    return (p, s), l
                carry, losses = lax.scan(batch_fn, carry, (xb, yb))
                return carry, losses.sum()
            (params, opt_state), epoch_losses = lax.scan(
                epoch_fn, (params, opt_state), jax.random.split(key, epochs))
            return params, epoch_losses

        Xj, Yj = jnp.asarray(X), jnp.asarray(Y)

        def run_jax_scan():
            params = jax_mlp_init(c["sizes"])
            key = jax.random.PRNGKey(0)
            t0 = time.perf_counter()
            block(program(params, Xj, Yj, key))
            return time.perf_counter() - t0

        peers["jax jit step"] = run_jax_step
        peers["jax jit+scan program"] = run_jax_scan

    times = alternate(peers, args.repeats)
    rep.add_times("fig7_8 (1,000 steps)", times, "ms")
    med = {k: median(v) for k, v in times.items()}
    fb_t = med["fastbp fit"]
    tgt = 50.0
    for torch_name, jax_name, label in (
            ("torch DataLoader (book)", "jax jit step", "torch: DataLoader (the book's code); jax: jit step"),
            ("torch manual indexing", "jax jit+scan program", "torch: manual indexing; jax: whole program jit+lax.scan")):
        tt = med[torch_name]
        jt = med.get(jax_name)
        rep.add_row(workload="fig7_8", measure=f"100 epochs = 1,000 steps ({label})",
                    torch=fmt_time(tt, "ms"), fastbp=fmt_time(fb_t, "ms"),
                    jax=fmt_time(jt, "ms") if jt else "n/a",
                    fb_vs_torch=fmt_ratio(tt, fb_t), jax_vs_torch=fmt_ratio(tt, jt),
                    target=TARGETS["fig7_8"] if torch_name.startswith("torch Data") else "",
                    met=verdict(tt / fb_t >= tgt) if torch_name.startswith("torch Data") else "")
    rep.note(f"fig7_8: fastbp {fb_t / 1000 * 1e6:.1f} µs per step including fit's per-epoch "
             f"work; torch (DataLoader) {med['torch DataLoader (book)'] / 1000 * 1e6:.1f} µs per step.")


# ---------------------------------------------------------------------------------------
# b, c. time per training step of an MLP (fit over one pass of pre-shuffled batches)
# ---------------------------------------------------------------------------------------
def step_workload(args, sizes, batch, n_batches, epochs, optimizer, threads=None):
    """Time ``epochs`` passes over ``n_batches`` random batches per sample, in each peer.
    Returns {peer: list of seconds per step}."""
    import fastbp as fb
    import torch
    from torch import nn

    X, y = random_classification(batch * n_batches, sizes[0], sizes[-1], seed=0)
    steps = epochs * n_batches

    def fb_opt():
        return (fb.optim.Adam(lr=1e-3) if optimizer == "adam"
                else fb.optim.SGD(lr=0.01, momentum=0.9))

    model = fb_mlp(sizes)
    model.compile(fb_opt(), "softmax_cross_entropy")

    def run_fastbp():
        t0 = time.perf_counter()
        model.fit(X, y, epochs=epochs, batch_size=batch, shuffle=True)
        return (time.perf_counter() - t0) / steps

    xb0, yb0 = X[:batch], y[:batch]

    def run_fastbp_tob():
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(xb0, yb0)
        return (time.perf_counter() - t0) / steps

    tmodel = torch_mlp(sizes)
    topt = (torch.optim.Adam(tmodel.parameters(), lr=1e-3) if optimizer == "adam"
            else torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9))
    criterion = nn.CrossEntropyLoss()
    perm = np.random.default_rng(1).permutation(X.shape[0])
    tbatches = [(torch.from_numpy(X[perm[i:i + batch]]), torch.from_numpy(y[perm[i:i + batch]]))
                for i in range(0, X.shape[0], batch)]

    def run_torch():
        t0 = time.perf_counter()
        for _ in range(epochs):
            for xb, yb in tbatches:
                topt.zero_grad()
                loss = criterion(tmodel(xb), yb)
                loss.backward()
                topt.step()
        return (time.perf_counter() - t0) / steps

    peers = {"fastbp fit": run_fastbp, "fastbp train_on_batch": run_fastbp_tob,
             "torch": run_torch}
    if args.jax:
        import jax
        import jax.numpy as jnp
        import optax
        jopt = optax.adam(1e-3) if optimizer == "adam" else optax.sgd(0.01, momentum=0.9)
        jstep = jax.jit(jax_step_fn(jax_loss_fn("ce"), jopt))
        jstate = {"params": jax_mlp_init(sizes)}
        jstate["opt"] = jopt.init(jstate["params"])
        jbatches = [(jnp.asarray(X[perm[i:i + batch]]), jnp.asarray(y[perm[i:i + batch]]))
                    for i in range(0, X.shape[0], batch)]

        def run_jax():
            p, s = jstate["params"], jstate["opt"]
            t0 = time.perf_counter()
            for _ in range(epochs):
                for xb, yb in jbatches:
                    p, s, loss = jstep(p, s, xb, yb)
            block(p)
            dt = time.perf_counter() - t0
            jstate["params"], jstate["opt"] = p, s
            return dt / steps
        peers["jax jit step"] = run_jax
    return alternate(peers, args.repeats)


def workload_mlp_small(args, rep: Report):
    sizes, batch = (64, 128, 10), 32
    n_batches, epochs = 100, (3 if args.quick else 10)
    times = step_workload(args, sizes, batch, n_batches, epochs, "adam")
    rep.add_times("mlp_small (per step)", times, "us")
    med = {k: median(v) for k, v in times.items()}
    fb_t, tt, jt = med["fastbp fit"], med["torch"], med.get("jax jit step")
    rep.add_row(workload="mlp_small", measure="64-128-10, batch 32, Adam, per step (fit)",
                torch=fmt_time(tt, "us"), fastbp=fmt_time(fb_t, "us"),
                jax=fmt_time(jt, "us") if jt else "n/a", fb_vs_torch=fmt_ratio(tt, fb_t),
                jax_vs_torch=fmt_ratio(tt, jt), target=TARGETS["mlp_small"],
                met=verdict(tt / fb_t >= 20))
    rep.note(f"mlp_small: fastbp train_on_batch {med['fastbp train_on_batch'] * 1e6:.1f} µs per "
             f"step (one Python call per step) vs {fb_t * 1e6:.1f} µs inside fit.")


_SGEMM = {}


def sgemm_gflops(args):
    """numpy float32 GEMM speed at the benchmark's thread count: {shape: GFLOP/s (median)}.

    numpy's BLAS is limited to ``--threads`` here, and only here: fastbp pins its
    own BLAS (SciPy's) to one thread and leaves numpy's alone.
    """
    if _SGEMM:
        return _SGEMM
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    with threadpool_limits(limits=args.threads, user_api="blas"):
        for m, k, n in ((1024, 784, 512), (2048, 2048, 2048)):
            a = rng.standard_normal((m, k), dtype=np.float32)
            b = rng.standard_normal((k, n), dtype=np.float32)
            c = np.empty((m, n), np.float32)
            np.dot(a, b, out=c)
            ts = []
            for _ in range(15 if m < 2048 else 5):
                t0 = time.perf_counter()
                np.dot(a, b, out=c)
                ts.append(time.perf_counter() - t0)
            _SGEMM[f"{m}x{k}x{n}"] = 2 * m * n * k / median(ts) / 1e9
    return _SGEMM


def workload_mlp_784(args, rep: Report, batch: int):
    sizes = (784, 512, 256, 10)
    if batch <= 128:
        n_batches, epochs = 50, (1 if args.quick else 2)
    else:
        n_batches, epochs = 10, (1 if args.quick else 2)
    times = step_workload(args, sizes, batch, n_batches, epochs, "sgd")
    name = f"mlp_784_b{batch}"
    rep.add_times(f"{name} (per step)", times, "ms")
    med = {k: median(v) for k, v in times.items()}
    fb_t, tt, jt = med["fastbp fit"], med["torch"], med.get("jax jit step")
    flops = gemm_flops(sizes, batch)
    tgt = 1.6 if batch <= 128 else 1.3
    rep.add_row(workload=name, measure=f"784-512-256-10, batch {batch}, SGD+momentum, per step",
                torch=fmt_time(tt, "ms"), fastbp=fmt_time(fb_t, "ms"),
                jax=fmt_time(jt, "ms") if jt else "n/a", fb_vs_torch=fmt_ratio(tt, fb_t),
                jax_vs_torch=fmt_ratio(tt, jt), target=TARGETS[name], met=verdict(tt / fb_t >= tgt))
    peak = sgemm_gflops(args)
    best = max(peak.values())
    gf = {k: flops / v / 1e9 for k, v in med.items()}
    shown = ", ".join(f"{k} {v:.0f}" for k, v in gf.items())
    rep.note(f"{name}: {flops / 1e9:.3f} GFLOP per step (2mnk over 3 forward, 3 weight-gradient "
             f"and 2 input-gradient GEMMs); achieved GFLOP/s: {shown}; numpy sgemm: "
             + ", ".join(f"{k} {v:.0f}" for k, v in peak.items()) + " GFLOP/s.")
    rep.add_row(workload=name, measure="GEMM efficiency: achieved GFLOP/s / numpy sgemm GFLOP/s",
                torch=f"{gf['torch']:.0f} GFLOP/s ({gf['torch'] / best:.0%})",
                fastbp=f"{gf['fastbp fit']:.0f} GFLOP/s ({gf['fastbp fit'] / best:.0%})",
                jax=(f"{gf['jax jit step']:.0f} GFLOP/s ({gf['jax jit step'] / best:.0%})"
                     if jt else "n/a"),
                fb_vs_torch="", jax_vs_torch="",
                target=TARGETS["gemm_eff"] if batch > 128 else "",
                met=verdict(gf["fastbp fit"] / best >= 0.85) if batch > 128 else "")


# ---------------------------------------------------------------------------------------
# d. MNIST
# ---------------------------------------------------------------------------------------
def workload_mnist(args, rep: Report):
    import fastbp as fb
    import torch
    from torch import nn

    try:
        X, y, Xt, yt = load_mnist()
    except FileNotFoundError as e:
        rep.note(f"mnist skipped: {e}")
        return
    sizes, batch, lr = (784, 512, 256, 10), 128, 1e-3
    epochs = 1 if args.quick else 5
    n = X.shape[0]

    # warm-ups on separate models, so the timed ones train exactly `epochs` epochs
    warm = fb_mlp(sizes, seed=1)
    warm.compile(fb.optim.Adam(lr=lr), "softmax_cross_entropy")
    warm.fit(X[:batch * 3 + 96], y[:batch * 3 + 96], epochs=1, batch_size=batch)
    warm.evaluate(Xt[:2048], yt[:2048])

    model = fb_mlp(sizes, seed=0)
    model.compile(fb.optim.Adam(lr=lr), "softmax_cross_entropy")
    fb_epoch = [0]

    def run_fastbp():
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1, batch_size=batch, shuffle=True,
                  seed=0 if fb_epoch[0] == 0 else None)
        fb_epoch[0] += 1
        return time.perf_counter() - t0

    x_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    xt_t = torch.from_numpy(Xt)
    torch.manual_seed(0)
    tmodel = torch_mlp(sizes)
    topt = torch.optim.Adam(tmodel.parameters(), lr=lr)
    criterion = nn.CrossEntropyLoss()

    def torch_epoch(model, opt, count=n):
        perm = torch.randperm(count)
        for s in range(0, count, batch):
            idx = perm[s:s + batch]
            opt.zero_grad()
            loss = criterion(model(x_t[idx]), y_t[idx])
            loss.backward()
            opt.step()

    wm = torch_mlp(sizes, seed=1)
    torch_epoch(wm, torch.optim.Adam(wm.parameters(), lr=lr), batch * 3)

    def run_torch():
        t0 = time.perf_counter()
        torch_epoch(tmodel, topt)
        return time.perf_counter() - t0

    peers = {"fastbp fit": run_fastbp, "torch": run_torch}
    if args.jax:
        import jax
        import jax.numpy as jnp
        import optax
        jopt = optax.adam(lr)
        jstep = jax.jit(jax_step_fn(jax_loss_fn("ce"), jopt))
        jpredict = jax.jit(jax_mlp_apply)
        js = {"params": jax_mlp_init(sizes), "rng": np.random.default_rng(0)}
        js["opt"] = jopt.init(js["params"])
        # compile for the full batch and for the last, shorter one (60000 = 468 * 128 + 96)
        wp = jax_mlp_init(sizes, seed=1)
        ws = jopt.init(wp)
        for m in (batch, n % batch or batch):
            block(jstep(wp, ws, X[:m], y[:m]))

        def run_jax():
            p, s = js["params"], js["opt"]
            perm = js["rng"].permutation(n)
            t0 = time.perf_counter()
            for st in range(0, n, batch):
                idx = perm[st:st + batch]
                p, s, loss = jstep(p, s, X[idx], y[idx])
            block(p)
            dt = time.perf_counter() - t0
            js["params"], js["opt"] = p, s
            return dt
        peers["jax jit step"] = run_jax

    times = alternate(peers, epochs, warmup=0)
    rep.add_times("mnist (per epoch)", times, "s")
    med = {k: median(v) for k, v in times.items()}
    acc_fb = model.evaluate(Xt, yt)["accuracy"]
    with torch.no_grad():
        acc_t = float((tmodel(xt_t).argmax(1).numpy() == yt).mean())
    acc_j = None
    if args.jax:
        acc_j = float((np.asarray(jpredict(js["params"], Xt)).argmax(1) == yt).mean())
    fb_t, tt, jt = med["fastbp fit"], med["torch"], med.get("jax jit step")
    ok = (tt / fb_t >= 1.5) and acc_fb >= 0.978 if epochs == 5 else None
    rep.add_row(workload="mnist",
                measure=f"784-512-256-10, Adam 1e-3, batch 128: s per epoch "
                        f"(median of {epochs}); test accuracy after {epochs} epoch(s)",
                torch=f"{fmt_time(tt, 's')}; acc {acc_t:.2%}",
                fastbp=f"{fmt_time(fb_t, 's')}; acc {acc_fb:.2%}",
                jax=f"{fmt_time(jt, 's')}; acc {acc_j:.2%}" if jt else "n/a",
                fb_vs_torch=fmt_ratio(tt, fb_t), jax_vs_torch=fmt_ratio(tt, jt),
                target=TARGETS["mnist"], met=verdict(ok))


# ---------------------------------------------------------------------------------------
# e. threads
# ---------------------------------------------------------------------------------------
def workload_threads(args, rep: Report):
    import fastbp as fb
    import numba
    import torch
    from torch import nn

    if numba.config.NUMBA_NUM_THREADS < 2:
        rep.note("threads skipped: numba has fewer than 2 threads (NUMBA_NUM_THREADS)")
        return
    sizes, batch, n_batches = (784, 512, 256, 10), 1024, (5 if args.quick else 10)
    X, y = random_classification(batch * n_batches, sizes[0], sizes[-1], seed=0)
    model = fb_mlp(sizes)
    model.compile(fb.optim.SGD(lr=0.01, momentum=0.9), "softmax_cross_entropy")
    tmodel = torch_mlp(sizes)
    topt = torch.optim.SGD(tmodel.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()
    tb = [(torch.from_numpy(X[i:i + batch]), torch.from_numpy(y[i:i + batch]))
          for i in range(0, X.shape[0], batch)]
    before = fb.get_num_threads(), torch.get_num_threads()

    def fastbp_at(t):
        def run():
            fb.set_num_threads(t)
            model.fit(X[:batch], y[:batch], epochs=1, batch_size=batch)  # re-enter the pools
            t0 = time.perf_counter()
            model.fit(X, y, epochs=1, batch_size=batch)
            return (time.perf_counter() - t0) / n_batches
        return run

    def torch_at(t):
        def run():
            torch.set_num_threads(t)
            t0 = time.perf_counter()
            for xb, yb in tb:
                topt.zero_grad()
                criterion(tmodel(xb), yb).backward()
                topt.step()
            return (time.perf_counter() - t0) / n_batches
        return run

    try:
        times = alternate({"fastbp 1 thread": fastbp_at(1), "fastbp 2 threads": fastbp_at(2),
                           "torch 1 thread": torch_at(1), "torch 2 threads": torch_at(2)},
                          args.repeats)
    finally:
        fb.set_num_threads(before[0])
        torch.set_num_threads(before[1])
    rep.add_times("threads: b1024 step", times, "ms")
    med = {k: median(v) for k, v in times.items()}
    f1, f2 = med["fastbp 1 thread"], med["fastbp 2 threads"]
    t1, t2 = med["torch 1 thread"], med["torch 2 threads"]
    rep.add_row(workload="threads", measure="batch-1024 784-512-256-10 step, 1 thread -> 2 threads",
                torch=f"{fmt_time(t1, 'ms')} -> {fmt_time(t2, 'ms')} ({fmt_ratio(t1, t2)})",
                fastbp=f"{fmt_time(f1, 'ms')} -> {fmt_time(f2, 'ms')} ({fmt_ratio(f1, f2)})",
                jax="", fb_vs_torch=f"1 thr {fmt_ratio(t1, f1)}, 2 thr {fmt_ratio(t2, f2)}",
                jax_vs_torch="", target=TARGETS["threads"], met=verdict(f1 / f2 >= 1.7))


# ---------------------------------------------------------------------------------------
# f. start-up
# ---------------------------------------------------------------------------------------
FASTBP_STARTUP = textwrap.dedent("""
    import numpy as np
    import fastbp as fb
    model = fb.Sequential([fb.layers.Dense(10, 40, activation="relu"),
                           fb.layers.Dense(40, 40, activation="relu"),
                           fb.layers.Dense(40, 5)], seed=0)
    model.compile(fb.optim.SGD(lr=0.01, momentum=0.9), "mse")
    rng = np.random.default_rng(0)
    model.train_on_batch(rng.standard_normal((10, 10)), rng.standard_normal((10, 5)))
""")

TORCH_STARTUP = textwrap.dedent("""
    import torch
    from torch import nn
    model = nn.Sequential(nn.Linear(10, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(),
                          nn.Linear(40, 5))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss = nn.functional.mse_loss(model(torch.randn(10, 10)), torch.randn(10, 5))
    loss.backward()
    opt.step()
""")


def run_fresh(code: str, env=None, cwd=None) -> float:
    """Wall time of a fresh ``python -c code`` (interpreter start-up included)."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"subprocess failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return dt


def fresh_env(args) -> dict:
    """The environment of the start-up subprocesses: they must import the very fastbp
    this process imported (``python -c`` puts its working folder first on sys.path,
    so they run from an empty folder, with fastbp's parent folder on PYTHONPATH)."""
    import fastbp
    root = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(
        os.pathsep) if p])
    env["NUMBA_NUM_THREADS"] = str(args.threads)
    return env


def workload_startup(args, rep: Report):
    env = fresh_env(args)
    with tempfile.TemporaryDirectory(prefix="fastbp-startup-") as cwd:
        _startup(args, rep, env, cwd)


def _startup(args, rep: Report, env: dict, cwd: str):
    def run(code, e=env):
        return run_fresh(code, e, cwd)

    import fastbp
    where = subprocess.run([sys.executable, "-c", "import fastbp; print(fastbp.__file__)"],
                           env=env, cwd=cwd, capture_output=True, text=True).stdout.strip()
    if os.path.abspath(where) != os.path.abspath(fastbp.__file__):
        raise RuntimeError(f"start-up subprocesses import {where!r}, this process "
                           f"{fastbp.__file__!r}")
    run(FASTBP_STARTUP)  # fill the cache
    peers = {
        "python -c pass": lambda: run("pass"),
        "fastbp import + first train_on_batch (warm cache)": lambda: run(FASTBP_STARTUP),
        "python -c 'import fastbp'": lambda: run("import fastbp"),
        "python -c 'import torch'": lambda: run("import torch"),
        "torch import + first step": lambda: run(TORCH_STARTUP),
    }
    if args.jax:
        peers["python -c 'import jax'"] = lambda: run("import jax")
    times = alternate(peers, args.repeats, warmup=1)

    def cold():
        with tempfile.TemporaryDirectory(prefix="fastbp-cold-cache-") as d:
            return run(FASTBP_STARTUP, dict(env, NUMBA_CACHE_DIR=d))
    times["fastbp import + first train_on_batch (empty cache)"] = [
        cold() for _ in range(1 if args.quick else 2)]
    rep.add_times("startup (fresh process)", times, "s")
    med = {k: median(v) for k, v in times.items()}
    warm = med["fastbp import + first train_on_batch (warm cache)"]
    rep.add_row(workload="startup",
                measure="fresh process: import + build + first train_on_batch, warm cache "
                        "(torch: import + first step)",
                torch=fmt_time(med["torch import + first step"], "s"),
                fastbp=fmt_time(warm, "s"), jax="",
                fb_vs_torch=fmt_ratio(med["torch import + first step"], warm), jax_vs_torch="",
                target=TARGETS["startup"], met=verdict(warm <= 1.0))
    rep.add_row(workload="startup", measure="the same with an empty numba cache (compile time)",
                torch="", fastbp=fmt_time(
                    med["fastbp import + first train_on_batch (empty cache)"], "s"),
                jax="", fb_vs_torch="", jax_vs_torch="", target="", met="")
    imports = {k: med.get(f"python -c 'import {k}'") for k in ("fastbp", "torch", "jax")}
    rep.note(f"startup: python -c pass {med['python -c pass']:.3f} s; "
             + "; ".join(f"import {k} {v:.3f} s" for k, v in imports.items() if v) + ".")
