"""Peer workloads of the sequence models: the BiLSTM POS tagger of
``examples/bilstm_tagger.py`` on UD English EWT, fastbp against PyTorch written as its
users write it.  Registered in ``compare_peers.py`` (``bilstm``, ``bilstm_seeds``).

PyTorch: ``nn.Embedding(sparse=True, padding_idx=0)`` (one per input), the inputs'
vectors side by side (``torch.cat``), ``nn.LSTM(bidirectional=True, batch_first=True)``
over ``pack_padded_sequence(enforce_sorted=False)``, ``nn.Linear``,
``CrossEntropyLoss(ignore_index=-1)``, ``SparseAdam`` for the tables and ``Adam`` for
the rest.  Each minibatch is cut to its longest sentence, as a padding collate
function does.  Both start from the same weights: fastbp's, copied into the torch
modules (W = weight_ih.T, U = weight_hh.T, b = bias_ih, bias_hh = 0).
"""
from __future__ import annotations

import importlib.util
import os
import sys
import time

import numpy as np

from .peer_common import REPO, Report, alternate, fmt_ratio, median, verdict

EXAMPLE = os.path.join(REPO, "examples", "bilstm_tagger.py")
BATCH = 32
LR = 3e-3


def example():
    """examples/bilstm_tagger.py as a module (its loader and model builder)."""
    folder = os.path.dirname(EXAMPLE)
    if folder not in sys.path:  # it imports the window tagger's helpers beside it
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("bilstm_tagger", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def data_folder():
    return os.environ.get("FASTBP_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def load_task(features=()):
    """(example module, arrays, vocab size, tag count, GloVe table, feature sizes)."""
    ex = example()
    arrays, vocab, tags, weights, sizes = ex.load(data_folder(), features=features)
    return ex, arrays, len(vocab), len(tags), weights, sizes


def as_list(X, features):
    """The model's id arrays in input order: words, then the features."""
    return [X["words"]] + [X[f] for f in features] if isinstance(X, dict) else [X]


# ---------------------------------------------------------------------------------------
# PyTorch, as its users write it
# ---------------------------------------------------------------------------------------
def torch_tagger(fbm, features=(), lr=LR):
    """The PyTorch twin of the fastbp tagger ``fbm``, from fastbp's weights.
    Returns (model, sparse optimizer, dense optimizer)."""
    import fastbp as fb
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    tables = [layer for layer in fbm.layers if isinstance(layer, fb.layers.Embedding)]
    lstms = [layer for layer in fbm.layers if isinstance(layer, fb.layers.LSTM)]
    forward = next(layer for layer in lstms if not layer.reverse)
    backward = next(layer for layer in lstms if layer.reverse)
    dense = next(layer for layer in fbm.layers if isinstance(layer, fb.layers.Dense))

    class Tagger(nn.Module):
        def __init__(self):
            super().__init__()
            self.embeddings = nn.ModuleList(
                nn.Embedding(t.vocab_size, t.dim, padding_idx=0, sparse=True) for t in tables)
            self.lstm = nn.LSTM(forward.n_in, forward.n_hidden, batch_first=True,
                                bidirectional=True)
            self.out = nn.Linear(2 * forward.n_hidden, dense.W.shape[1])

        def forward(self, xs, lengths):
            v = torch.cat([emb(x) for emb, x in zip(self.embeddings, xs)], dim=-1)
            packed = pack_padded_sequence(v, lengths, batch_first=True, enforce_sorted=False)
            h, _ = self.lstm(packed)
            h, _ = pad_packed_sequence(h, batch_first=True, total_length=v.shape[1])
            return self.out(h)

    model = Tagger()
    with torch.no_grad():
        for emb, t in zip(model.embeddings, tables):
            emb.weight.copy_(torch.from_numpy(t.E))
        for suffix, layer in (("l0", forward), ("l0_reverse", backward)):
            getattr(model.lstm, f"weight_ih_{suffix}").copy_(torch.from_numpy(layer.W.T))
            getattr(model.lstm, f"weight_hh_{suffix}").copy_(torch.from_numpy(layer.U.T))
            getattr(model.lstm, f"bias_ih_{suffix}").copy_(torch.from_numpy(layer.b))
            getattr(model.lstm, f"bias_hh_{suffix}").zero_()
        model.out.weight.copy_(torch.from_numpy(dense.W.T))
        model.out.bias.copy_(torch.from_numpy(dense.b))
    sparse_opt = torch.optim.SparseAdam(list(model.embeddings.parameters()), lr=lr)
    dense_opt = torch.optim.Adam(list(model.lstm.parameters()) + list(model.out.parameters()),
                                 lr=lr)
    return model, sparse_opt, dense_opt


class TorchData:
    """The id arrays as tensors, with each sentence's length."""

    def __init__(self, X, Y, features=()):
        import torch
        self.xs = [torch.from_numpy(a) for a in as_list(X, features)]
        self.y = torch.from_numpy(Y)
        self.lengths = torch.from_numpy((Y >= 0).sum(axis=1))
        self.n = Y.shape[0]

    def batch(self, idx):
        """The sentences idx, cut to the longest of them."""
        lengths = self.lengths[idx]
        T = int(lengths.max())
        return [x[idx, :T] for x in self.xs], self.y[idx, :T], lengths


def torch_epoch(parts, data: TorchData, perm, batch=BATCH):
    import torch
    model, sopt, dopt = parts
    crit = torch.nn.CrossEntropyLoss(ignore_index=-1)
    model.train()
    for s in range(0, data.n, batch):
        xs, y, lengths = data.batch(perm[s:s + batch])
        sopt.zero_grad()
        dopt.zero_grad()
        logits = model(xs, lengths)
        crit(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).backward()
        sopt.step()
        dopt.step()


def torch_accuracy(parts, data: TorchData, batch=1024):
    import torch
    model = parts[0]
    model.eval()
    correct = total = 0
    with torch.no_grad():
        for s in range(0, data.n, batch):
            xs, y, lengths = data.batch(torch.arange(s, min(s + batch, data.n)))
            pred = model(xs, lengths).argmax(-1)
            mask = y >= 0
            correct += int((pred[mask] == y[mask]).sum())
            total += int(mask.sum())
    return correct / total


# ---------------------------------------------------------------------------------------
# the epoch's floor
# ---------------------------------------------------------------------------------------
def epoch_flops(lengths, n_in, h, n_tags, batch, perm):
    """FLOPs (2 m n k per product) of one epoch's matrix products, both directions.

    Forward per token: the input projection x W (n_in, 4h), the recurrent product
    h U (h, 4h) (at a sentence's real steps but its first, where the state is 0), the
    output Dense (2h, n_tags).  Backward: dW and g_in for the projection and the Dense
    (2x their forward), dU over all steps at once and dq U^T per step (2x the
    recurrent forward).  Returns {"step": the per-step products (h U forward, dq U^T
    backward) at the real steps, "bulk": all the rest at the tokens only (what packed
    sequences need), "padded_bulk": the rest over every batch's padded rows (batch x
    its longest sentence: what a padded batch computes), "tokens", "padded_rows"}.
    """
    tokens = int(lengths.sum())
    steps = int(np.maximum(lengths - 1, 0).sum())  # recurrent products: not at step 0
    G = 4 * h
    proj = 2 * 2 * n_in * G            # both directions
    rec = 2 * 2 * h * G
    dense = 2 * 2 * h * n_tags
    padded = sum(len(perm[s:s + batch]) * int(lengths[perm[s:s + batch]].max())
                 for s in range(0, len(perm), batch))
    return {"step": steps * rec * 2,                                 # forward + dq U^T
            "bulk": tokens * 3 * (proj + dense) + steps * rec,       # + dU
            "padded_bulk": padded * (3 * (proj + dense) + rec),
            "tokens": tokens, "padded_rows": padded}


def sgemm_rate(m, k, n, threads, seconds=0.3):
    """numpy float32 (m, k) @ (k, n) GFLOP/s at ``threads`` BLAS threads (best of 5)."""
    from threadpoolctl import threadpool_limits
    rng = np.random.default_rng(0)
    A = rng.standard_normal((m, k)).astype(np.float32)
    B = rng.standard_normal((k, n)).astype(np.float32)
    out = np.empty((m, n), np.float32)
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(A, B, out=out)
        reps = max(1, int(seconds / max(1e-7, _time_matmul(A, B, out, 3) / 3)))
        best = min(_time_matmul(A, B, out, reps) / reps for _ in range(5))
    return 2 * m * k * n / best / 1e9


def _time_matmul(A, B, out, reps):
    t0 = time.perf_counter()
    for _ in range(reps):
        np.matmul(A, B, out=out)
    return time.perf_counter() - t0


def floor_seconds(flops, step_rows, n_in, h, threads):
    """The epoch's product time at numpy's sgemm rates: the per-step products at the
    (step_rows, h) x (h, 4h) rate of one thread times ``threads`` (the recurrences of a
    batch's groups run side by side, one a thread), the rest at the
    (800, n_in) x (n_in, 4h) rate at ``threads`` threads.  Returns (seconds with the
    bulk over tokens only, seconds with the bulk over the padded rows, step rate, bulk
    rate), rates in GFLOP/s."""
    r_step = min(threads, 2) * sgemm_rate(step_rows, h, 4 * h, 1)
    r_bulk = sgemm_rate(800, n_in, 4 * h, threads)
    step = flops["step"] / (r_step * 1e9)
    return (step + flops["bulk"] / (r_bulk * 1e9), step + flops["padded_bulk"] / (r_bulk * 1e9),
            r_step, r_bulk)


def threads_note(threads):
    return "2 x one thread's " if threads >= 2 else ""


def _logged(name, fn):
    def run():
        t = fn()
        print(f"   {name}: {t:.2f} s", flush=True)
        return t
    return run


# ---------------------------------------------------------------------------------------
# the workloads
# ---------------------------------------------------------------------------------------
def _task(rep, name, features=()):
    if not os.path.isdir(os.path.join(data_folder(), "ud-english-ewt")):
        rep.note(f"{name} skipped: no UD English EWT under {data_folder()}")
        return None
    return load_task(features)


def workload_bilstm(args, rep: Report):
    """Epoch time of the BiLSTM tagger, fastbp and PyTorch from the same weights, each
    with its own shuffled order, taking turns; then fastbp at 1 and 2 threads; the
    test accuracy after those epochs; the epoch's product floor."""
    import fastbp as fb
    import numba
    import torch

    loaded = _task(rep, "bilstm")
    if loaded is None:
        return
    ex, arrays, V, n_tags, E, sizes = loaded
    (Xtr, Ytr), (Xte, Yte) = arrays["train"], arrays["test"]
    epochs = 1 if args.quick else args.repeats  # alternating epochs of each peer

    def new_fastbp(seed=0):
        return ex.build_model(V, n_tags, E, seed=seed, lr=LR)

    m = new_fastbp()
    m.fit(Xtr[:64], Ytr[:64], epochs=1, batch_size=BATCH)  # compile or load the kernels
    m.evaluate(Xte[:64], Yte[:64])
    fbm = new_fastbp()
    parts = torch_tagger(fbm)
    train, test = TorchData(Xtr, Ytr), TorchData(Xte, Yte)
    rng = np.random.default_rng(0)
    state = {"epoch": 0}

    def fastbp_epoch():
        t0 = time.perf_counter()
        fbm.fit(Xtr, Ytr, epochs=1, batch_size=BATCH, seed=state["epoch"])
        state["epoch"] += 1
        return time.perf_counter() - t0

    def torch_epoch_timed():
        perm = torch.from_numpy(rng.permutation(train.n))
        t0 = time.perf_counter()
        torch_epoch(parts, train, perm)
        return time.perf_counter() - t0

    times = alternate({"fastbp": _logged("fastbp epoch", fastbp_epoch),
                       "torch": _logged("torch epoch", torch_epoch_timed)}, epochs, warmup=0)
    rep.add_times("bilstm epoch", times, "s")
    acc_fb = fbm.evaluate(Xte, Yte)["accuracy"]
    acc_t = torch_accuracy(parts, test)
    f, t = median(times["fastbp"]), median(times["torch"])
    rep.add_row(workload="bilstm",
                measure=f"EWT BiLSTM tagger epoch (12,544 sentences, GloVe 50d fine-tuned, "
                        f"LSTM 100 each way, batch {BATCH}, Adam); test acc after {epochs} "
                        f"epoch(s)",
                torch=f"{t:.2f} s; acc {acc_t:.2%}", fastbp=f"{f:.2f} s; acc {acc_fb:.2%}",
                jax="", fb_vs_torch=fmt_ratio(t, f), jax_vs_torch="", target=">= 3x",
                met=verdict(t / f >= 3))

    lengths = (Ytr >= 0).sum(axis=1)
    flops = epoch_flops(lengths, ex.DIM, ex.HIDDEN, n_tags, BATCH,
                        np.random.default_rng(0).permutation(len(lengths)))
    # a batch of 32 is dealt into 2 recurrence groups of 16 sentences
    packed, padded, r_step, r_bulk = floor_seconds(flops, BATCH // 2, ex.DIM, ex.HIDDEN,
                                                   args.threads)
    total, total_padded = flops["step"] + flops["bulk"], flops["step"] + flops["padded_bulk"]
    rep.note(f"bilstm floor ({args.threads} threads, numpy float32 sgemm): {flops['tokens']:,} "
             f"tokens, {total / 1e9:.1f} GFLOP of products per epoch over the tokens only "
             f"({flops['step'] / 1e9:.1f} per step at {r_step:.1f} GFLOP/s, "
             f"{threads_note(args.threads)}({BATCH // 2}x{ex.HIDDEN})@"
             f"({ex.HIDDEN}x{4 * ex.HIDDEN}); "
             f"{flops['bulk'] / 1e9:.1f} in bulk at {r_bulk:.1f} GFLOP/s, (800x{ex.DIM})@"
             f"({ex.DIM}x{4 * ex.HIDDEN})): {packed:.2f} s (fastbp packs a batch's tokens, so "
             f"its products run over these; over each batch's padded rows, "
             f"{flops['padded_rows']:,}, they would be {total_padded / 1e9:.1f} GFLOP, "
             f"{padded:.2f} s).  fastbp's epoch is {f / packed:.1f}x the floor, torch's "
             f"{t / packed:.1f}x.")

    if numba.config.NUMBA_NUM_THREADS >= 2:
        before = fb.get_num_threads()

        def at(threads):
            def run():
                fb.set_num_threads(threads)
                model = new_fastbp()
                t0 = time.perf_counter()
                model.fit(Xtr, Ytr, epochs=1, batch_size=BATCH, seed=0)
                return time.perf_counter() - t0
            return run
        try:
            tt = alternate({"fastbp 1 thread": _logged("fastbp 1 thread", at(1)),
                            "fastbp 2 threads": _logged("fastbp 2 threads", at(2))},
                           max(1, args.repeats // 2), warmup=0)
        finally:
            fb.set_num_threads(before)
        rep.add_times("bilstm epoch threads", tt, "s")
        a, b = median(tt["fastbp 1 thread"]), median(tt["fastbp 2 threads"])
        rep.add_row(workload="bilstm_threads", measure="BiLSTM epoch, 1 thread -> 2 threads",
                    torch="", fastbp=f"{a:.2f} s -> {b:.2f} s", jax="",
                    fb_vs_torch=fmt_ratio(a, b), jax_vs_torch="", target=">= 1.6x",
                    met=verdict(a / b >= 1.6))


def seeds_accuracy(seeds, epochs, features=(), peers=("fastbp", "torch"), log=print):
    """Test accuracy after ``epochs`` epochs per seed and peer; seed s fixes fastbp's
    initialisation (which torch copies) and both peers' shuffling."""
    import torch
    ex, arrays, V, n_tags, E, sizes = load_task(features)
    (Xtr, Ytr), (Xte, Yte) = arrays["train"], arrays["test"]
    train = TorchData(Xtr, Ytr, features) if "torch" in peers else None
    test = TorchData(Xte, Yte, features) if "torch" in peers else None
    acc = {p: [] for p in peers}
    for seed in seeds:
        fbm = ex.build_model(V, n_tags, E, features=features, sizes=sizes, seed=seed, lr=LR)
        if "torch" in peers:
            torch.manual_seed(seed)
            parts = torch_tagger(fbm, features)
        if "fastbp" in peers:
            fbm.fit(Xtr, Ytr, epochs=epochs, batch_size=BATCH, seed=seed)
            acc["fastbp"].append(fbm.evaluate(Xte, Yte)["accuracy"])
        if "torch" in peers:
            rng = np.random.default_rng(seed)
            for _ in range(epochs):
                torch_epoch(parts, train, torch.from_numpy(rng.permutation(train.n)))
            acc["torch"].append(torch_accuracy(parts, test))
        log(f"   seed {seed}: " + ", ".join(f"{p} {acc[p][-1]:.2%}" for p in peers))
    return acc


def workload_bilstm_seeds(args, rep: Report):
    """Test accuracy of the BiLSTM tagger after 5 epochs (1 with --quick), fastbp and
    PyTorch from the same initial weights, over 3 seeds (2 with --quick)."""
    if _task(rep, "bilstm_seeds") is None:
        return
    seeds, epochs = (range(2), 1) if args.quick else (range(3), 5)
    acc = seeds_accuracy(seeds, epochs)
    f, t = np.array(acc["fastbp"]), np.array(acc["torch"])
    rep.add_row(workload="bilstm_seeds",
                measure=f"BiLSTM test accuracy after {epochs} epoch(s), mean (min-max) over "
                        f"{len(f)} seeds, same initial weights",
                torch=f"{t.mean():.2%} ({t.min():.2%}-{t.max():.2%})",
                fastbp=f"{f.mean():.2%} ({f.min():.2%}-{f.max():.2%})", jax="",
                fb_vs_torch=f"{100 * (f.mean() - t.mean()):+.2f} points", jax_vs_torch="",
                target="acc >= torch's", met=verdict(f.mean() >= t.mean()))
    rep.note("bilstm_seeds per seed (fastbp, torch): "
             + ", ".join(f"{a:.2%}/{b:.2%}" for a, b in zip(f, t)))
