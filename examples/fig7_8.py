"""The training program of figure 7.8 in Prince, *Understanding Deep Learning*, in fastbp.

The book's PyTorch program trains a 10-40-40-5 ReLU network with He (Kaiming
uniform) weights and zero biases on 100 random points, x ~ N(0, 1) and
y ~ N(0, 1), with a least-squares loss and SGD with momentum 0.9 in batches of
10 for 100 epochs; the learning rate starts at 0.01 and halves every 10 epochs
(torch's ``StepLR(step_size=10, gamma=0.5)``).  Here every piece has its fastbp
name, and a callback prints the loss every 10 epochs.

Run it with ``python examples/fig7_8.py``.
"""
from __future__ import annotations

import numpy as np

import fastbp as fb

D_i, D_k, D_o = 10, 40, 5          # input, hidden and output widths


class PrintEvery:
    """A fit() callback: print the epoch's loss and learning rate every ``n`` epochs
    and after the last one.  fit() calls set_model, on_train_begin, on_epoch_end
    after every epoch and on_train_end."""

    def __init__(self, n: int, epochs: int):
        self.n = n
        self.last = epochs - 1

    def set_model(self, model):
        self.model = model

    def on_train_begin(self):
        pass

    def on_epoch_end(self, epoch, logs):
        if epoch % self.n == 0 or epoch == self.last:
            print(f"epoch {epoch:3d}  loss {logs['loss']:.4f}  lr {logs['lr']:.6f}")

    def on_train_end(self):
        pass


def main(epochs: int = 100, seed: int = 0) -> fb.History:
    # He initialisation (the book's kaiming_uniform: U(-sqrt(6/fan_in), +sqrt(6/fan_in)));
    # fastbp's Dense layers start their biases at zero.
    model = fb.Sequential([
        fb.layers.Dense(D_i, D_k, activation="relu", init="he_uniform"),
        fb.layers.Dense(D_k, D_k, activation="relu", init="he_uniform"),
        fb.layers.Dense(D_k, D_o, init="he_uniform"),
    ], seed=seed)
    model.compile(optimizer=fb.optim.SGD(lr=0.01, momentum=0.9), loss="mse")

    # 100 random data points.
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((100, D_i))
    y = rng.standard_normal((100, D_o))

    # The loss printed is the epoch's mean over the 100 points (each batch's MSE is the
    # mean over its 10 x 5 elements); the book's program adds up the 10 batch losses.
    return model.fit(x, y, epochs=epochs, batch_size=10, shuffle=True, seed=seed,
                     schedule=fb.schedules.StepDecay(10, 0.5), callbacks=[PrintEvery(10, epochs)])


if __name__ == "__main__":
    main()
