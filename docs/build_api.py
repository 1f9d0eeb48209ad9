"""Build fastbp's API reference with pdoc and check that every public name is documented.

    python docs/build_api.py                  # check, then render HTML into build/api/
    python docs/build_api.py --out DIR        # render into DIR (index.html is the entry page)
    python docs/build_api.py --check-only     # the completeness check alone, no HTML

The reference is rendered by pdoc (``pip install '.[docs]'``) from the docstrings, in the
numpydoc format, for the modules in ``MODULES`` (``fastbp.metrics`` and ``fastbp.sklearn``
only when they exist).  Every warning pdoc emits while it renders, through ``warnings`` or
``logging``, is an error.

The completeness check covers every public name of those modules (a module's ``__all__``
where it has one; else the names listed in ``MODULES`` and every public class and function
the module defines, which is what pdoc renders), the public methods and properties of every
public class (inherited ones included, each checked once, where it is defined), and the
classes' constructors.  The rule:

1. every module, class, function and method has a docstring (a class its own, not one
   inherited from its base; a method may inherit its base method's, as pdoc shows it);
   a property needs a docstring and nothing else (its getter's, or an attribute
   docstring: a string literal right after ``name = property(...)``, which pdoc shows);
2. every parameter of a function's or method's signature, except ``self``, ``cls``,
   ``*args``, ``**kwargs`` and names starting with ``_``, appears as a whole word in its
   docstring; a constructor's parameters (the signature of the class) appear in the class
   docstring or in ``__init__``'s own docstring;
3. where a docstring has a numpydoc ``Parameters`` section, every such parameter has an
   entry in it (``name : type``, or ``a, b : type``), and no entry names a parameter the
   signature lacks (unless it takes ``*args`` or ``**kwargs``).

Every violation is printed, with the file it is in; the exit status is 1 if there is any
violation or any pdoc warning, 0 otherwise.
"""
from __future__ import annotations

import argparse
import ast
import functools
import importlib
import importlib.util
import inspect
import logging
import os
import re
import sys
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The public API: each module, and the names to check where it has no ``__all__``.
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
    ("fastbp.gradcheck", ["gradcheck"]),
]
# Documented when they exist (a missing module, or one whose optional dependency is not
# installed, is left out with a note; one that exists and fails to import is an error).
OPTIONAL_MODULES = [
    ("fastbp.metrics", []),
    ("fastbp.sklearn", []),
]

SKIPPED_PARAMETERS = {"self", "cls"}


class Violation:
    """One undocumented name or parameter, with the file it is defined in."""

    def __init__(self, path: str, name: str, problem: str):
        self.path, self.name, self.problem = path, name, problem

    def __str__(self) -> str:
        return f"{self.path}: {self.name}: {self.problem}"

    __repr__ = __str__


def _relpath(obj) -> str:
    try:
        path = inspect.getsourcefile(inspect.unwrap(obj)) or "?"
    except TypeError:
        module = sys.modules.get(getattr(obj, "__module__", ""), None)
        path = getattr(module, "__file__", None) or "?"
    try:
        return Path(path).resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path


def public_modules() -> tuple[list[tuple[object, list[str]]], list[str]]:
    """Import the modules to document: ([(module, listed names)], notes on those left out)."""
    found, notes = [], []
    for name, listed in MODULES:
        found.append((importlib.import_module(name), listed))
    for name, listed in OPTIONAL_MODULES:
        if importlib.util.find_spec(name) is None:
            notes.append(f"{name}: not present, left out")
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as e:
            if e.name and (e.name == "fastbp" or e.name.startswith("fastbp.")):
                raise
            notes.append(f"{name}: left out, it needs {e.name} ({e})")
            continue
        found.append((module, listed))
    return found, notes


# ---------------------------------------------------------------- completeness check

def _has_word(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w]){re.escape(word)}(?![\w])", text) is not None


# A numpydoc entry line: "name", "name : type" or "a, b : type" (``*args`` allowed).
_ENTRY = re.compile(r"\s*(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s*(?::.*)?$")


