"""Step-by-step agreement with PyTorch (float64): the same network, the same initial
weights, the same batches; after every optimizer step the weights agree to 1e-9."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from helpers import make_targets

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = 1e-9
STEPS = 10

NETS = {
    "tanh": [(6, 10, "tanh"), (10, 8, "tanh"), (8, 3, None)],
    "relu": [(6, 12, "relu"), (12, 8, "relu"), (8, 3, None)],
}

# name -> (fastbp class, torch class, keyword arguments common to both)
OPTIMIZERS = {
    "sgd": ("SGD", "SGD", dict(lr=0.1)),
    "sgd_momentum": ("SGD", "SGD", dict(lr=0.1, momentum=0.9)),
    "sgd_nesterov": ("SGD", "SGD", dict(lr=0.05, momentum=0.9, nesterov=True)),
    "sgd_weight_decay": ("SGD", "SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    "sgd_dampening": ("SGD", "SGD", dict(lr=0.1, momentum=0.8, dampening=0.3)),
    "adam": ("Adam", "Adam", dict(lr=1e-2)),
    "adam_amsgrad": ("Adam", "Adam", dict(lr=1e-2, betas=(0.9, 0.9), amsgrad=True)),
    "adam_weight_decay": ("Adam", "Adam", dict(lr=1e-2, weight_decay=0.05)),
    "adamw": ("AdamW", "AdamW", dict(lr=1e-2, weight_decay=0.1)),
    "adamw_amsgrad": ("AdamW", "AdamW", dict(lr=1e-2, betas=(0.8, 0.95), eps=1e-6,
                                             weight_decay=0.1, amsgrad=True)),
    "adagrad": ("AdaGrad", "Adagrad", dict(lr=0.05, lr_decay=0.01, weight_decay=0.01,
                                           initial_accumulator_value=0.1)),
    "rmsprop": ("RMSProp", "RMSprop", dict(lr=1e-2, alpha=0.9)),
    "rmsprop_centered_momentum": ("RMSProp", "RMSprop", dict(lr=1e-3, alpha=0.9, momentum=0.5,
                                                             centered=True, weight_decay=0.01)),
    "adadelta": ("Adadelta", "Adadelta", dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.01)),
}


def make_optimizers(opt_name, params, **fb_extra):
    fb_cls, torch_cls, kwargs = OPTIMIZERS[opt_name]
    return (getattr(fb.optim, fb_cls)(**kwargs, **fb_extra),
            getattr(torch.optim, torch_cls)(params, **kwargs))


LOSSES = {
    "mse": lambda: nn.MSELoss(),
    "binary_cross_entropy": lambda: nn.BCEWithLogitsLoss(),
    "softmax_cross_entropy": lambda: nn.CrossEntropyLoss(),
}

TORCH_ACT = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def build_pair(net, seed=0):
    """A float64 fastbp model and a torch nn.Sequential with the same initial weights."""
    spec = NETS[net]
    model = fb.Sequential([fb.layers.Dense(i, o, activation=a) for i, o, a in spec],
                          dtype="float64", seed=seed)
    rng = np.random.default_rng(seed + 100)
    for layer in model.layers:  # non-zero biases, so that the bias path is compared too
        layer.b = 0.1 * rng.standard_normal(layer.b.shape)
    modules, linears = [], []
    for layer, (i, o, a) in zip(model.layers, spec):
        lin = nn.Linear(i, o, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer.W.T.copy()))  # torch stores W^T
            lin.bias.copy_(torch.from_numpy(layer.b.copy()))
        modules.append(lin)
        linears.append(lin)
        if a is not None:
            modules.append(TORCH_ACT[a]())
    return model, nn.Sequential(*modules), linears


def weight_diff(model, linears) -> float:
    worst = 0.0
    for layer, lin in zip(model.layers, linears):
        worst = max(worst,
                    float(np.max(np.abs(layer.W - lin.weight.detach().numpy().T))),
                    float(np.max(np.abs(layer.b - lin.bias.detach().numpy()))))
    return worst


def torch_targets(loss, y):
    if loss == "softmax_cross_entropy":
        return torch.from_numpy(np.asarray(y, dtype=np.int64))
    return torch.from_numpy(np.asarray(y, dtype=np.float64))


def torch_step(net, opt, crit, x, y, loss, clip=None):
    opt.zero_grad()
    value = crit(net(torch.from_numpy(x)), torch_targets(loss, y))
    value.backward()
    norm = None
    if clip is not None:
        norm = float(torch.nn.utils.clip_grad_norm_(net.parameters(), clip))
    opt.step()
    return float(value.detach()), norm


@pytest.mark.parametrize("fused", [True, False], ids=["fused", "layers"])
@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("opt_name", list(OPTIMIZERS))
@pytest.mark.parametrize("net", list(NETS))
def test_train_on_batch_matches_torch(net, opt_name, loss, fused):
    model, tnet, linears = build_pair(net)
    fopt, topt = make_optimizers(opt_name, tnet.parameters())
    model.compile(fopt, loss, fused=fused)
    crit = LOSSES[loss]()
    assert weight_diff(model, linears) == 0.0
    rng = np.random.default_rng(1)
    for step in range(STEPS):
        x = rng.standard_normal((8, 6))
        y = make_targets(loss, rng, 8, 3)
        fb_loss = model.train_on_batch(x, y)
        t_loss, _ = torch_step(tnet, topt, crit, x, y, loss)
        assert fb_loss == pytest.approx(t_loss, rel=1e-12, abs=1e-14), f"step {step}"
        diff = weight_diff(model, linears)
        assert diff <= TOL, f"step {step}: weights differ by {diff:.3g}"
    assert model.optimizer.step[0] == STEPS
    # the weights really moved: the comparison is not between two untrained nets
    fresh, _, fresh_linears = build_pair(net)
    assert weight_diff(fresh, linears) > 1e-3


@pytest.mark.parametrize("loss", list(LOSSES))
@pytest.mark.parametrize("opt_name", ["sgd_momentum", "sgd_nesterov", "adam", "adamw_amsgrad",
                                      "rmsprop_centered_momentum"])
def test_clip_norm_matches_clip_grad_norm(opt_name, loss):
    clip = 0.05
    model, tnet, linears = build_pair("tanh", seed=3)
    fopt, topt = make_optimizers(opt_name, tnet.parameters(), clip_norm=clip)
    model.compile(fopt, loss)
    crit = LOSSES[loss]()
    rng = np.random.default_rng(2)
    clipped = 0
    for step in range(STEPS):
        x = 3 * rng.standard_normal((8, 6))
        y = make_targets(loss, rng, 8, 3)
        model.train_on_batch(x, y)
        _, norm = torch_step(tnet, topt, crit, x, y, loss, clip=clip)
        clipped += norm > clip
        diff = weight_diff(model, linears)
        assert diff <= TOL, f"step {step}: weights differ by {diff:.3g}"
    assert clipped >= STEPS // 2  # the clipping was active, not a no-op


def test_clip_norm_changes_the_trajectory():
    """Sanity check of the test above: with clipping off the weights end elsewhere."""
    rng = np.random.default_rng(2)
    batches = [(3 * rng.standard_normal((8, 6)), rng.standard_normal((8, 3))) for _ in range(3)]
    finals = []
    for clip in (None, 0.05):
        model, _, _ = build_pair("tanh", seed=3)
        model.compile(fb.optim.SGD(lr=0.1, momentum=0.9, clip_norm=clip), "mse")
        for x, y in batches:
            model.train_on_batch(x, y)
        finals.append(model.params.copy())
    assert np.max(np.abs(finals[0] - finals[1])) > 1e-3


def _torch_fit(tnet, topt, sched, crit, X, y, loss, epochs, batch_size, per_step):
    n = X.shape[0]
    epoch_losses, lrs = [], []
    for _ in range(epochs):
        total = 0.0
        for s in range(0, n, batch_size):
            xb, yb = X[s:s + batch_size], y[s:s + batch_size]
            lrs.append(topt.param_groups[0]["lr"])
            value, _ = torch_step(tnet, topt, crit, xb, yb, loss)
            total += value * xb.shape[0]
            if per_step:
                sched.step()
        epoch_losses.append(total / n)
        if not per_step:
            sched.step()
    return epoch_losses, lrs


@pytest.mark.parametrize("per", ["epoch", "step"])
@pytest.mark.parametrize("opt_name", ["sgd_momentum", "adam"])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_fit_with_step_decay_matches_torch_steplr(loss, opt_name, per):
    epochs, batch_size = 6, 8
    step_size, gamma = (2, 0.5) if per == "epoch" else (5, 0.7)
    rng = np.random.default_rng(4)
    X = rng.standard_normal((50, 6))  # 50 = 6 batches of 8 and one of 2
    y = make_targets(loss, rng, 50, 3)
    model, tnet, linears = build_pair("tanh", seed=2)
    fopt, topt = make_optimizers(opt_name, tnet.parameters())
    model.compile(fopt, loss)
    history = model.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False,
                        schedule=fb.schedules.StepDecay(step_size, gamma, per=per))
    sched = torch.optim.lr_scheduler.StepLR(topt, step_size=step_size, gamma=gamma)
    t_losses, t_lrs = _torch_fit(tnet, topt, sched, LOSSES[loss](), X, y, loss, epochs,
                                 batch_size, per == "step")
    diff = weight_diff(model, linears)
    assert diff <= TOL, f"weights differ by {diff:.3g}"
    np.testing.assert_allclose(history["loss"], t_losses, rtol=1e-10)
    # history's lr is the rate of the epoch's last step
    last_lrs = np.array(t_lrs).reshape(epochs, -1)[:, -1]
    np.testing.assert_allclose(history["lr"], last_lrs, rtol=1e-14)
    assert len(set(t_lrs)) >= 3  # the schedule really decayed
    assert model.optimizer.step[0] == epochs * 7
