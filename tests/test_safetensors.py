"""model.save("m.safetensors") and fb.load of it: the layers' weights as named tensors
that other tools read, the config in the metadata, training state included; damaged or
mismatched files refused with a ValueError and no partial file left."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import fastbp as fb
from fastbp import io
from fastbp import layers as L


def _window_model(seed=0):
    w = fb.Input(5, dtype="int64", name="words")
    h = L.WindowEmbedding(30, 4, window=2)(w)
    h = L.Dense(20, 8, activation="tanh")(h)
    m = fb.Model(w, L.Dense(8, 3)(h), dtype="float64", seed=seed)
    m.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")
    rng = np.random.default_rng(1)
    return m, rng.integers(0, 30, (50, 5)), rng.integers(0, 3, 50)


def test_round_trip_keeps_weights_tables_and_training_state(tmp_path):
    m, X, y = _window_model()
    m.fit(X, y, epochs=2, batch_size=8, seed=3)
    path = tmp_path / "m.safetensors"
    m.save(path)
    back = fb.load(path)
    np.testing.assert_array_equal(back.params, m.params)
    np.testing.assert_array_equal(back.tables, m.tables)
    np.testing.assert_array_equal(back.optimizer.state, m.optimizer.state)
    np.testing.assert_array_equal(back.predict(X), m.predict(X))
    m.fit(X, y, epochs=1, batch_size=8)
    back.fit(X, y, epochs=1, batch_size=8)  # the shuffle stream and step counts went along
    np.testing.assert_array_equal(back.params, m.params)
    assert os.listdir(tmp_path) == ["m.safetensors"]


def test_a_bilstm_tagger_round_trips(tmp_path):
    ids = fb.Input(dtype="int64", sequence=True)
    h = L.Bidirectional(L.LSTM(4, 3))(L.Embedding(12, 4, padding_id=0)(ids))
    m = fb.Model(ids, L.Dense(6, 2)(h), dtype="float32")
    m.compile(fb.optim.SGD(lr=0.1), "softmax_cross_entropy")
    X = fb.text.pad_sequences([[1, 2, 3], [4, 5]])
    m.save(tmp_path / "t.safetensors")
    back = fb.load(tmp_path / "t.safetensors")
    np.testing.assert_array_equal(back.predict(X), m.predict(X))


def test_the_safetensors_library_reads_it_with_the_layer_names(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m, X, y = _window_model()
    m.fit(X, y, epochs=1, batch_size=8)
    m.save(tmp_path / "m.safetensors")
    tensors = st.load_file(str(tmp_path / "m.safetensors"))
    assert set(tensors) == {"layers.0.E", "layers.1.W", "layers.1.b", "layers.2.W",
                            "layers.2.b", "optimizer.state", "optimizer.table_state"}
    np.testing.assert_array_equal(tensors["layers.1.W"], m.layers[1].params["W"])
    np.testing.assert_array_equal(tensors["layers.0.E"], m.layers[0].E)
    from safetensors import safe_open
    with safe_open(str(tmp_path / "m.safetensors"), framework="numpy") as f:
        meta = json.loads(f.metadata()["fastbp"])
    assert meta["model"] == json.loads(json.dumps(m.get_config()))


def test_a_file_the_safetensors_library_wrote_reads_back(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    m, X, y = _window_model()
    path = tmp_path / "m.safetensors"
    m.save(path)
    tensors, metadata = io.read_safetensors(path)
    tensors["layers.1.W"] = tensors["layers.1.W"] * 2
    st.save_file(tensors, str(path), metadata=metadata)
    back = fb.load(path)
    np.testing.assert_array_equal(back.layers[1].params["W"], 2 * m.layers[1].params["W"])


def _rewrite(path, change):
    tensors, metadata = io.read_safetensors(path)
    change(tensors, metadata)
    io.write_safetensors(path, tensors, metadata)


@pytest.mark.parametrize("change, message", [
    (lambda t, m: t.pop("layers.2.b"), r"missing \['layers.2.b'\]"),
    (lambda t, m: t.update({"layers.9.W": np.zeros(3)}), r"unexpected \['layers.9.W'\]"),
    (lambda t, m: t.update({"layers.1.W": np.zeros((3, 3))}),
     r"tensor 'layers.1.W' is \(3, 3\) float64; the architecture needs \(20, 8\) float64"),
    (lambda t, m: t.update({"layers.1.W": t["layers.1.W"].astype(np.float32)}),
     "float32; the architecture needs"),
    (lambda t, m: m.pop("fastbp"), "without fastbp's metadata"),
    (lambda t, m: m.update({"fastbp": "{not json"}), "not JSON"),
    (lambda t, m: t.update({"layers.1.W": np.full((20, 8), np.nan)}), "non-finite"),
])
def test_mismatched_files_are_refused(tmp_path, change, message):
    m, _, _ = _window_model()
    path = tmp_path / "m.safetensors"
    m.save(path)
    _rewrite(path, change)
    with pytest.raises(ValueError, match=message):
        fb.load(path)


@pytest.mark.parametrize("damage, message", [
    (lambda b: b[:5], "fewer than the 8"),
    (lambda b: (10**9).to_bytes(8, "little") + b[8:], "a header of 1000000000 bytes"),
    (lambda b: b[:8] + b"[" + b[9:], "not a fastbp checkpoint|not a JSON object|not JSON"),
    (lambda b: b[:-3], "offsets"),
])
def test_damaged_files_are_refused(tmp_path, damage, message):
    m, _, _ = _window_model()
    path = tmp_path / "m.safetensors"
    m.save(path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        fb.load(path)


def test_overlapping_tensors_are_refused(tmp_path):
    path = tmp_path / "x.safetensors"
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}
    raw = json.dumps(header).encode()
    path.write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(12))
    with pytest.raises(ValueError, match="overlap"):
        io.read_safetensors(path)


def test_a_failed_save_leaves_no_partial_file(tmp_path):
    path = tmp_path / "x.safetensors"
    with pytest.raises(TypeError, match="cannot hold tensor 'c' of dtype complex128"):
        io.write_safetensors(path, {"a": np.zeros(3), "c": np.zeros(2, complex)}, {})
    assert os.listdir(tmp_path) == []
