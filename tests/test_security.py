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


# ------------------------------------------------------------------ names from configs, bundles and archives
def test_names_cannot_escape_their_folder(tmp_path):
    from hf_genrec.data import download_dataset, load_interactions
    from hf_genrec.semantic_ids import RandomIDs, load_quantizer
    from hf_genrec.semantic_ids._io import resolve_file
    from hf_genrec.utils.paths import UnsafePathError, join_inside

    root = tmp_path / "data"
    root.mkdir()
    (tmp_path / "secret.json").write_text("{}")
    assert join_inside(root, "ml-1m") == root / "ml-1m"
    with pytest.raises(UnsafePathError, match=r"'\.\./secret\.json' leads outside"):
        join_inside(root, "../secret.json")
    with pytest.raises(UnsafePathError):
        join_inside(root, "/etc/passwd")
    with pytest.raises(UnsafePathError):
        join_inside(root, "a/../../secret.json")
    assert join_inside(root, "a/../b") == root / "a/../b"  # stays inside: allowed
    # a dataset name from a config: refused before anything is downloaded or created
    for name in ("amazon-../../../evil", "amazon-x/../../../evil", "ml-1m/../../evil"):
        with pytest.raises(ValueError):  # UnsafePathError, or not a dataset that can be downloaded
            download_dataset(name, root, base_url="http://127.0.0.1:9/")
    with pytest.raises(ValueError, match="Unknown dataset"):
        load_interactions("../ml-1m", root, download=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "secret.json"]
    # file names inside a saved folder (a bundle's quantizer, its item map)
    quantizer = RandomIDs(n_levels=2, codebook_size=4, seed=0)
    quantizer.fit(None, [f"i{i}" for i in range(8)])
    quantizer.save_pretrained(root / "bundle" / "quantizer")
    assert load_quantizer(root / "bundle", subfolder="quantizer").n_levels == 2
    with pytest.raises(UnsafePathError, match="subfolder"):
        load_quantizer(root / "bundle", subfolder="../..")
    with pytest.raises(UnsafePathError, match="file name"):
        resolve_file(root / "bundle", "../../secret.json")
