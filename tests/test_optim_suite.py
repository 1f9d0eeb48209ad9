"""The optimizer suite (issue 4): every optimizer against torch.optim step by step over
a grid of hyperparameters, Yogi against a NumPy reference of its paper, convergence on
a quadratic and on Rosenbrock, global-norm clipping, schedules and dropout."""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastbp as fb

O = fb.optim

# (fastbp optimizer, torch constructor name, torch kwargs); None kwargs: same as fastbp's.
GRID = [
    (O.SGD(lr=0.05), "SGD", dict(lr=0.05)),
    (O.SGD(lr=0.05, momentum=0.9), "SGD", dict(lr=0.05, momentum=0.9)),
    (O.SGD(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01), "SGD",
     dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    (O.SGD(lr=0.05, momentum=0.8, nesterov=True), "SGD", dict(lr=0.05, momentum=0.8, nesterov=True)),
    (O.Adam(lr=0.01), "Adam", dict(lr=0.01)),
    (O.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05), "Adam",
     dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05)),
    (O.Adam(lr=0.01, amsgrad=True), "Adam", dict(lr=0.01, amsgrad=True)),
    (O.AdamW(lr=0.01), "AdamW", dict(lr=0.01)),
    (O.AdamW(lr=0.01, weight_decay=0.1, amsgrad=True), "AdamW",
     dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    (O.AdaGrad(lr=0.1), "Adagrad", dict(lr=0.1)),
    (O.AdaGrad(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.3, eps=1e-8),
     "Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.01, initial_accumulator_value=0.3,
                     eps=1e-8)),
    (O.RMSProp(lr=0.01), "RMSprop", dict(lr=0.01)),
    (O.RMSProp(lr=0.01, alpha=0.9, momentum=0.5), "RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5)),
    (O.RMSProp(lr=0.005, centered=True, weight_decay=0.01), "RMSprop",
     dict(lr=0.005, centered=True, weight_decay=0.01)),
    (O.RMSProp(lr=0.005, centered=True, momentum=0.9, eps=1e-6), "RMSprop",
     dict(lr=0.005, centered=True, momentum=0.9, eps=1e-6)),
    (O.Adadelta(), "Adadelta", dict()),
    (O.Adadelta(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1), "Adadelta",
     dict(lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.1)),
]


def _copy_config(opt):
    return type(opt).from_config(opt.get_config())


def _mlp_pair(torch, seed=3, activation="tanh"):
    model = fb.Sequential([fb.layers.Dense(6, 9, activation=activation),
                           fb.layers.Dense(9, 7, activation=activation),
                           fb.layers.Dense(7, 3)], dtype="float64", seed=seed)
    act = torch.nn.Tanh if activation == "tanh" else torch.nn.ReLU
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 9), act(), torch.nn.Linear(9, 7), act(),
                                 torch.nn.Linear(7, 3)).double()
    with torch.no_grad():
        for layer, lin in zip(model.layers, [tmodel[0], tmodel[2], tmodel[4]]):
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
    return model, tmodel, [tmodel[0], tmodel[2], tmodel[4]]


@pytest.mark.parametrize("opt,tname,tkw", GRID, ids=[repr(g[0]) for g in GRID])
@pytest.mark.parametrize("clip", [None, 0.5])
def test_optimizer_matches_torch_over_20_steps(opt, tname, tkw, clip):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    X = rng.standard_normal((12, 6))
    y = rng.integers(0, 3, 12)
    model, tmodel, linears = _mlp_pair(torch)
    cfg = opt.get_config()
    cfg["clip_norm"] = clip
    model.compile(type(opt).from_config(cfg), "softmax_cross_entropy")
    topt = getattr(torch.optim, tname)(tmodel.parameters(), **tkw)
    crit = torch.nn.CrossEntropyLoss()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    for step in range(20):
        model.train_on_batch(X, y)
        topt.zero_grad()
        crit(tmodel(Xt), yt).backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(tmodel.parameters(), clip)
        topt.step()
        for layer, lin in zip(model.layers, linears):
            dW = np.abs(layer.W - lin.weight.detach().numpy().T).max()
            db = np.abs(layer.b - lin.bias.detach().numpy()).max()
            assert max(dW, db) <= 1e-9, f"{opt!r} step {step}: weight difference {max(dW, db)}"


