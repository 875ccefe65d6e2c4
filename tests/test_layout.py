"""The house rules the layout promises (DESIGN.md): imports run one way, down the stages, never back up (imports
inside functions count too); no module over 500 lines; a short public API that imports lazily."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import hf_genrec

PACKAGE = Path(hf_genrec.__file__).parent
#: the stages, lowest first: a module may import from its own stage and the ones before it, never after
STAGES = (
    ("version", "utils"),
    ("data",),
    ("features",),
    ("semantic_ids",),
    ("tokenization",),
    ("models",),
    ("decoding",),
    ("evaluation",),
    ("bundle",),
    ("training",),
    ("serving",),
    ("recipes",),
    ("cli",),
)
RANK = {name: rank for rank, names in enumerate(STAGES) for name in names}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The hf_genrec modules ``module`` imports anywhere in its body."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target] + [f"{target}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def _stage(module: str) -> str:
    return module.split(".")[1]


def test_imports_run_down_the_stages():
    modules = _modules()
    upward = []
    for module, path in modules.items():
        if module == "hf_genrec":  # the face: its lazy table names every stage
            continue
        for target in _imports(module, path, modules):
            if target != "hf_genrec" and RANK[_stage(target)] > RANK[_stage(module)]:
                upward.append(f"{module} imports {target}")
            if target == "hf_genrec":
                upward.append(f"{module} imports the package face hf_genrec (import from the module instead)")
    assert not upward, "imports that run up the stages:\n" + "\n".join(sorted(upward))
    assert set(RANK) >= {_stage(m) for m in modules if m != "hf_genrec"}, "a new stage needs a place in STAGES"


def test_no_module_over_500_lines():
    big = {m: len(p.read_text().splitlines()) for m, p in _modules().items()}
    assert {m: n for m, n in big.items() if n > 500} == {}


def test_public_api_is_short_and_lazy():
    assert len(hf_genrec.__all__) <= 40
    for name in hf_genrec.__all__:
        assert getattr(hf_genrec, name) is not None
    # importing the package loads neither the trainer nor the recipes (only what registers the model and pipeline)
    code = "import sys, hf_genrec; print(sorted(m for m in sys.modules if m.startswith('hf_genrec.recipes') or m == 'hf_genrec.training.trainer'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
