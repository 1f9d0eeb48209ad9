"""fb.interop: to_torch and from_torch give modules and models with equal outputs."""
from __future__ import annotations

import numpy as np
import pytest

import fastbp as fb
from fastbp import interop
from fastbp import layers as L

torch = pytest.importorskip("torch")
nn = torch.nn


def _mlp(dtype="float32"):
    m = fb.Sequential([L.Dense(6, 16, activation="relu"), L.Dropout(0.3),
                       L.Dense(16, 8, activation="leaky_relu", slope=0.2),
                       L.Dense(8, 8, activation="tanh"), L.Dense(8, 4, activation="sigmoid"),
                       L.Dense(4, 3)], dtype=dtype, seed=1)
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 6)).astype(dtype)
    m.fit(X, rng.integers(0, 3, 64), epochs=2, batch_size=16)
    return m, X


def test_to_torch_of_an_mlp_predicts_the_same_float32():
    m, X = _mlp()
    t = interop.to_torch(m).eval()
    with torch.no_grad():
        out = t(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, m.predict(X), rtol=0, atol=1e-6)
    assert [type(x).__name__ for x in t] == ["Linear", "ReLU", "Dropout", "Linear", "LeakyReLU",
                                             "Linear", "Tanh", "Linear", "Sigmoid", "Linear"]


def test_to_torch_of_a_window_model_predicts_the_same():
    w = fb.Input(3, dtype="int64")
    h = L.WindowEmbedding(20, 4, window=1, padding_id=0)(w)
    m = fb.Model(w, L.Dense(4, 5)(L.Dense(12, 4, activation="tanh")(h)), seed=2)
    X = np.random.default_rng(1).integers(0, 20, (30, 3))
    t = interop.to_torch(m)
    with torch.no_grad():
        out = t(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(out, m.predict(X), rtol=0, atol=1e-6)
    assert t[0].padding_idx == 0


def test_from_torch_builds_the_same_function_and_round_trips():
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Dropout(0.2), nn.Linear(10, 7),
                           nn.LeakyReLU(0.1), nn.Linear(7, 5), nn.Tanh(), nn.Linear(5, 2)).eval()
    m = interop.from_torch(module)
    X = np.random.default_rng(3).standard_normal((40, 6)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(m.predict(X), want, rtol=0, atol=1e-6)
    assert [type(x).__name__ for x in m.layers] == ["Dense", "Dropout", "Dense", "Dense", "Dense"]
    assert m.layers[2].slope == pytest.approx(0.1)
    back = interop.to_torch(m).eval()
    with torch.no_grad():
        np.testing.assert_allclose(back(torch.from_numpy(X)).numpy(), want, rtol=0, atol=1e-6)


def test_from_torch_float64_keeps_the_dtype():
    module = nn.Sequential(nn.Linear(3, 2, dtype=torch.float64))
    m = interop.from_torch(module)
    assert m.dtype == "float64"
    X = np.random.default_rng(0).standard_normal((5, 3))
    with torch.no_grad():
        np.testing.assert_allclose(m.predict(X), module(torch.from_numpy(X)).numpy(),
                                   rtol=0, atol=1e-12)


@pytest.mark.parametrize("module, message", [
    (nn.Sequential(nn.Linear(3, 2), nn.Softmax(dim=1)), "module 1 is a Softmax"),
    (nn.Sequential(nn.Conv1d(1, 1, 3)), "module 0 is a Conv1d"),
    (nn.Sequential(nn.Linear(3, 2, bias=False)), "without a bias"),
    (nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), "module 0 is a ReLU"),
    (nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2, dtype=torch.float64)), "all the same"),
    (nn.Sequential(), "no Linear"),
])
def test_from_torch_names_what_it_cannot_build(module, message):
    with pytest.raises(TypeError, match=message):
        interop.from_torch(module)


def test_from_torch_needs_a_sequential():
    with pytest.raises(TypeError, match="takes a torch.nn.Sequential, got Linear"):
        interop.from_torch(nn.Linear(2, 2))


def test_to_torch_names_what_it_cannot_translate():
    ids = fb.Input(dtype="int64", sequence=True)
    h = L.LSTM(4, 3)(L.Embedding(10, 4)(ids))
    m = fb.Model(ids, L.Dense(3, 2)(h))
    with pytest.raises(TypeError, match="layer 0 is a Embedding"):
        interop.to_torch(m)
    a, b = fb.Input(2), fb.Input(2)
    branched = fb.Model([a, b], L.Dense(4, 1)(L.Concatenate()([a, b])))
    with pytest.raises(TypeError, match="chain of layers"):
        interop.to_torch(branched)


# -- ONNX -----------------------------------------------------------------------------------
def _onnx_run(path, X):
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": X})[0]


def test_onnx_export_of_an_mlp_equals_predict(tmp_path):
    pytest.importorskip("onnx")
    m, X = _mlp()
    m.export_onnx(tmp_path / "m.onnx")
    np.testing.assert_allclose(_onnx_run(tmp_path / "m.onnx", X), m.predict(X), rtol=0,
                               atol=1e-5)
    assert _onnx_run(tmp_path / "m.onnx", X[:1]).shape == (1, 3)  # any row count


def test_onnx_export_of_a_window_model_equals_predict(tmp_path):
    pytest.importorskip("onnx")
    w = fb.Input(5, dtype="int64")
    h = L.WindowEmbedding(30, 4, window=2, padding_id=0)(w)
    m = fb.Model(w, L.Dense(8, 5)(L.Dense(20, 8, activation="relu")(h)), seed=4)
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    rng = np.random.default_rng(2)
    X = rng.integers(0, 30, (40, 5))
    m.fit(X, rng.integers(0, 5, 40), epochs=2, batch_size=8)
    m.export_onnx(tmp_path / "w.onnx")
    np.testing.assert_allclose(_onnx_run(tmp_path / "w.onnx", X), m.predict(X), rtol=0,
                               atol=1e-5)


def test_onnx_export_refuses_what_it_cannot_write_and_leaves_no_file(tmp_path):
    pytest.importorskip("onnx")
    ids = fb.Input(dtype="int64", sequence=True)
    m = fb.Model(ids, L.Dense(3, 2)(L.LSTM(4, 3)(L.Embedding(10, 4)(ids))))
    with pytest.raises(TypeError, match="export_onnx: layer 0 is a Embedding"):
        m.export_onnx(tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []
