"""The documentation runs: every ``>>>`` example in the package's docstrings (the API reference) and the README's
Python quick start."""

from __future__ import annotations

import doctest
import importlib
import json
import os
import pkgutil
import re
from pathlib import Path

import pytest

import hf_genrec

from .conftest import TINY_T5

ROOT = Path(__file__).resolve().parents[1]
#: examples that read the benchmark data run where it is (``$HF_GENREC_DATA_DIR``), and only when it is there
DATA_CALLS = ("load_interactions(", "read_recbole_atomic(")
#: examples that load a trained bundle from ``outputs/ml-100k`` run beside a tiny one
BUNDLE_PATH = "outputs/ml-100k"
FENCE = re.compile(r"^[ \t]*```[\w-]*[ \t]*$", flags=re.MULTILINE)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


class FencedDocTestParser(doctest.DocTestParser):
    """Examples sit in markdown code fences (HF-style docstrings); a closing fence is not expected output."""

    def parse(self, string, name="<string>"):
        return super().parse(FENCE.sub("", string), name)


def _docstring_examples() -> list[doctest.DocTest]:
    finder = doctest.DocTestFinder(parser=FencedDocTestParser(), exclude_empty=True)
    tests = []
    for info in pkgutil.walk_packages(hf_genrec.__path__, prefix="hf_genrec."):
        module = importlib.import_module(info.name)
        tests += [t for t in finder.find(module) if t.examples and t.name.startswith(info.name)]
    return sorted(tests, key=lambda t: t.name)


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A folder holding ``outputs/ml-100k``: a random tiny recommender over MovieLens-like item ids 1..300."""
    from hf_genrec import GenerativeRecommender, ItemTokenizer, RQKMeans, build_t5_model, minimal_t5_tokenizer

    features = __import__("numpy").random.default_rng(0).normal(size=(300, 8)).astype("float32")
    ids = RQKMeans(n_levels=2, codebook_size=8, pca_dim=None).fit(features, [str(i) for i in range(1, 301)])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    root = tmp_path_factory.mktemp("docs")
    GenerativeRecommender(build_t5_model(item_tokenizer, seed=0, **TINY_T5), item_tokenizer).save_pretrained(
        root / BUNDLE_PATH
    )
    return root


def _run(tests, cwd, monkeypatch) -> list[str]:
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    monkeypatch.chdir(cwd)
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed; see the report above"
    return [test.name for test in tests]


def _reads_data(test: doctest.DocTest) -> bool:
    return any(call in example.source for example in test.examples for call in DATA_CALLS)


def test_docstring_examples_run(bundle_dir, monkeypatch):
    """A doctest pass over the API reference: every docstring example runs and prints what it shows."""
    ran = _run([t for t in _docstring_examples() if not _reads_data(t)], bundle_dir, monkeypatch)
    # the reference covers the public faces, not only helpers
    for name in ("GenerativeRecommender", "GenerativeRecommendationPipeline", "recall_at_k", "progress", "plots"):
        assert any(name in test for test in ran), f"no docstring example of {name} ran"
    assert len(ran) >= 10, ran


def test_every_public_name_is_documented():
    """``help()`` on anything ``hf_genrec`` exports shows a docstring of its own (the API reference)."""
    import inspect

    undocumented = []
    for name in hf_genrec.__all__:
        obj = getattr(hf_genrec, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip():
                undocumented.append(name)
    assert not undocumented, f"public names without a docstring: {undocumented}"


def test_docstring_examples_on_benchmark_data_run(monkeypatch):
    """The examples that read the benchmark data, from the data root (so relative paths in them resolve)."""
    data_dir = os.environ.get("HF_GENREC_DATA_DIR")
    if not (data_dir and Path(data_dir).is_dir()):
        pytest.skip("set HF_GENREC_DATA_DIR to the benchmark data root to run the data examples")
    ran = _run([t for t in _docstring_examples() if _reads_data(t)], data_dir, monkeypatch)
    assert "hf_genrec.data.loading.load_interactions" in ran


#: the README quick start on a setting that runs in seconds: (text in the README, what the test runs instead)
QUICKSTART_SMALLER = [
    ('output_dir="outputs/ml-100k")',
     'output_dir="outputs/ml-100k", max_steps=6, max_eval_users=40, max_test_users=60, transition_weights=[0.0, 2.0])'),
]  # fmt: skip


def _readme_python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_quick_start_runs(tmp_path, monkeypatch, capsys):
    """Every Python block of the README in order, as a new user would paste them (a smaller setting): the shipped recipe from
    Python, the bundle loaded back, stock `generate` under the item constraint, and the pipeline."""
    data_dir = os.environ.get("HF_GENREC_DATA_DIR")
    if not (data_dir and (Path(data_dir) / "ml-100k").is_dir()):
        pytest.skip("the quick start reads ml-100k; set HF_GENREC_DATA_DIR to a folder holding it")
    blocks = _readme_python_blocks()
    quickstart = "\n".join(blocks)  # every block: the recipe, then the pieces under it (generate, pipeline)
    assert "run_recipe(" in blocks[0]
    assert "model.generate(" in quickstart and 'pipeline("generative-recommendation"' in quickstart
    for readme_text, smaller in QUICKSTART_SMALLER:
        assert quickstart.count(readme_text) == 1, f"the README quick start no longer has {readme_text!r}"
        quickstart = quickstart.replace(readme_text, smaller)
    from hf_genrec.utils.progress import disable_progress_bars, enable_progress_bars

    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    disable_progress_bars()
    try:
        exec(compile(quickstart, "README.md (quick start)", "exec"), namespace)
    finally:
        enable_progress_bars()
    printed = capsys.readouterr().out
    results = namespace["results"]
    assert results["dataset"] == "ml-100k" and {"recall@10", "ndcg@10"} <= set(results["test"])
    assert str(results["test"]["recall@10"]) in printed and "most_popular" in printed
    assert json.loads((tmp_path / "outputs" / "ml-100k" / "results.json").read_text())["test"] == results["test"]
    recommender = namespace["recommender"]
    catalogue = set(recommender.item_ids)
    generated = [
        recommender.item_ids[row] for row in recommender.item_tokenizer.decode_index(namespace["generated"].tolist())
    ]
    assert len(generated) == 10 and set(generated) <= catalogue - {"50", "181", "100"}  # real, unseen items
    # stock generate and the library's fast beam search rank the same items (no fusion: the model's own scores)
    fast = recommender.recommend([["50", "181", "100"]], k=10, transition_weight=0.0, exclude_history=True)[0]
    assert [item for item, _ in fast] == generated
    piped = namespace["recommend"]([["50", "181", "100"]], top_k=5)[0]
    assert [row["item_id"] for row in piped] == [
        item for item, _ in recommender.recommend([["50", "181", "100"]], k=5)[0]
    ]


def test_readme_commands_use_real_options(capsys):
    """Every ``hf-genrec`` line in the README names a real command and only options that command has."""
    from hf_genrec.cli.main import COMMANDS, main

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    lines = re.findall(r"^hf-genrec (\S+)(.*)$", text, flags=re.MULTILINE)
    assert {command for command, _ in lines} >= {"train", "recommend", "push"}
    helps = {}
    for command, rest in lines:
        assert command in COMMANDS, f"README runs an unknown command: hf-genrec {command}"
        if command not in helps:
            with pytest.raises(SystemExit):
                main([command, "--help"])
            helps[command] = capsys.readouterr().out
        for flag in re.findall(r"(?<!\S)(--?[A-Za-z][\w-]*)", rest.split("#")[0]):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", helps[command]), (
                f"README: `hf-genrec {command}` has no option {flag}"
            )
