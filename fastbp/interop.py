"""PyTorch modules from fastbp models and back, with the same weights.

``to_torch(model)`` gives the ``nn.Sequential`` that computes what ``model.predict``
does (logits for the logit losses), for a chain of Dense and Dropout layers with an
optional WindowEmbedding first.  ``from_torch(module)`` builds a fastbp
``Sequential`` from an ``nn.Sequential`` of Linear layers, each optionally followed by
one activation (ReLU, LeakyReLU, Tanh, Sigmoid, Identity) and Dropout.  fastbp stores
a Dense layer's W as (n_in, n_out), so ``Linear.weight = W.T``.  PyTorch is imported
only when these are called.
"""
from __future__ import annotations

import numpy as np


def _torch():
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"fastbp.interop needs PyTorch (pip install torch) ({e})") from None
    return torch


def _chain(model):
    """The model's layers in order when it is a chain of single-input calls."""
    from .model import Sequential
    if isinstance(model, Sequential):
        return list(model.layers)
    config = model.get_config()
    calls = config.get("calls", [])
    n_inputs = len(config.get("inputs", []))
    for k, call in enumerate(calls):
        if call["inputs"] != [n_inputs + k - 1]:
            raise TypeError("to_torch takes a chain of layers (a Sequential, or a Model whose "
                            "every call reads the previous one's output); this model "
                            "branches or has several inputs")
    return [model.layers[call["layer"]] for call in calls]


def to_torch(model):
    """The ``torch.nn.Sequential`` equal to ``model`` (its predict), weights copied."""
    torch = _torch()
    from torch import nn

    from . import layers as L
    dtype = {"float32": torch.float32, "float64": torch.float64}[str(np.dtype(model.dtype))]
    modules = []
    for i, layer in enumerate(_chain(model)):
        kind = type(layer).__name__
        if type(layer) is L.Dense:
            lin = nn.Linear(layer.n_in, layer.n_out, dtype=dtype)
            with torch.no_grad():
                lin.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.params["W"].T)))
                lin.bias.copy_(torch.from_numpy(layer.params["b"].copy()))
            modules.append(lin)
            act = {"relu": nn.ReLU(), "tanh": nn.Tanh(), "sigmoid": nn.Sigmoid(),
                   "leaky_relu": nn.LeakyReLU(layer.slope), "linear": None,
                   None: None}[layer.activation]
            if act is not None:
                modules.append(act)
        elif type(layer) is L.Dropout:
            modules.append(nn.Dropout(layer.p))
        elif type(layer) is L.WindowEmbedding and i == 0:
            emb = nn.Embedding(layer.vocab_size, layer.dim, padding_idx=layer.padding_id,
                               dtype=dtype)
            with torch.no_grad():
                emb.weight.copy_(torch.from_numpy(layer.E.copy()))
            modules += [emb, nn.Flatten(1)]
        else:
            where = "first" if i == 0 else f"at position {i}"
            raise TypeError(f"to_torch: layer {i} is a {kind} ({where}); it translates Dense, "
                            f"Dropout and a first WindowEmbedding")
    return nn.Sequential(*modules)


def from_torch(module, seed: int = 0):
    """A fastbp ``Sequential`` equal to the ``nn.Sequential`` ``module`` (uncompiled),
    in the dtype of its weights (float32 or float64).  ``seed`` is the new model's seed
    (its weights are copied from ``module``, so the seed matters only for the dropout
    stream of a ``fit`` without one)."""
    torch = _torch()
    from torch import nn

    from . import layers as L
    from .model import Sequential
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch takes a torch.nn.Sequential, got {type(module).__name__}")
    acts = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.Sigmoid: "sigmoid", nn.Identity: None}
    parts, dtype = [], None
    mods = list(module)
    i = 0
    while i < len(mods):
        m = mods[i]
        if isinstance(m, nn.Linear):
            if m.bias is None:
                raise TypeError(f"from_torch: module {i} is a Linear without a bias; fastbp's "
                                f"Dense always has one")
            d = {torch.float32: "float32", torch.float64: "float64"}.get(m.weight.dtype)
            if d is None or (dtype is not None and d != dtype):
                raise TypeError(f"from_torch: module {i} has weights of dtype "
                                f"{m.weight.dtype}; every Linear must be float32 or float64, "
                                f"all the same")
            dtype = d
            activation, slope = None, 0.01
            nxt = mods[i + 1] if i + 1 < len(mods) else None
            if type(nxt) in acts:
                activation = acts[type(nxt)]
                i += 1
            elif isinstance(nxt, nn.LeakyReLU):
                activation, slope = "leaky_relu", float(nxt.negative_slope)
                i += 1
            kw = {"slope": slope} if activation == "leaky_relu" else {}
            parts.append((L.Dense(m.in_features, m.out_features, activation=activation, **kw),
                          m))
        elif isinstance(m, nn.Dropout):
            parts.append((L.Dropout(float(m.p)), None))
        else:
            raise TypeError(f"from_torch: module {i} is a {type(m).__name__}; fastbp builds "
                            f"Linear (each followed by at most one of ReLU, LeakyReLU, Tanh, "
                            f"Sigmoid, Identity) and Dropout")
        i += 1
    if dtype is None:
        raise TypeError("from_torch: the Sequential holds no Linear layer")
    model = Sequential([layer for layer, _ in parts], dtype=dtype, seed=seed)
    for layer, lin in parts:
        if lin is not None:
            layer.params["W"][...] = lin.weight.detach().cpu().numpy().T
            layer.params["b"][...] = lin.bias.detach().cpu().numpy()
    return model