def yogi_reference(theta, grads, lr, beta1, beta2, eps, v0):
    """Algorithm 2 of Zaheer et al. (2018), written out in NumPy."""
    m = np.zeros_like(theta)
    v = np.full_like(theta, v0)
    for g in grads:
        m = beta1 * m + (1 - beta1) * g
        v = v - (1 - beta2) * np.sign(v - g * g) * g * g
        theta = theta - lr * m / (np.sqrt(v) + eps)
    return theta, m, v


def test_yogi_matches_the_paper():
    rng = np.random.default_rng(0)
    theta = rng.standard_normal(1000)
    grads = [rng.standard_normal(1000) * s for s in (1.0, 0.1, 3.0, 0.01, 1.0)]
    opt = O.Yogi(lr=0.03, betas=(0.85, 0.99), eps=1e-3, initial_accumulator_value=1e-6)
    p = theta.copy()
    for g in grads:
        opt.update(p, g.copy())
    ref, m, v = yogi_reference(theta, grads, 0.03, 0.85, 0.99, 1e-3, 1e-6)
    np.testing.assert_allclose(p, ref, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(opt.exp_avg, m, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(opt.exp_avg_sq, v, rtol=1e-13, atol=1e-15)
    assert opt.step[0] == len(grads)


ALL = [O.SGD(lr=0.05, momentum=0.9), O.SGD(lr=0.05, momentum=0.9, nesterov=True),
       O.Adam(lr=0.05), O.AdamW(lr=0.05, weight_decay=0.0), O.AdaGrad(lr=0.5),
       O.RMSProp(lr=0.01), O.RMSProp(lr=0.01, centered=True, momentum=0.5), O.Adadelta(lr=1.0),
       O.Yogi(lr=0.05)]


@pytest.mark.parametrize("opt", ALL, ids=repr)
def test_convergence_on_a_quadratic(opt):
    # f(x) = 1/2 sum a_i (x_i - c_i)^2 with condition number 10
    a = np.linspace(1.0, 10.0, 50)
    c = np.linspace(-1.0, 1.0, 50)
    x = np.zeros(50)
    opt = _copy_config(opt)
    f0 = 0.5 * np.sum(a * c * c)
    steps = 20000 if isinstance(opt, O.Adadelta) else 3000
    for _ in range(steps):
        opt.update(x, a * (x - c))
    f = 0.5 * np.sum(a * (x - c) ** 2)
    assert f < 1e-3 * f0, f"{opt!r}: f went from {f0} to {f}"


@pytest.mark.parametrize("opt", ALL, ids=repr)
def test_convergence_on_rosenbrock(opt):
    def grad(p):
        x, y = p
        return np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])

    def f(p):
        return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2

    p = np.array([-1.5, 2.0])
    cfg = opt.get_config()
    cfg["lr"] = {O.SGD: 2e-4, O.Adam: 0.02, O.AdamW: 0.02, O.AdaGrad: 0.5, O.RMSProp: 1e-3,
                 O.Adadelta: 1.0, O.Yogi: 0.02}[type(opt)]
    opt = type(opt).from_config(cfg)
    f0 = f(p)
    for _ in range(20000):
        opt.update(p, grad(p))
    assert np.all(np.isfinite(p))
    # Adadelta's unit-correcting steps grow slowly along Rosenbrock's curved valley
    # (from this start it reaches f ~ 0.7 in 20,000 steps); the others get within 1%.
    factor = 0.1 if isinstance(opt, O.Adadelta) else 1e-2
    assert f(p) < factor * f0, f"{opt!r}: Rosenbrock went from {f0} to {f(p)} at {p}"


