"""Nothing a user loads is unpickled, and no remote code runs: checked on the package source itself."""

import ast
from pathlib import Path

import pytest

import hf_genrec

PACKAGE = Path(hf_genrec.__file__).parent
SOURCES = sorted(PACKAGE.rglob("*.py"))


def _keyword(call: ast.Call, name: str):
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _is_true(node) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _call_name(call: ast.Call) -> str:
    func = call.func
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    if isinstance(func, ast.Name):
        parts.append(func.id)
    return ".".join(reversed(parts))


def unsafe_loads(source: str) -> list[str]:
    """What in ``source`` would unpickle data or run remote code."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            names = [alias.name for alias in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("pickle", "cPickle", "dill", "joblib", "cloudpickle") for n in names):
                problems.append(f"line {node.lineno}: imports a pickle module")
        if not isinstance(node, ast.Call):
            continue
        name = _call_name(node)
        if name.endswith("torch.load"):
            if not _is_true(_keyword(node, "weights_only")):
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name in ("np.load", "numpy.load") and _is_true(_keyword(node, "allow_pickle")):
            problems.append(f"line {node.lineno}: np.load(allow_pickle=True)")
        if _is_true(_keyword(node, "trust_remote_code")):
            problems.append(f"line {node.lineno}: trust_remote_code=True")
    return problems


def test_the_checker_finds_what_it_looks_for():
    bad = (
        "import pickle\nimport torch\nimport numpy as np\n"
        "torch.load('x')\ntorch.load('x', weights_only=False)\nnp.load('x', allow_pickle=True)\n"
        "AutoModel.from_pretrained('x', trust_remote_code=True)\n"
    )
    assert len(unsafe_loads(bad)) == 5
    good = "import torch\ntorch.load('x', weights_only=True)\nnp.load('x', allow_pickle=False)\n"
    assert unsafe_loads(good) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_package_never_unpickles_nor_trusts_remote_code(path):
    assert unsafe_loads(path.read_text(encoding="utf-8")) == []
