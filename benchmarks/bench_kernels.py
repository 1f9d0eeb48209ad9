"""asv benchmarks of fastbp's kernel families, one call at a time.

The kernels are fastbp's private compiled functions (``fastbp.kernels``), called
with preallocated arrays as the engine calls them; the optimizers go through their
public ``Optimizer.update``.  Every ``setup`` calls the kernel once, so the JIT (or
the on-disk cache) is out of the timings.

Kernel signatures change while the kernels are tuned, so the arguments are passed
by parameter name (:func:`bind_by_name`): a new argument fails the benchmark with
a message naming it.

Shapes of the dense layers: ``(batch, n_in, n_out)``; the first is the 64-128-10
workload's hidden layer, then the 784-512-256-10 MLP's first two layers at batch
128 and 1024, and a narrow output layer.
"""
from __future__ import annotations

import inspect

import numpy as np

import fastbp as fb
from fastbp.kernels import activations as _act
from fastbp.kernels import dense as _dense
from fastbp.kernels import dropout as _dropout
from fastbp.kernels import losses as _losses
from fastbp.threads import parallel_enabled


def _parameter_names(kernel) -> list[str]:
    func = getattr(kernel, "py_func", kernel)
    return list(inspect.signature(func).parameters)


def bind_by_name(kernel, **values):
    """The positional arguments of ``kernel`` taken from ``values`` by parameter name."""
    names = _parameter_names(kernel)
    missing = [n for n in names if n not in values]
    if missing:
        raise NotImplementedError(f"{kernel.__name__} now takes {missing}; teach "
                                  f"benchmarks/bench_kernels.py what to pass")
    return tuple(values[n] for n in names)


DENSE_SHAPES = ["32x64x128", "128x784x512", "1024x784x512", "1024x512x256", "128x256x10"]


def _shape(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split("x"))


class DenseKernels:
    """dense_forward (x W + b, ReLU fused) and dense_backward (dW, db, dL/dx)."""

    params = (DENSE_SHAPES, ["float32", "float64"])
    param_names = ["batch x n_in x n_out", "dtype"]

    def setup(self, shape, dtype):
        m, n_in, n_out = _shape(shape)
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((m, n_in)).astype(dtype)
        self.W = (rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)).astype(dtype)
        self.b = np.zeros(n_out, dtype)
        self.a = np.empty((m, n_out), dtype)
        self.g = rng.standard_normal((m, n_out)).astype(dtype)
        self.dW = np.empty_like(self.W)
        self.db = np.empty_like(self.b)
        self.g_in = np.empty_like(self.x)
        common = dict(x=self.x, W=self.W, b=self.b, a=self.a, out=self.a, g=self.g, dW=self.dW,
                      db=self.db, g_in=self.g_in, work=np.empty(m * n_out, dtype),
                      act=_act.RELU, slope=0.0,
                      parallel=parallel_enabled())
        self.fwd_args = bind_by_name(_dense.dense_forward, **common)
        self.bwd_args = bind_by_name(_dense.dense_backward, need_input_grad=True, **common)
        self.bwd_first_args = bind_by_name(_dense.dense_backward, need_input_grad=False, **common)
        self.time_forward()
        self.time_backward()
        self.time_backward_no_input_grad()

    def time_forward(self, *_):
        _dense.dense_forward(*self.fwd_args)

    def time_backward(self, *_):
        # g is overwritten with g * relu'(z); ReLU masking is idempotent, so each
        # call does the same work
        _dense.dense_backward(*self.bwd_args)

    def time_backward_no_input_grad(self, *_):
        # the first layer of a network: dW and db only
        _dense.dense_backward(*self.bwd_first_args)


class Activations:
    """The fused bias + activation epilogue through dense_forward on a small GEMM, per activation."""

    params = (["relu", "leaky_relu", "sigmoid", "tanh", "none"],)
    param_names = ["activation"]

    def setup(self, activation):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((256, 64)).astype(np.float32)
        self.W = rng.standard_normal((64, 512)).astype(np.float32) * 0.1
        self.b = np.zeros(512, np.float32)
        self.out = np.empty((256, 512), np.float32)
        self.g = rng.standard_normal((256, 512)).astype(np.float32)
        self.dW, self.db = np.empty_like(self.W), np.empty_like(self.b)
        self.g_in = np.empty_like(self.x)
        common = dict(x=self.x, W=self.W, b=self.b, a=self.out, out=self.out, g=self.g,
                      dW=self.dW, db=self.db, g_in=self.g_in, work=np.empty(256 * 512, np.float32),
                      act=_act.CODES[None if activation == "none" else activation], slope=0.01,
                      parallel=parallel_enabled())
        self.fwd_args = bind_by_name(_dense.dense_forward, **common)
        self.bwd_args = bind_by_name(_dense.dense_backward, need_input_grad=True, **common)
        self.time_forward()
        self.time_backward()

    def time_forward(self, *_):
        _dense.dense_forward(*self.fwd_args)

    def time_backward(self, *_):
        _dense.dense_backward(*self.bwd_args)