def test_clipping_matches_torch_clip_grad_norm():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    for max_norm in (0.01, 0.3, 1.0, 100.0):
        grads = [rng.standard_normal(s) for s in ((4, 3), (3,), (3, 2))]
        flat = np.concatenate([g.ravel() for g in grads])
        params = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = torch.from_numpy(g.copy())
        torch.nn.utils.clip_grad_norm_(params, max_norm)
        clipped = np.concatenate([p.grad.numpy().ravel() for p in params])
        # One plain SGD step with lr 1 moves the parameters by exactly the clipped gradient.
        opt = O.SGD(lr=1.0, clip_norm=max_norm)
        p = np.zeros_like(flat)
        opt.update(p, flat.copy())
        np.testing.assert_allclose(-p, clipped, rtol=1e-14, atol=1e-16)


def test_schedules_follow_their_formulas():
    S = fb.schedules
    base = 0.1
    for t in range(0, 60):
        assert S.StepDecay(7, 0.5)(t, base) == pytest.approx(base * 0.5 ** (t // 7), rel=1e-15)
        assert S.ExponentialDecay(0.03)(t, base) == pytest.approx(base * math.exp(-0.03 * t),
                                                                  rel=1e-15)
        assert S.InverseTimeDecay(2.0)(t, base) == pytest.approx(base / (1 + base * 2.0 * t),
                                                                 rel=1e-15)
        want = 1e-3 + (base - 1e-3) * (1 + math.cos(math.pi * min(t, 40) / 40)) / 2
        assert S.CosineDecay(40, eta_min=1e-3)(t, base) == pytest.approx(want, rel=1e-14)
        warm = S.LinearWarmup(10, then=S.ExponentialDecay(0.1, per="step"), start_factor=0.1)
        want = base * (0.1 + 0.9 * t / 10) if t < 10 else base * math.exp(-0.1 * (t - 10))
        assert warm(t, base) == pytest.approx(want, rel=1e-14)
        cyc = S.CyclicLR(max_lr=1.0, step_size=5, mode="triangular2")
        cycle = math.floor(1 + t / 10)
        x = abs(t / 5 - 2 * cycle + 1)
        want = base + (1.0 - base) * max(0.0, 1 - x) / 2 ** (cycle - 1)
        assert cyc(t, base) == pytest.approx(want, rel=1e-14)


@pytest.mark.parametrize("bad", [
    lambda: fb.schedules.StepDecay(0), lambda: fb.schedules.StepDecay(3, gamma=-1.0),
    lambda: fb.schedules.ExponentialDecay(-0.1), lambda: fb.schedules.CosineDecay(0),
    lambda: fb.schedules.LinearWarmup(0), lambda: fb.schedules.CyclicLR(0.0, 4),
    lambda: fb.schedules.CyclicLR(1.0, 4, mode="sawtooth"),
    lambda: fb.schedules.StepDecay(3, per="batch"),
    lambda: fb.schedules.LinearWarmup(5, then=fb.schedules.StepDecay(2), per="step"),
])
def test_schedules_reject_bad_arguments(bad):
    with pytest.raises((ValueError, TypeError)):
        bad()


def test_fit_applies_a_per_step_schedule():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 3))
    y = rng.standard_normal((40, 2))
    sched = fb.schedules.InverseTimeDecay(5.0)
    models = []
    for fused in (True, False):
        m = fb.Sequential([fb.layers.Dense(3, 4, activation="tanh"), fb.layers.Dense(4, 2)],
                          dtype="float64", seed=2)
        m.compile(O.SGD(lr=0.2), "mse", fused=fused)
        m.fit(X, y, epochs=3, batch_size=8, shuffle=False, schedule=sched)
        models.append(m)
    # The same steps by hand with the per-step learning rates.
    ref = fb.Sequential([fb.layers.Dense(3, 4, activation="tanh"), fb.layers.Dense(4, 2)],
                        dtype="float64", seed=2)
    ref.compile(O.SGD(lr=0.2), "mse")
    t = 0
    for _ in range(3):
        for s in range(0, 40, 8):
            ref.optimizer.lr = sched(t, 0.2)
            ref.train_on_batch(X[s:s + 8], y[s:s + 8])
            t += 1
    for m in models:
        np.testing.assert_allclose(m.params, ref.params, rtol=0, atol=1e-14)