def _parameters_section(doc: str) -> list[str] | None:
    """The names in a numpydoc ``Parameters`` section, or None where there is none."""
    lines = doc.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Parameters" and re.fullmatch(r"\s*-{3,}\s*", lines[i + 1]):
            body = []
            for j in range(i + 2, len(lines)):
                if (j + 1 < len(lines) and lines[j].strip()
                        and re.fullmatch(r"\s*-{3,}\s*", lines[j + 1])):
                    break  # the next section's title
                body.append(lines[j])
            indents = [len(s) - len(s.lstrip()) for s in body if s.strip()]
            if not indents:
                return []
            base = min(indents)
            names = []
            for s in body:
                if s.strip() and len(s) - len(s.lstrip()) == base:
                    entry = _ENTRY.match(s)
                    if entry:
                        names += [n.strip().lstrip("*") for n in entry.group(1).split(",")]
            return names
    return None


def _check_parameters(sig: inspect.Signature, doc: str, path: str, name: str,
                      sections: list[str]) -> list[Violation]:
    """Rules 2 and 3 for one signature against its docstring text ``doc``."""
    out = []
    params = [p for p in sig.parameters.values()
              if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    params = [p.name for p in params
              if p.name not in SKIPPED_PARAMETERS and not p.name.startswith("_")]
    varargs = any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in sig.parameters.values())
    missing = [p for p in params if not _has_word(doc, p)]
    if missing:
        out.append(Violation(path, name, "parameters not in the docstring: " + ", ".join(missing)))
    entries = [n for section in sections for n in (_parameters_section(section) or [])]
    if any(_parameters_section(section) is not None for section in sections):
        absent = [p for p in params if p not in missing and p not in entries]
        if absent:
            out.append(Violation(path, name, "parameters mentioned but without an entry in the "
                                             "Parameters section: " + ", ".join(absent)))
        stale = [n for n in entries if n not in params and n not in SKIPPED_PARAMETERS]
        if stale and not varargs:
            out.append(Violation(path, name, "Parameters section names parameters the signature "
                                             "lacks: " + ", ".join(stale)))
    return out


def _signature(obj) -> inspect.Signature | None:
    try:
        return inspect.signature(obj)
    except (TypeError, ValueError):
        return None


def _check_function(func, qualname: str) -> list[Violation]:
    path = _relpath(func)
    doc = inspect.getdoc(func)
    if not doc:
        return [Violation(path, qualname, "no docstring")]
    sig = _signature(func)
    return [] if sig is None else _check_parameters(sig, doc, path, qualname, [doc])


def _defined_in_fastbp(klass) -> bool:
    return getattr(klass, "__module__", "").split(".")[0] == "fastbp"


def _check_class(cls, qualname: str, seen: set) -> list[Violation]:
    out = []
    path = _relpath(cls)
    own = cls.__dict__.get("__doc__")
    own = inspect.cleandoc(own) if own else ""
    if not own:
        out.append(Violation(path, qualname, "no docstring of its own"))
    init = next((k.__dict__["__init__"] for k in cls.__mro__ if "__init__" in k.__dict__), None)
    sig = _signature(cls)
    if sig is not None and init is not None and init is not object.__init__:
        texts = [own]
        if inspect.isfunction(init) and init.__doc__:
            texts.append(inspect.cleandoc(init.__doc__))
        if own or len(texts) > 1:
            out += _check_parameters(sig, "\n".join(texts), path, qualname + "()", texts)
    for name in sorted(dir(cls)):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in k.__dict__), None)
        if owner is None or not _defined_in_fastbp(owner) or (owner, name) in seen:
            continue
        seen.add((owner, name))
        raw = owner.__dict__[name]
        where = f"{owner.__module__}.{owner.__qualname__}.{name}"
        if isinstance(raw, (property, functools.cached_property)):
            fget = raw.fget if isinstance(raw, property) else raw.func
            if not (raw.__doc__ or "").strip() and name not in _attribute_docstrings(owner):
                out.append(Violation(_relpath(fget), where, "property without a docstring"))
        elif isinstance(raw, (staticmethod, classmethod)) or inspect.isfunction(raw):
            out += _check_function(getattr(cls, name), where)
    return out


