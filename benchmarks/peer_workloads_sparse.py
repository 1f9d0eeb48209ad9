"""Peer workloads of the optimizer and window-model issues: optimizer steps on 10M
parameters (GB/s), the CS224N window model at V = 20k and 400k, and the POS tagger on
UD English EWT.  Registered in ``compare_peers.py``."""
from __future__ import annotations

import os
import time

import numpy as np

from .peer_common import REPO, Report, alternate, fmt_ratio, fmt_time, median, verdict

# Bytes of parameter + gradient + state traffic per parameter and step (float32):
# Adam/AdamW read p, g, m, v and write p, m, v; SGD with momentum and AdaGrad read
# p, g, one state and write p and that state.
BYTES_PER_PARAM = {"Adam": 28, "AdamW": 28, "SGD": 20, "AdaGrad": 20}


def _at_threads(threads, step, calls):
    """A run() for alternate(): ``calls`` calls of step() at ``threads`` fastbp threads;
    returns the mean time per call."""
    import fastbp as fb

    def run():
        fb.set_num_threads(threads)
        t0 = time.perf_counter()
        for _ in range(calls):
            step()
        return (time.perf_counter() - t0) / calls
    return run


def _alternate_keeping_threads(peers, repeats):
    """alternate(), then fastbp's thread count as it was before."""
    import fastbp as fb
    before = fb.get_num_threads()
    try:
        return alternate(peers, repeats)
    finally:
        fb.set_num_threads(before)


def _traffic_ceiling(n, args, rep: Report):
    """The machine's limit for an Adam-shaped pass: read 4 float32 streams and write 3,
    with one add per element (no optimizer arithmetic), at 1 and 2 numba threads."""
    import numba
    from numba import prange

    @numba.njit(parallel=True, fastmath=True, cache=False)
    def touch(p, g, m, v):
        for i in prange(p.shape[0]):
            m[i] += g[i]
            v[i] += g[i]
            p[i] += m[i] + v[i]

    arrs = [np.zeros(n, np.float32) for _ in range(4)]
    touch(*arrs)
    peers = {"1 thread": _at_threads(1, lambda: touch(*arrs), 5)}
    if numba.config.NUMBA_NUM_THREADS >= 2:
        peers["2 threads"] = _at_threads(2, lambda: touch(*arrs), 5)
    times = _alternate_keeping_threads(peers, args.repeats)
    rep.add_times(f"memory traffic ceiling (28 B/elem, {n // 1_000_000}M)", times, "ms")
    med = {k: median(v) for k, v in times.items()}
    text = ", ".join(f"{k} {28 * n / t / 1e9:.1f} GB/s" for k, t in med.items())
    rep.note(f"optim: memory traffic ceiling (read 4 and write 3 float32 streams, one add each): "
             f"{text}.")
    return med