def test_dropout_statistics_and_scaling():
    from fastbp.kernels.dropout import dropout_apply
    from fastbp.kernels.random import combine_key
    x = np.ones((400, 500))
    out = np.empty_like(x)
    for p in (0.1, 0.5, 0.8):
        dropout_apply(x, out, combine_key(7, 3, 1), p, False)
        kept = out != 0
        # 200,000 Bernoulli draws: the kept fraction is within 5 standard deviations.
        sd = math.sqrt(p * (1 - p) / x.size)
        assert abs(kept.mean() - (1 - p)) < 5 * sd
        np.testing.assert_allclose(out[kept], 1 / (1 - p), rtol=1e-15)
        assert abs(out.mean() - 1.0) < 5 * sd / (1 - p)
        # Rows and columns are not correlated: per-column means scatter as binomials do.
        col = kept.mean(axis=0)
        assert abs(col.std() - math.sqrt(p * (1 - p) / 400)) < 0.2 * math.sqrt(p * (1 - p) / 400)
    # Different steps give different masks; the same key the same mask at any thread count.
    a, b = np.empty_like(x), np.empty_like(x)
    dropout_apply(x, a, combine_key(7, 3, 1), 0.5, False)
    dropout_apply(x, b, combine_key(7, 4, 1), 0.5, False)
    assert (a != b).mean() > 0.4
    dropout_apply(x, b, combine_key(7, 3, 1), 0.5, True)
    assert np.array_equal(a, b)


def test_dropout_is_off_at_inference_and_gradient_checks():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 5))
    y = rng.integers(0, 3, 30)
    m = fb.Sequential([fb.layers.Dense(5, 16, activation="relu"), fb.layers.Dropout(0.5),
                       fb.layers.Dense(16, 3)], dtype="float64", seed=0)
    m.compile(O.SGD(lr=0.1), "softmax_cross_entropy")
    p1 = m.predict(X)
    p2 = m.predict(X)
    np.testing.assert_array_equal(p1, p2)
    # Inference equals the network without the dropout layer.
    plain = fb.Sequential([fb.layers.Dense(5, 16, activation="relu"), fb.layers.Dense(16, 3)],
                          dtype="float64", seed=0)
    plain.params[:] = m.params
    np.testing.assert_allclose(p1, plain.predict(X), rtol=1e-15)
    assert fb.gradcheck(m, X[:8], y[:8]) < 1e-6


def test_dropout_training_gradient_uses_the_forward_mask():
    # In training mode the gradient of a dropout network equals the gradient of the
    # network with the same mask applied as a fixed multiplication.
    from fastbp.kernels.random import combine_key
    from fastbp.kernels.dropout import dropout_apply
    rng = np.random.default_rng(2)
    X = rng.standard_normal((6, 4))
    y = rng.standard_normal((6, 2))
    m = fb.Sequential([fb.layers.Dense(4, 8, activation="tanh"), fb.layers.Dropout(0.4),
                       fb.layers.Dense(8, 2)], dtype="float64", seed=0)
    m.compile(O.SGD(lr=0.5), "mse")
    before = m.params.copy()
    seed, step = m._dropout_seed, int(m._rng_step[0])
    m.train_on_batch(X, y)
    mask = np.empty((6, 8))
    dropout_apply(np.ones((6, 8)), mask, combine_key(seed, step, 1), 0.4, False)
    W1, b1 = before[:32].reshape(4, 8), before[32:40]
    W2, b2 = before[40:56].reshape(8, 2), before[56:58]
    h = np.tanh(X @ W1 + b1)
    hd = h * mask
    out = hd @ W2 + b2
    g = 2 * (out - y) / out.size
    dW2 = hd.T @ g
    dh = (g @ W2.T) * mask * (1 - h * h)
    dW1 = X.T @ dh
    np.testing.assert_allclose(m.layers[2].W, W2 - 0.5 * dW2, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(m.layers[0].W, W1 - 0.5 * dW1, rtol=1e-12, atol=1e-14)
