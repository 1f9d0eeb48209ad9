"""The API reference: every public name documented with its parameters, and pdoc renders
it without a warning (docs/build_api.py, which CI also runs; its docstring gives the rule)."""
import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("pdoc")

BUILD_API = Path(__file__).resolve().parent.parent / "docs" / "build_api.py"


@pytest.fixture(scope="module")
def build_api():
    spec = importlib.util.spec_from_file_location("fastbp_docs_build_api", BUILD_API)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def modules(build_api):
    found, _notes = build_api.public_modules()
    return found


def test_every_public_name_is_documented(build_api, modules):
    violations = build_api.check(modules)
    if violations:
        pytest.fail(f"{len(violations)} undocumented name(s) or parameter(s) (the rule is in "
                    f"docs/build_api.py):\n" + "\n".join(map(str, violations)), pytrace=False)


def test_reference_renders_without_warnings(build_api, modules, tmp_path):
    messages = build_api.build(modules, tmp_path)
    if messages:
        pytest.fail("pdoc warned:\n" + "\n".join(messages), pytrace=False)
    assert (tmp_path / "index.html").is_file()
    for module, _ in modules:
        page = tmp_path / (module.__name__.replace(".", "/") + ".html")
        assert page.is_file(), f"no page for {module.__name__}"