def workload_optim_10m(args, rep: Report):
    import fastbp as fb
    import numba
    import torch

    n = 2_000_000 if args.quick else 10_000_000
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(n).astype(np.float32)
    g = (rng.standard_normal(n) * 1e-3).astype(np.float32)
    configs = {
        "Adam": (lambda: fb.optim.Adam(lr=1e-3), lambda ps, **kw: torch.optim.Adam(ps, lr=1e-3, **kw)),
        "AdamW": (lambda: fb.optim.AdamW(lr=1e-3),
                  lambda ps, **kw: torch.optim.AdamW(ps, lr=1e-3, **kw)),
        "SGD": (lambda: fb.optim.SGD(lr=1e-3, momentum=0.9),
                lambda ps, **kw: torch.optim.SGD(ps, lr=1e-3, momentum=0.9, **kw)),
        "AdaGrad": (lambda: fb.optim.AdaGrad(lr=1e-3),
                    lambda ps, **kw: torch.optim.Adagrad(ps, lr=1e-3, **kw)),
    }
    steps = 3 if args.quick else 10
    ceiling = _traffic_ceiling(n, args, rep)
    best = min(ceiling.values())
    two = numba.config.NUMBA_NUM_THREADS >= 2
    for name, (make_fb, make_torch) in configs.items():
        opt = make_fb()
        p = p0.copy()
        opt.update(p, g)

        def fastbp_at(threads, opt=opt, p=p):
            return _at_threads(threads, lambda: opt.update(p, g), steps)

        def torch_run(**kw):
            param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
            param.grad = torch.from_numpy(g.copy())
            topt = make_torch([param], **kw)
            topt.step()

            def run():
                t0 = time.perf_counter()
                for _ in range(steps):
                    topt.step()
                return (time.perf_counter() - t0) / steps
            return run

        peers = {"fastbp": fastbp_at(args.threads), "torch fused": torch_run(fused=True),
                 "torch default": torch_run()}
        if two:
            peers["fastbp 1 thread"] = fastbp_at(1)
            peers["fastbp 2 threads"] = fastbp_at(2)
        times = _alternate_keeping_threads(peers, args.repeats)
        rep.add_times(f"optim {name} {n // 1_000_000}M", times, "ms")
        med = {k: median(v) for k, v in times.items()}
        gbps = BYTES_PER_PARAM[name] * n / med["fastbp"] / 1e9
        fused, default = med["torch fused"], med["torch default"]
        thr = ""
        ok = fused / med["fastbp"] >= 1.0 and default / med["fastbp"] >= (15 if name == "Adam" else 0)
        if two:
            r = med["fastbp 1 thread"] / med["fastbp 2 threads"]
            thr = f"; 2 vs 1 thread {r:.2f}x"
            ok = ok and r >= 1.6
        if name == "Adam":
            rep.note(f"optim: 15x torch's default Adam would be {default / 15 * 1e3:.2f} ms, "
                     f"{28 * n / (default / 15) / 1e9:.0f} GB/s; the traffic ceiling's fastest "
                     f"pass takes {best * 1e3:.2f} ms, which is {default / best:.1f}x the default.")
        rep.add_row(workload=f"optim_{name.lower()}",
                    measure=f"{name} step on {n / 1e6:.0f}M float32 params "
                            f"({BYTES_PER_PARAM[name]} B/param moved)",
                    torch=f"fused {fmt_time(fused, 'ms')}, default {fmt_time(default, 'ms')}",
                    fastbp=f"{fmt_time(med['fastbp'], 'ms')} ({gbps:.1f} GB/s{thr})",
                    jax="", fb_vs_torch=f"vs fused {fmt_ratio(fused, med['fastbp'])}, vs "
                                        f"default {fmt_ratio(default, med['fastbp'])}",
                    jax_vs_torch="",
                    target=">= 1.0x fused" + (", >= 15x default" if name == "Adam" else "")
                    + ", 2 thr >= 1.6x", met=verdict(ok))


def _torch_window_model(torch, V, dim, window, hidden, classes, act="tanh", weights=None):
    from torch import nn
    emb = nn.Embedding(V, dim, padding_idx=0, sparse=True)
    if weights is not None:
        with torch.no_grad():
            emb.weight.copy_(torch.from_numpy(weights))
    act_layer = nn.Tanh() if act == "tanh" else nn.ReLU()
    dense = nn.Sequential(nn.Flatten(), nn.Linear((2 * window + 1) * dim, hidden), act_layer,
                          nn.Linear(hidden, classes))
    sparse_opt = torch.optim.SparseAdam(list(emb.parameters()), lr=1e-3)
    dense_opt = torch.optim.Adam(dense.parameters(), lr=1e-3)
    return emb, dense, sparse_opt, dense_opt