class Losses:
    """loss_and_grad: the batch-mean loss and dL/d(output)."""

    params = (["mse", "binary_cross_entropy", "softmax_cross_entropy"], ["32x10", "1024x10",
                                                                         "1024x1000"])
    param_names = ["loss", "batch x n_out"]

    def setup(self, loss, shape):
        m, n = _shape(shape)
        rng = np.random.default_rng(0)
        code = {"mse": _losses.MSE, "binary_cross_entropy": _losses.BINARY_CROSS_ENTROPY,
                "softmax_cross_entropy": _losses.SOFTMAX_CROSS_ENTROPY}[loss]
        self.out = rng.standard_normal((m, n)).astype(np.float32)
        if loss == "softmax_cross_entropy":
            self.yf = np.zeros((1, 1), np.float32)
            self.yi = rng.integers(0, n, m).astype(np.int64)
        else:
            self.yf = (rng.random((m, n)) > 0.5).astype(np.float32)
            self.yi = np.zeros(1, np.int64)
        self.args = bind_by_name(_losses.loss_and_grad, code=code, out=self.out, yf=self.yf,
                                 yi=self.yi, grad=np.empty_like(self.out), row_loss=np.empty(m),
                                 parallel=parallel_enabled())
        self.time_loss_and_grad()

    def time_loss_and_grad(self, *_):
        _losses.loss_and_grad(*self.args)


OPTIMIZERS = {
    "sgd": ("SGD", dict(lr=0.01)),
    "sgd_momentum": ("SGD", dict(lr=0.01, momentum=0.9)),
    "sgd_nesterov": ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True)),
    "adam": ("Adam", dict(lr=1e-3)),
    "adamw": ("AdamW", dict(lr=1e-3)),
    "adam_clip_norm": ("Adam", dict(lr=1e-3, clip_norm=1.0)),
    "adagrad": ("AdaGrad", dict(lr=0.01)),
    "rmsprop": ("RMSProp", dict(lr=0.01)),
    "adadelta": ("Adadelta", dict(lr=1.0)),
    "yogi": ("Yogi", dict(lr=0.01)),
}


def make_optimizer(name):
    cls_name, kwargs = OPTIMIZERS[name]
    cls = getattr(fb.optim, cls_name, None)
    if cls is None:
        raise NotImplementedError(f"fastbp.optim has no {cls_name}")
    return cls(**kwargs)


class OptimizerUpdates:
    """One fused optimizer step over a flat buffer of 1M float32 parameters (memory-bound:
    Adam reads p, g, m, v and writes p, m, v: 28 bytes per parameter)."""

    params = (list(OPTIMIZERS), [1_000_000])
    param_names = ["optimizer", "n_params"]

    def setup(self, name, n):
        rng = np.random.default_rng(0)
        self.p = rng.standard_normal(n).astype(np.float32)
        self.g = (rng.standard_normal(n) * 1e-3).astype(np.float32)
        self.opt = make_optimizer(name)
        self.opt.update(self.p, self.g)

    def time_update(self, *_):
        self.opt.update(self.p, self.g)

    def peakmem_update(self, *_):
        self.opt.update(self.p, self.g)


class Dropout:
    """Inverted dropout's mask-and-scale (the backward pass is the same call)."""

    params = (["128x512", "1024x512"], [0.2, 0.5])
    param_names = ["batch x n", "p"]

    def setup(self, shape, p):
        m, n = _shape(shape)
        x = np.random.default_rng(0).standard_normal((m, n)).astype(np.float32)
        self.args = bind_by_name(_dropout.dropout_apply, x=x, out=np.empty_like(x),
                                 key=np.uint64(12345), p=float(p), parallel=parallel_enabled())
        self.time_dropout()

    def time_dropout(self, *_):
        _dropout.dropout_apply(*self.args)
