"""A user's own Layer subclass registers itself, so that a model using it saves and
loads (.fbp and .safetensors) as a model of built-in layers does; a class named as one
of fastbp's own layers is refused where it is defined."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastbp as fb


class Scaled(fb.layers.Layer):
    """y = x * s, s a trained vector (a NumPy layer, on the per-layer path)."""

    def __init__(self, width, start=1.0):
        super().__init__()
        self.width, self.start = width, start

    def param_shapes(self, input_dim):
        return {"s": (self.width,)}

    def build(self, input_dim, rng, dtype):
        return {"s": np.full(self.width, self.start, dtype=dtype)}

    def forward(self, x, training):
        self._x = x
        return x * self.params["s"]

    def backward(self, g):
        self.grads["s"][...] = (g * self._x).sum(axis=0)
        return g * self.params["s"]

    def get_config(self):
        return {"width": self.width, "start": self.start}


def _model():
    m = fb.Sequential([fb.layers.Dense(4, 6, activation="tanh"), Scaled(6, 0.5),
                       fb.layers.Dense(6, 3)], dtype="float64", seed=0)
    m.compile(fb.optim.Adam(lr=0.01), "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((40, 4)), rng.integers(0, 3, 40)
    m.fit(X, y, epochs=2, batch_size=8)
    return m, X, y


@pytest.mark.parametrize("suffix", [".fbp", ".safetensors"])
def test_a_model_with_a_user_layer_saves_and_loads(tmp_path, suffix):
    if suffix == ".safetensors":
        pytest.importorskip("safetensors")
    m, X, y = _model()
    path = tmp_path / ("m" + suffix)
    m.save(path)
    back = fb.load(path)
    assert isinstance(back.layers[1], Scaled)
    assert back.layers[1].get_config() == {"width": 6, "start": 0.5}
    np.testing.assert_array_equal(back.layers[1].params["s"], m.layers[1].params["s"])
    assert not np.all(m.layers[1].params["s"] == 0.5)  # it trained
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    # training continues the same way
    m.fit(X, y, epochs=1, batch_size=8, seed=3)
    back.fit(X, y, epochs=1, batch_size=8, seed=3)
    np.testing.assert_array_equal(back.params, m.params)


def test_loading_without_the_class_names_it(tmp_path):
    """In a process that never defined the class, the load fails with a message that
    names the class and says to import its module."""
    m, _, _ = _model()
    path = tmp_path / "m.fbp"
    m.save(path)
    code = textwrap.dedent(f"""
        import fastbp as fb
        try:
            fb.load({str(path)!r})
        except ValueError as e:
            print("ERR", e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert "ERR" in out.stdout, out.stderr
    assert "'Scaled'" in out.stdout and "imported" in out.stdout


def test_a_class_named_as_a_builtin_layer_is_refused():
    with pytest.raises(TypeError, match="'Dense' is fastbp's own"):
        class Dense(fb.layers.Layer):
            pass