def export_onnx(model, path, opset: int = 17) -> None:
    """Write ``model`` as an ONNX graph computing its predict (extra ``fastbp[onnx]``):
    a chain of Dense and Dropout layers (Dropout is the identity at inference) with an
    optional first WindowEmbedding (a Gather and a Reshape).  Input ``x`` (rows, n_in),
    float, or int64 ids (rows, 2w+1); output ``y`` (rows, n_out); the row count is free.
    Written atomically to ``path``: a failure leaves no file.  ``opset`` is the ONNX
    operator set version the graph declares (17 by default)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as e:
        raise ImportError(f"export_onnx needs onnx: pip install 'fastbp[onnx]' ({e})") from None
    from . import io
    from . import layers as L
    chain = _chain(model)
    ftype = {"float32": TensorProto.FLOAT, "float64": TensorProto.DOUBLE}[
        str(np.dtype(model.dtype))]
    nodes, inits = [], []
    x_name = "x"
    current = x_name
    first = chain[0] if chain else None
    if isinstance(first, L.WindowEmbedding):
        inputs = [helper.make_tensor_value_info(x_name, TensorProto.INT64, ["rows", first.n_in])]
    else:
        width = first.n_in if first is not None else model.inputs[0].width
        inputs = [helper.make_tensor_value_info(x_name, ftype, ["rows", width])]

    def name(stem):
        return f"{stem}_{len(nodes)}"
    for i, layer in enumerate(chain):
        if type(layer) is L.WindowEmbedding and i == 0:
            table, shape, gathered, out = (f"layers.{i}.E", name("shape"), name("gathered"),
                                           name("windows"))
            inits += [numpy_helper.from_array(np.ascontiguousarray(layer.E), table),
                      numpy_helper.from_array(np.array([-1, layer.n_in * layer.dim],
                                                       dtype=np.int64), shape)]
            nodes += [helper.make_node("Gather", [table, current], [gathered], axis=0),
                      helper.make_node("Reshape", [gathered, shape], [out])]
            current = out
        elif type(layer) is L.Dense:
            W, b, out = f"layers.{i}.W", f"layers.{i}.b", name("dense")
            inits += [numpy_helper.from_array(np.ascontiguousarray(layer.params["W"]), W),
                      numpy_helper.from_array(np.ascontiguousarray(layer.params["b"]), b)]
            nodes.append(helper.make_node("Gemm", [current, W, b], [out]))
            current = out
            op = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid",
                  "leaky_relu": "LeakyRelu"}.get(layer.activation)
            if op is not None:
                out = name("act")
                extra = {"alpha": float(layer.slope)} if op == "LeakyRelu" else {}
                nodes.append(helper.make_node(op, [current], [out], **extra))
                current = out
        elif type(layer) is L.Dropout:
            continue  # the identity at inference
        else:
            raise TypeError(f"export_onnx: layer {i} is a {type(layer).__name__}; it exports "
                            f"Dense, Dropout and a first WindowEmbedding")
    nodes.append(helper.make_node("Identity", [current], ["y"]))
    outputs = [helper.make_tensor_value_info("y", ftype, ["rows", model.n_out])]
    graph = helper.make_graph(nodes, "fastbp", inputs, outputs, initializer=inits)
    onnx_model = helper.make_model(graph, producer_name="fastbp",
                                   opset_imports=[helper.make_opsetid("", int(opset))])
    onnx.checker.check_model(onnx_model)
    data = onnx_model.SerializeToString()
    io.write_atomically(path, lambda f: f.write(data))
