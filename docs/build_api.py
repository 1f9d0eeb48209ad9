"""Write docs/api.md from fastbp's docstrings:  python docs/build_api.py"""
from __future__ import annotations

import inspect
import os

import fastbp as fb

MODULES = [
    ("fastbp", ["Model", "Sequential", "Input", "History", "DivergenceError", "gradcheck", "load",
                "set_num_threads", "get_num_threads", "warmup", "cache_dir", "cache_dirs",
                "clear_cache"]),
    ("fastbp.layers", ["Layer", "Dense", "Dropout", "WindowEmbedding", "Embedding", "Concatenate",
                       "Add", "RNN", "LSTM", "GRU", "Bidirectional"]),
    ("fastbp.losses", ["MSE", "BinaryCrossEntropy", "SoftmaxCrossEntropy"]),
    ("fastbp.optim", ["Optimizer", "SGD", "Adam", "AdamW", "AdaGrad", "RMSProp", "Adadelta",
                      "Yogi"]),
    ("fastbp.schedules", ["StepDecay", "ExponentialDecay", "InverseTimeDecay", "CosineDecay",
                          "LinearWarmup", "CyclicLR"]),
    ("fastbp.init", ["he_normal", "he_uniform", "xavier_normal", "xavier_uniform",
                     "lecun_normal", "lecun_uniform", "orthogonal", "zeros", "normal"]),
    ("fastbp.callbacks", ["Callback", "EarlyStopping", "LearningRateScheduler",
                          "ModelCheckpoint", "LambdaCallback", "ReduceLROnPlateau",
                          "CSVLogger"]),
    ("fastbp.diagnostics", ["layer_statistics", "report", "state_gradients", "plot"]),
    ("fastbp.text", ["Vocabulary", "windows", "label_vocabulary", "label_array", "load_vectors",
                     "load_vectors_npy", "embedding_matrix", "casing_ids", "affix_vocabulary",
                     "affix_ids", "read_conllu", "read_conll", "conlleval", "pad_sequences",
                     "Tagger"]),
    ("fastbp.datasets", ["load_digits", "train_test_split"]),
    ("fastbp.interop", ["to_torch", "from_torch", "export_onnx"]),
    ("fastbp.distributed", ["DistributedError", "shard", "threads_per_rank", "rank_seed",
                            "Session"]),
]


def _signature(obj) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return "(...)"


def main() -> None:
    import importlib
    out = ["# API reference", "",
           "Generated from the docstrings by `python docs/build_api.py`; do not edit by hand.", ""]
    for modname, names in MODULES:
        mod = importlib.import_module(modname)
        out += [f"## `{modname}`", ""]
        doc = inspect.getdoc(mod)
        if doc and modname != "fastbp":
            out += [doc, ""]
        for name in names:
            obj = getattr(mod, name, None)
            if obj is None:
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            out += [f"### {kind} `{modname}.{name}{_signature(obj)}`", ""]
            out += ["```text", inspect.getdoc(obj) or "(no docstring)", "```", ""]
            if inspect.isclass(obj):
                for mname, member in inspect.getmembers(obj):
                    if mname.startswith("_") or mname in ("from_config", "get_config"):
                        continue
                    if (inspect.isfunction(member) and member.__qualname__.startswith(name + ".")
                            and inspect.getdoc(member)):
                        out += [f"- `{mname}{_signature(member)}`: "
                                f"{inspect.getdoc(member).splitlines()[0]}"]
                out.append("")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "api.md")
    with open(path, "w") as f:
        f.write("\n".join(out))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