@functools.lru_cache(maxsize=None)
def _attribute_docstrings(klass) -> frozenset:
    """Names assigned in a class body with a string literal right after them (attribute
    docstrings, which pdoc shows, as for ``W = property(...)``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
    except (OSError, TypeError, SyntaxError):
        return frozenset()
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    names = set()
    for stmt, after in zip(body, body[1:]):
        if (isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str) and after.value.value.strip()):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else (
                [stmt.target] if isinstance(stmt, ast.AnnAssign) else [])
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return frozenset(names)


def check(modules) -> list[Violation]:
    """Every violation of the rule in the module docstring, for the given modules."""
    out: list[Violation] = []
    seen_objects: set = set()
    seen_members: set = set()
    documented = {m.__name__ for m, _ in modules}
    for module, listed in modules:
        modname = module.__name__
        if not (module.__doc__ or "").strip():
            out.append(Violation(_relpath(module), modname, "module without a docstring"))
        names = getattr(module, "__all__", None)
        if names is None:
            defined = [n for n, obj in vars(module).items()
                       if not n.startswith("_")
                       and (inspect.isclass(obj) or inspect.isfunction(obj))
                       and getattr(obj, "__module__", None) == modname]
            names = list(dict.fromkeys(list(listed) + defined))
        for name in names:
            if not hasattr(module, name):
                out.append(Violation(_relpath(module), f"{modname}.{name}",
                                     "listed as public but not defined"))
                continue
            obj = getattr(module, name)
            if inspect.ismodule(obj):
                if obj.__name__ not in documented:
                    out.append(Violation(_relpath(module), f"{modname}.{name}",
                                         f"public module {obj.__name__} is missing from "
                                         f"MODULES in docs/build_api.py"))
                continue
            if id(obj) in seen_objects:
                continue
            if inspect.isclass(obj):
                seen_objects.add(id(obj))
                out += _check_class(obj, f"{obj.__module__}.{obj.__qualname__}", seen_members)
            elif inspect.isfunction(obj) or hasattr(obj, "py_func"):
                seen_objects.add(id(obj))
                func = getattr(obj, "py_func", obj)
                out += _check_function(func, f"{func.__module__}.{func.__qualname__}")
    return out


# ---------------------------------------------------------------- rendering

class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def build(modules, out: Path) -> list[str]:
    """Render the reference into ``out`` with pdoc; return every warning it emitted."""
    import pdoc
    import pdoc.extract
    import pdoc.render

    names = [m.__name__ for m, _ in modules]
    pdoc.render.configure(docformat="numpy", footer_text="fastbp API reference")
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    out = Path(out).resolve()
    here = os.getcwd()
    # pdoc takes "fastbp" for the folder when one of that name is in the working
    # directory (the repository root) and warns when the imported fastbp is another
    # (an installed copy, as in CI): render from a folder of no modules instead.
    scratch = tempfile.mkdtemp(prefix="fastbp-pdoc-")
    os.chdir(scratch)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # pdoc walks fastbp's __all__ (layers, optim, ...); add what that does not reach
            # (and no duplicate: pdoc warns about one), then keep exactly the listed modules.
            walked = set(pdoc.extract.walk_specs(["fastbp"]))
            specs = ["fastbp"] + [n for n in names if n not in walked]
            keep = "|".join(re.escape(n) for n in names)
            pdoc.pdoc(*specs, f"!(?!(?:{keep})$)", output_directory=out)
    finally:
        os.chdir(here)
        os.rmdir(scratch)
        root.removeHandler(handler)
    messages = [f"{w.category.__name__}: {w.message} ({w.filename}:{w.lineno})" for w in caught]
    messages += [f"log {r.levelname} {r.name}: {r.getMessage()}" for r in handler.records]
    return messages


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "api",
                        help="folder for the HTML (default: build/api)")
    parser.add_argument("--check-only", action="store_true",
                        help="run the completeness check alone, render nothing")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    modules, notes = public_modules()
    for note in notes:
        print(f"note: {note}")
    violations = check(modules)
    for v in violations:
        print(f"undocumented: {v}")
    print(f"completeness check: {len(violations)} violation(s) in {len(modules)} modules")
    failed = bool(violations)
    if not args.check_only:
        messages = build(modules, args.out)
        for m in messages:
            print(f"pdoc warning (an error here): {m}")
        failed = failed or bool(messages)
        if messages:
            print(f"pdoc: {len(messages)} warning(s), treated as errors")
        else:
            print(f"pdoc: wrote {os.path.join(args.out, 'index.html')}")
    print(f"{'FAILED' if failed else 'ok'} in {time.perf_counter() - start:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
