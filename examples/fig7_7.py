"""Seed 002, figure 7.7: how the initial weight variance shapes the forward and
backward variances of a deep ReLU network.

50 hidden layers of D_h = 100 ReLU units, a 100-d input drawn from N(0, 1), a single
fixed target y = 0 and the least-squares loss; biases zero and weights drawn from
N(0, sigma^2) with sigma^2 in {0.001, 0.01, 0.02, 0.1, 1.0}.  He initialisation
(sigma^2 = 2 / D_h = 0.02) keeps both variances flat.

    python examples/fig7_7.py [--out fig7_7] [--batch 1000]

Saves the two plots as PNG files, fig7_7a.png (variance of the hidden units by layer)
and fig7_7b.png (variance of the gradients dL/dz by layer), both on a log scale, and
both side by side in fig7_7.png; needs matplotlib (pip install 'fastbp[plot]').
"""
from __future__ import annotations

import argparse
import math

import numpy as np

import fastbp as fb

VARIANCES = (0.001, 0.01, 0.02, 0.1, 1.0)


def curves(sigma2: float, depth: int = 50, width: int = 100, batch: int = 1000, seed: int = 0):
    layers = [fb.layers.Dense(width, width, activation="relu",
                              init=fb.init.normal(math.sqrt(sigma2))) for _ in range(depth)]
    layers.append(fb.layers.Dense(width, 1, init=fb.init.normal(math.sqrt(sigma2))))
    model = fb.Sequential(layers, dtype="float64", seed=seed)
    model.compile(fb.optim.SGD(lr=0.01), "mse")
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, width))
    y = np.zeros((batch, 1))
    stats = fb.diagnostics.layer_statistics(model, x, y)[:depth]
    return ([s["activation_variance"] for s in stats], [s["gradient_variance"] for s in stats])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Seed 002, figure 7.7")
    ap.add_argument("--out", default="fig7_7", help="file name stem of the PNG files")
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax_a, ax_b) = plt.subplots(1, 2, figsize=(11, 4.2))
    single = {}
    for key in ("a", "b"):
        single[key] = plt.subplots(figsize=(5.5, 4.2))
    for s2 in VARIANCES:
        fwd, bwd = curves(s2, batch=args.batch)
        label = f"$\\sigma^2_\\Omega$ = {s2}" + (" (He)" if s2 == 0.02 else "")
        for ax, ys in ((ax_a, fwd), (single["a"][1], fwd), (ax_b, bwd), (single["b"][1], bwd)):
            ax.plot(range(1, len(ys) + 1), ys, label=label)
        print(f"sigma^2 = {s2:<5}: var(h) layer 1 {fwd[0]:.3g}, layer 50 {fwd[-1]:.3g}; "
              f"var(dL/dz) layer 1 {bwd[0]:.3g}, layer 50 {bwd[-1]:.3g}")
    titles = {"a": "a) forward: variance of the hidden units",
              "b": "b) backward: variance of the gradients dL/dz"}
    for ax, key in ((ax_a, "a"), (ax_b, "b"), (single["a"][1], "a"), (single["b"][1], "b")):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_title(titles[key])
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(f"{args.out}.png", dpi=120)
    for key, (f, _) in single.items():
        f.tight_layout()
        f.savefig(f"{args.out}{key}.png", dpi=120)
    print(f"saved {args.out}a.png, {args.out}b.png and {args.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