def window_task(fb, V, batch, n_batches):
    """(ids, labels, model) of the window workload in the fastbp module ``fb`` (the
    installed one here; each build's in compare_builds)."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, V, (batch * n_batches, 5))
    y = rng.integers(0, 5, batch * n_batches)
    model = fb.Sequential([fb.layers.WindowEmbedding(V, 50, window=2),
                           fb.layers.Dense(250, 200, activation="tanh"),
                           fb.layers.Dense(200, 5)], seed=0)
    model.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    return ids, y, model


def workload_window(args, rep: Report):
    """DESIGN.md's window workload: dim 50, window 2, hidden 200 tanh, 5 classes, batch 64,
    Adam with fine-tuning; V = 20k and 400k."""
    import fastbp as fb
    import torch

    batch, n_batches = 64, (50 if args.quick else 200)
    crit = torch.nn.CrossEntropyLoss()
    med = {}
    for V in (20_000, 400_000):
        ids, y, model = window_task(fb, V, batch, n_batches)
        model.fit(ids[:batch * 2], y[:batch * 2], epochs=1, batch_size=batch)

        def run_fastbp():
            t0 = time.perf_counter()
            model.fit(ids, y, epochs=1, batch_size=batch)
            return (time.perf_counter() - t0) / n_batches

        emb, dense, sopt, dopt = _torch_window_model(torch, V, 50, 2, 200, 5)
        tb = [(torch.from_numpy(ids[i:i + batch]), torch.from_numpy(y[i:i + batch]))
              for i in range(0, ids.shape[0], batch)]

        def run_torch():
            t0 = time.perf_counter()
            for xb, yb in tb:
                sopt.zero_grad()
                dopt.zero_grad()
                crit(dense(emb(xb)), yb).backward()
                sopt.step()
                dopt.step()
            return (time.perf_counter() - t0) / n_batches

        times = alternate({"fastbp": run_fastbp, "torch sparse": run_torch}, args.repeats)
        rep.add_times(f"window V={V}", times, "us")
        med[V] = {k: median(v) for k, v in times.items()}
        f, t = med[V]["fastbp"], med[V]["torch sparse"]
        rep.add_row(workload=f"window_{V // 1000}k",
                    measure=f"window model step, V={V:,}, dim 50, hidden 200 tanh, batch 64, Adam",
                    torch=fmt_time(t, "us"), fastbp=fmt_time(f, "us"), jax="",
                    fb_vs_torch=fmt_ratio(t, f), jax_vs_torch="", target=">= 8x",
                    met=verdict(t / f >= 8))
    r = med[400_000]["fastbp"] / med[20_000]["fastbp"]
    rep.add_row(workload="window_vocab", measure="step time V=400k / V=20k",
                torch=f"{med[400_000]['torch sparse'] / med[20_000]['torch sparse']:.2f}x",
                fastbp=f"{r:.2f}x", jax="", fb_vs_torch="", jax_vs_torch="", target="<= 1.2x",
                met=verdict(r <= 1.2))


def _pos_data(data):
    from fastbp import text
    ud = os.path.join(data, "ud-english-ewt")
    splits = {n: list(text.read_conllu(os.path.join(ud, f"en_ewt-ud-{n}.conllu.xz")))
              for n in ("train", "test")}
    vocab = text.Vocabulary.build([t for t, _ in splits["train"]], min_count=1)
    words, vecs = text.load_vectors_npy(os.path.join(data, "glove-6b-50d-ewt-subset"))
    vocab.extend(words)
    E, _ = text.embedding_matrix(vocab, words, vecs, init="normal", scale=0.1, seed=0)
    tags = text.label_vocabulary([y for _, y in splits["train"]])
    out = {}
    for n, sents in splits.items():
        out[n] = (text.windows(vocab.encode_sentences([t for t, _ in sents]), window=2),
                  text.label_array([y for _, y in sents], tags))
    return out, E, len(tags)


def _fastbp_pos(V, E, n_tags, seed):
    import fastbp as fb
    m = fb.Sequential([fb.layers.WindowEmbedding(V, 50, window=2, weights=E),
                       fb.layers.Dense(250, 200, activation="relu"),
                       fb.layers.Dense(200, n_tags)], seed=seed)
    m.compile(fb.optim.Adam(lr=1e-3), "softmax_cross_entropy")
    return m


def _pos_arrays(rep, name):
    """(arrays, E, n_tags) of the POS task, or None (with a note) without the data."""
    data = os.environ.get("FASTBP_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))
    if not os.path.isdir(os.path.join(data, "ud-english-ewt")):
        rep.note(f"{name} skipped: no UD English EWT under {data}")
        return None
    return _pos_data(data)


def _pos_pair(V, E, n_tags, seed):
    """The POS tagger in fastbp and in PyTorch (nn.Embedding(sparse=True) + SparseAdam +
    Adam), from the same initial weights: the GloVe table and torch's default dense
    initialisation under torch.manual_seed(seed), copied into fastbp's Dense layers, so
    that an accuracy comparison measures the training and not two initialisations
    (fastbp's default He-normal init gave 92.97-93.03% over three seeds)."""
    import torch
    torch.manual_seed(seed)
    torch_parts = _torch_window_model(torch, V, 50, 2, 200, n_tags, act="relu", weights=E)
    fbm = _fastbp_pos(V, E, n_tags, seed)
    dense = torch_parts[1]
    with torch.no_grad():
        for layer, linear in zip(fbm.layers[1:], (dense[1], dense[3])):
            layer.W[:] = linear.weight.numpy().T
            layer.b[:] = linear.bias.numpy()
    return fbm, torch_parts


def _torch_epoch(emb, dense, sopt, dopt, Xt, yt, perm, batch):
    import torch
    crit = torch.nn.CrossEntropyLoss()
    for s in range(0, Xt.shape[0], batch):
        idx = perm[s:s + batch]
        sopt.zero_grad()
        dopt.zero_grad()
        crit(dense(emb(Xt[idx])), yt[idx]).backward()
        sopt.step()
        dopt.step()


def _torch_accuracy(emb, dense, X, y):
    import torch
    with torch.no_grad():
        return float((dense(emb(torch.from_numpy(X))).argmax(1).numpy() == y).mean())


def workload_pos_seeds(args, rep: Report):
    """Test accuracy of the POS tagger after 5 epochs, fastbp and PyTorch from the same
    initial weights, over several seeds (seed s fixes the initialisation and both
    peers' shuffling): one run differs from the next by about as much as the peers
    differ, so a single pair of runs cannot rank them."""
    import torch

    loaded = _pos_arrays(rep, "pos_seeds")
    if loaded is None:
        return
    arrays, E, n_tags = loaded
    (Xtr, ytr), (Xte, yte) = arrays["train"], arrays["test"]
    seeds, epochs, batch = (2, 1, 64) if args.quick else (5, 5, 64)
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    acc = {"fastbp": [], "torch": []}
    for seed in range(seeds):
        fbm, (emb, dense, sopt, dopt) = _pos_pair(E.shape[0], E, n_tags, seed)
        fbm.fit(Xtr, ytr, epochs=epochs, batch_size=batch, seed=seed)
        acc["fastbp"].append(fbm.evaluate(Xte, yte)["accuracy"])
        rng = np.random.default_rng(seed)
        for _ in range(epochs):
            _torch_epoch(emb, dense, sopt, dopt, Xt, yt,
                         torch.from_numpy(rng.permutation(Xtr.shape[0])), batch)
        acc["torch"].append(_torch_accuracy(emb, dense, Xte, yte))
        print(f"   seed {seed}: fastbp {acc['fastbp'][-1]:.2%}, torch {acc['torch'][-1]:.2%}",
              flush=True)
    f, t = np.array(acc["fastbp"]), np.array(acc["torch"])
    rep.add_row(workload="pos_seeds",
                measure=f"POS test accuracy after {epochs} epoch(s), mean (min-max) over "
                        f"{seeds} seeds, same initial weights",
                torch=f"{t.mean():.2%} ({t.min():.2%}-{t.max():.2%})",
                fastbp=f"{f.mean():.2%} ({f.min():.2%}-{f.max():.2%})", jax="",
                fb_vs_torch=f"{100 * (f.mean() - t.mean()):+.2f} points", jax_vs_torch="",
                target="acc >= torch's", met=verdict(f.mean() >= t.mean()))
    rep.note("pos_seeds per seed (fastbp, torch): " + ", ".join(
        f"{a:.2%}/{b:.2%}" for a, b in zip(f, t)) + f"; fastbp ahead in "
        f"{int((f > t).sum())} of {seeds}")


def workload_pos(args, rep: Report):
    """The POS tagger of examples/pos_tagger.py, fastbp against PyTorch
    (nn.Embedding(sparse=True) + SparseAdam + Adam), 5 epochs each, from the same initial
    weights (the GloVe table and torch's dense initialisation), each with its own
    shuffled order."""
    import fastbp as fb
    import numba
    import torch

    loaded = _pos_arrays(rep, "pos")
    if loaded is None:
        return
    arrays, E, n_tags = loaded
    (Xtr, ytr), (Xte, yte) = arrays["train"], arrays["test"]
    epochs = 1 if args.quick else 5
    batch = 64
    V = E.shape[0]

    def new_fastbp():
        return _fastbp_pos(V, E, n_tags, 0)

    new_fastbp().fit(Xtr[:256], ytr[:256], epochs=1, batch_size=batch)  # compile/load kernels
    fbm, (emb, dense, sopt, dopt) = _pos_pair(V, E, n_tags, seed=0)
    rng = np.random.default_rng(0)
    Xt, yt = torch.from_numpy(Xtr), torch.from_numpy(ytr)
    state = {"fb_epoch": 0}

    def fastbp_epoch():
        t0 = time.perf_counter()
        fbm.fit(Xtr, ytr, epochs=1, batch_size=batch, seed=state["fb_epoch"])
        state["fb_epoch"] += 1
        return time.perf_counter() - t0

    def torch_epoch():
        perm = torch.from_numpy(rng.permutation(Xtr.shape[0]))
        t0 = time.perf_counter()
        _torch_epoch(emb, dense, sopt, dopt, Xt, yt, perm, batch)
        return time.perf_counter() - t0

    times = alternate({"fastbp": fastbp_epoch, "torch": torch_epoch}, epochs, warmup=0)
    rep.add_times("pos epoch", times, "s")
    acc_fb = fbm.evaluate(Xte, yte)["accuracy"]
    acc_t = _torch_accuracy(emb, dense, Xte, yte)
    f, t = median(times["fastbp"]), median(times["torch"])
    rep.add_row(workload="pos", measure=f"UD EWT POS tagger epoch (204,577 tokens, batch 64, "
                                        f"Adam); test accuracy after {epochs} epoch(s)",
                torch=f"{fmt_time(t, 's')}; acc {acc_t:.2%}",
                fastbp=f"{fmt_time(f, 's')}; acc {acc_fb:.2%}", jax="",
                fb_vs_torch=fmt_ratio(t, f), jax_vs_torch="",
                target=">= 6x, acc >= torch's", met=verdict(t / f >= 6 and acc_fb >= acc_t))
    if numba.config.NUMBA_NUM_THREADS >= 2:
        before = fb.get_num_threads()

        def at(threads):
            def run():
                fb.set_num_threads(threads)
                m = new_fastbp()
                t0 = time.perf_counter()
                m.fit(Xtr, ytr, epochs=1, batch_size=batch, seed=0)
                return time.perf_counter() - t0
            return run
        try:
            tt = alternate({"fastbp 1 thread": at(1), "fastbp 2 threads": at(2)},
                           max(1, args.repeats // 2), warmup=0)
        finally:
            fb.set_num_threads(before)
        rep.add_times("pos epoch threads", tt, "s")
        a, b = median(tt["fastbp 1 thread"]), median(tt["fastbp 2 threads"])
        rep.add_row(workload="pos_threads", measure="POS epoch, 1 thread -> 2 threads",
                    torch="", fastbp=f"{fmt_time(a, 's')} -> {fmt_time(b, 's')}", jax="",
                    fb_vs_torch=f"{fmt_ratio(a, b)}", jax_vs_torch="", target=">= 1.7x",
                    met=verdict(a / b >= 1.7))
