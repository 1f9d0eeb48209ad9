"""A user's own data: array-likes converted once, memory-mapped files read a block at a
time (fastbp.model.streaming) with the same results as in-memory arrays."""
from __future__ import annotations

import mmap
import re

import numpy as np
import pytest

import fastbp as fb
from fastbp.model import streaming


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of a few minibatches and pieces of a few rows: every path of the gather
    runs many times on small data."""
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 4096)
    monkeypatch.setattr(streaming, "SPAN_BYTES", 640)


def _mlp(seed=0, dropout=0.3, metrics=None):
    model = fb.Sequential([fb.layers.Dense(16, 20, activation="relu"),
                           fb.layers.Dropout(dropout), fb.layers.Dense(20, 3)], seed=seed)
    return model.compile(fb.optim.Adam(lr=1e-2), "softmax_cross_entropy", metrics=metrics)


def _data(n=700, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 16)).astype(np.float32)
    y = (X[:, :3] @ rng.standard_normal((3, 3))).argmax(axis=1)
    return X, y


def _on_disk(tmp_path, name, a, mode="r"):
    path = tmp_path / f"{name}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode=mode)


@pytest.mark.parametrize("mode", ["r", "r+", "c"])
def test_memmap_fit_is_bit_identical_to_the_array(tmp_path, small_blocks, mode):
    X, y = _data()
    Xm = _on_disk(tmp_path, "X", X, mode)
    assert isinstance(Xm, np.memmap) and streaming.file_backed([Xm])
    w = np.random.default_rng(1).uniform(0.5, 2.0, len(y))
    kwargs = dict(epochs=3, batch_size=32, seed=4, accumulate=2, validation_split=0.2,
                  sample_weight=w, class_weight={0: 2.0})
    a, b = _mlp(metrics=["accuracy", "f1_macro"]), _mlp(metrics=["accuracy", "f1_macro"])
    ha, hb = a.fit(X, y, **kwargs), b.fit(Xm, y, **kwargs)
    np.testing.assert_array_equal(a.params, b.params)
    for key in ("loss", "val_loss", "val_accuracy", "val_f1_macro"):
        assert ha.history[key] == hb.history[key], key
    np.testing.assert_array_equal(a.predict(X), b.predict(Xm))
    assert a.evaluate(X, y)["accuracy"] == b.evaluate(Xm, y)["accuracy"]
    np.testing.assert_allclose(a.evaluate(X, y)["loss"], b.evaluate(Xm, y)["loss"], rtol=1e-12)
    np.testing.assert_array_equal(np.load(tmp_path / "X.npy"), X)  # the file is unchanged


def test_memmap_targets_validation_data_and_views(tmp_path, small_blocks):
    X, y = _data()
    Xm, ym = _on_disk(tmp_path, "X", X), _on_disk(tmp_path, "y", y)
    view = Xm[50:]  # a view into the map: its rows start past the map's first byte
    assert streaming._mapping(view).base == streaming._mapping(Xm).base
    a, b = _mlp(), _mlp()
    a.fit(X[50:600], y[50:600], epochs=2, batch_size=24, seed=2,
          validation_data=(X[600:], y[600:]))
    b.fit(view[:550], ym[50:600], epochs=2, batch_size=24, seed=2,
          validation_data=(Xm[600:], ym[600:]))
    np.testing.assert_array_equal(a.params, b.params)


def test_memmap_two_inputs_window_and_features(tmp_path, small_blocks):
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 30, (400, 5))
    feats = rng.standard_normal((400, 4)).astype(np.float32)
    y = ids[:, 2] % 3
    idm = _on_disk(tmp_path, "ids", ids)

    def model():
        w, f = fb.Input(5, dtype="int64", name="w"), fb.Input(4, name="f")
        h = fb.layers.Concatenate()([fb.layers.WindowEmbedding(30, 6, window=2)(w), f])
        out = fb.layers.Dense(34, 3)(fb.layers.Dense(34, 34, activation="tanh")(h))
        return fb.Model(inputs=[w, f], outputs=out, seed=0).compile(
            fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")

    a, b = model(), model()
    a.fit([ids, feats], y, epochs=2, batch_size=16, seed=1)
    b.fit({"w": idm, "f": feats}, y, epochs=2, batch_size=16, seed=1)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.embeddings[0].E, b.embeddings[0].E)
    bad = ids.copy()
    bad[333, 1] = 30
    before = b.params.copy()
    with pytest.raises(ValueError, match=r"counted from row \d+ \(the block of rows"):
        b.fit([_on_disk(tmp_path, "bad", bad), feats], y)
    np.testing.assert_array_equal(b.params, before)


def test_bad_rows_in_a_memmap_are_refused_before_any_step(tmp_path, small_blocks):
    X, y = _data()
    X[650, 3] = np.nan
    model = _mlp()
    before = model.params.copy()
    pattern = r"non-finite value: nan at index \((\d+), 3\), counted from row (\d+)"
    with pytest.raises(ValueError, match=pattern) as info:
        model.fit(_on_disk(tmp_path, "X", X), y, epochs=1)
    row, start = (int(g) for g in re.search(pattern, str(info.value)).groups())
    assert row + start == 650
    np.testing.assert_array_equal(model.params, before)
    with pytest.raises(ValueError, match="y has 699 rows; X has 700"):
        model.fit(_on_disk(tmp_path, "X2", X[:, :]), y[:-1])
    with pytest.raises(ValueError, match="features per sample"):
        model.fit(_on_disk(tmp_path, "X3", X[:, :15]), y)


def test_pages_are_handed_back(tmp_path):
    X = np.ones((4096, 256), dtype=np.float32)  # 4 MiB
    Xm = _on_disk(tmp_path, "X", X)
    m = streaming._mapping(Xm)
    calls, real = [], m.mm

    class Spy:
        def __len__(self):
            return len(real)

        def madvise(self, *args):
            calls.append(args)
            return real.madvise(*args)

    m.mm = Spy()
    rows = np.random.default_rng(0).permutation(4096)[:1000]
    np.testing.assert_array_equal(streaming.gather(Xm, rows, m), X[rows])
    assert calls and all(c[0] == mmap.MADV_DONTNEED for c in calls)
    assert all(c[1] % mmap.PAGESIZE == 0 for c in calls)


def test_sequence_models_read_a_memmap_whole(tmp_path):
    rng = np.random.default_rng(0)
    ids = rng.integers(1, 20, (40, 7))
    ids[::3, 5:] = 0
    tags = np.where(ids > 0, ids % 4, -1)

    def model():
        tok = fb.Input(dtype="int64", sequence=True)
        h = fb.layers.LSTM(8, 6)(fb.layers.Embedding(20, 8, padding_id=0)(tok))
        return fb.Model(inputs=tok, outputs=fb.layers.Dense(6, 4)(h), seed=0).compile(
            fb.optim.Adam(lr=1e-2), "softmax_cross_entropy")

    a, b = model(), model()
    a.fit(ids, tags, epochs=2, batch_size=8, seed=0)
    b.fit(_on_disk(tmp_path, "ids", ids), tags, epochs=2, batch_size=8, seed=0)
    np.testing.assert_array_equal(a.params, b.params)


def test_lists_are_converted_once():
    X, y = _data(200)
    a, b = _mlp(), _mlp()
    a.fit(X, y, epochs=2, batch_size=20, seed=0)
    b.fit(X.tolist(), y.tolist(), epochs=2, batch_size=20, seed=0)
    np.testing.assert_array_equal(a.params, b.params)
    np.testing.assert_array_equal(a.predict(X.tolist()), a.predict(X))


def test_pandas_frames_are_converted_once():
    pd = pytest.importorskip("pandas")
    X, y = _data(200)
    a, c = _mlp(), _mlp()
    a.fit(X, y, epochs=2, batch_size=20, seed=0)
    c.fit(pd.DataFrame(X), pd.Series(y), epochs=2, batch_size=20, seed=0)
    np.testing.assert_array_equal(a.params, c.params)
    np.testing.assert_array_equal(a.predict(pd.DataFrame(X)), a.predict(X))


def test_own_data_doc_runs(tmp_path, monkeypatch, capsys):
    """docs/own-data.md's script, on an iris-shaped CSV of three separable classes."""
    import pathlib
    import re as _re
    doc = (pathlib.Path(__file__).resolve().parent.parent / "docs" / "own-data.md").read_text()
    script = _re.search(r"## The script\n\n```python\n(.*?)```", doc, _re.S).group(1)
    rng = np.random.default_rng(0)
    centres = {"setosa": [5.0, 3.4, 1.5, 0.2], "versicolor": [5.9, 2.8, 4.3, 1.3],
               "virginica": [6.6, 3.0, 5.6, 2.0]}
    lines = ["sepal_length,sepal_width,petal_length,petal_width,species"]
    for i in range(150):
        name = list(centres)[i % 3]
        values = np.array(centres[name]) + rng.normal(0, 0.15, 4)
        lines.append(",".join(f"{v:.2f}" for v in values) + f",{name}")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    monkeypatch.chdir(tmp_path)
    namespace = {}
    exec(compile(script, "docs/own-data.md", "exec"), namespace)
    assert namespace["predicted"] == ["setosa", "virginica"]
    assert namespace["model"].evaluate(namespace["X_test"], namespace["y_test"])[
        "accuracy"] > 0.9
    assert (tmp_path / "model.fbp").is_file()
    np.testing.assert_array_equal(namespace["loaded"].params, namespace["model"].params)
    assert "test:" in capsys.readouterr().out
