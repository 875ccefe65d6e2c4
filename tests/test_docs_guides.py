"""The user guides in ``docs/`` run: every ```python block of a guide executes (the blocks of one guide in order, in
one namespace, in a fresh working folder beside a tiny ``outputs/ml-100k`` bundle), every ``hf-genrec`` command of a
```bash block parses with the command's own parser (nothing runs), and the site lists every guide.

A block that must not run carries ``<!-- docs-test: skip (why) -->`` on the line before it; a ```yaml block with
``<!-- docs-test: file NAME -->`` before it is written to ``NAME`` in the working folder, so ``--config NAME`` in a
command of the same guide is read (and its keys checked) as the command would read it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import hf_genrec

from .conftest import TINY_T5

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GUIDES = sorted(DOCS.glob("*.md"))
MARKER = re.compile(r"^<!--\s*docs-test:\s*(?P<what>skip|file)\b\s*(?P<arg>.*?)\s*-->$")
#: where a guide's ``outputs/ml-100k`` comes from: ``hf-genrec train --dataset ml-100k``; the test puts a tiny one there
BUNDLE_PATH = "outputs/ml-100k"
#: the few blocks that may not run, at most
MAX_SKIPS = 6

TINY = ", ".join(f"{k}={v}" for k, v in TINY_T5.items())
#: per guide, (text in the guide, what the test runs instead): the same code on a setting that runs in seconds. Each
#: text must occur exactly once, so a guide that changes its example changes this list too.
SMALLER: dict[str, list[tuple[str, str]]] = {
    "walkthrough.md": [
        ("max_train_targets_per_user=50", "max_train_targets_per_user=2"),
        ("RQKMeans(n_levels=3, codebook_size=64, pca_dim=None)", "RQKMeans(n_levels=3, codebook_size=16, pca_dim=None)"),
        ("num_layers=2, num_decoder_layers=1, d_model=64, d_ff=256, d_kv=32, num_heads=2", TINY),
        ("num_train_epochs=3,", "num_train_epochs=1, max_steps=3, use_cpu=True,"),
        ('eval_dataset=examples["validation"]', 'eval_dataset=examples["validation"].select(range(40))'),
        ('trainer.evaluate(examples["test"]', 'trainer.evaluate(examples["test"].select(range(40))'),
    ],
    "causal-encoder.md": [
        ("RQKMeans(n_levels=3, codebook_size=64, pca_dim=None)", "RQKMeans(n_levels=3, codebook_size=16, pca_dim=None)"),
        ("num_layers=2, num_decoder_layers=1, d_model=64, d_ff=256, d_kv=32, num_heads=2", TINY),
        ("num_train_epochs=200, max_train_minutes=10,", "num_train_epochs=1, max_steps=2, use_cpu=True,"),
        ('leave_one_out(data, max_history=20)["validation"]', 'leave_one_out(data, max_history=20)["validation"].select(range(40))'),
    ],
    "decoder-only.md": [
        ("RQKMeans(n_levels=3, codebook_size=64, pca_dim=None)", "RQKMeans(n_levels=3, codebook_size=16, pca_dim=None)"),
        ('"llama", d_model=64, num_layers=3, num_heads=2, d_ff=256', '"llama", d_model=32, num_layers=1, num_heads=2, d_ff=64'),
        ("num_train_epochs=200, max_train_minutes=10,", "num_train_epochs=1, max_steps=2, use_cpu=True,"),
        ('leave_one_out(data, max_history=20)["validation"]', 'leave_one_out(data, max_history=20)["validation"].select(range(40))'),
    ],
    "living-catalogue.md": [("rec.fit_content_map(data.items)", 'rec.fit_content_map(data.items, method="attributes")')],
    "hybrid.md": [("epochs=200, max_minutes=5", "epochs=1")],
    "index.md": [
        ('run_recipe("ml-100k", output_dir="outputs/ml-100k")',
         'run_recipe("ml-100k", output_dir="outputs/ml-100k", max_steps=6, max_eval_users=40, max_test_users=60, '
         'transition_weights=[0.0, 2.0])'),
    ],
}  # fmt: skip


@dataclass
class Block:
    guide: str
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    marker: tuple[str, str] | None  # ("skip", "(why)") or ("file", "NAME")


def read_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of a guide, each with the ``docs-test`` marker on the line before it (if any)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        fence = re.match(r"^(`{3,})([\w-]*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, ticks = i, fence.group(1)
        i += 1
        while i < len(lines) and lines[i].rstrip() != ticks:
            i += 1
        marker = MARKER.match(lines[start - 1].strip()) if start > 0 else None
        code = "\n".join(lines[start + 1 : i]) + "\n"
        blocks.append(
            Block(path.name, start + 1, fence.group(2), code, (marker["what"], marker["arg"]) if marker else None)
        )
        i += 1
    return blocks


def _python_guides() -> list[str]:
    return [g.name for g in GUIDES if any(b.lang == "python" for b in read_blocks(g))]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    """A folder holding ``outputs/ml-100k`` (what ``hf-genrec train --dataset ml-100k`` writes) and a second seed's
    ``outputs/ml-100k-seed-43``: random tiny recommenders over MovieLens-100K's item ids 1..1682, with their
    quantiser (so new items can be placed)."""
    import numpy as np

    from hf_genrec import GenerativeRecommender, ItemTokenizer, RQKMeans, build_t5_model, minimal_t5_tokenizer

    features = np.random.default_rng(0).normal(size=(1682, 8)).astype("float32")
    quantizer = RQKMeans(n_levels=2, codebook_size=16, pca_dim=None)
    ids = quantizer.fit(features, [str(i) for i in range(1, 1683)])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    root = tmp_path_factory.mktemp("guides")
    for seed, path in ((0, BUNDLE_PATH), (43, f"{BUNDLE_PATH}-seed-43")):
        model = build_t5_model(item_tokenizer, seed=seed, **TINY_T5)
        GenerativeRecommender(model, item_tokenizer, quantizer=quantizer).save_pretrained(root / path)
    return root


def test_guides_exist_and_site_lists_every_one():
    """Every guide the README links to is here, and the site's navigation lists every page of ``docs/``."""
    names = {g.name for g in GUIDES}
    expected = {
        "index.md", "walkthrough.md", "causal-encoder.md", "constrained-loss.md", "history-exclusion.md",
        "successor-prior.md", "hybrid.md", "averaged-weights.md", "ensembles.md", "living-catalogue.md", "item-ids.md",
        "hub.md", "cli.md", "many-gpus.md", "failures.md", "data-formats.md", "recipes.md", "decoder-only.md",
    }  # fmt: skip
    assert expected <= names, f"missing guides: {sorted(expected - names)}"
    config = yaml.load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"), Loader=yaml.BaseLoader)

    def pages(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from pages(value)
        elif isinstance(node, list):
            for value in node:
                yield from pages(value)

    listed = set(pages(config["nav"]))
    pages_here = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    assert pages_here - listed == set(), f"pages missing from mkdocs.yml's nav: {sorted(pages_here - listed)}"
    assert listed - pages_here == set(), (
        f"mkdocs.yml's nav names pages that do not exist: {sorted(listed - pages_here)}"
    )


def test_api_reference_covers_every_public_name():
    """Each name ``hf_genrec`` exports has a ``::: hf_genrec.NAME`` block in ``docs/api/``."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (DOCS / "api").glob("*.md"))
    documented = set(re.findall(r"^::: hf_genrec\.(\w+)\s*$", text, flags=re.MULTILINE))
    assert set(hf_genrec.__all__) - documented == set(), "public names missing from docs/api/"
    assert documented - set(hf_genrec.__all__) == set(), "docs/api/ names what hf_genrec does not export"


def test_markers_say_why_and_sit_on_a_block():
    """A skip says why in parentheses; every marker is on the line right before a code fence; skips stay few."""
    skips = 0
    for guide in GUIDES:
        lines = guide.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines):
            if "docs-test" not in line:
                continue
            marker = MARKER.match(line.strip())
            assert marker, f"{guide.name}:{n + 1}: not a docs-test marker: {line!r}"
            assert n + 1 < len(lines) and lines[n + 1].startswith("```"), f"{guide.name}:{n + 1}: no block after it"
            if marker["what"] == "skip":
                assert re.fullmatch(r"\(.{10,}\)", marker["arg"]), f"{guide.name}:{n + 1}: a skip needs a (reason)"
                skips += 1
            else:
                assert marker["arg"] and lines[n + 1].strip() == "```yaml", (
                    f"{guide.name}:{n + 1}: `file NAME` on yaml"
                )
    assert skips <= MAX_SKIPS, f"{skips} skipped blocks; keep them few (at most {MAX_SKIPS})"


def test_every_python_block_compiles():
    for guide in GUIDES:
        for block in read_blocks(guide):
            if block.lang == "python":
                compile(block.code, f"{block.guide}:{block.line}", "exec")


def _smaller(guide: str, code: str) -> str:
    for text, smaller in SMALLER.get(guide, []):
        code = code.replace(text, smaller)
    return code


def test_substitutions_match_the_guides():
    """Each test-time substitution still finds its text exactly once in its guide's Python."""
    for guide, pairs in SMALLER.items():
        code = "".join(b.code for b in read_blocks(DOCS / guide) if b.lang == "python")
        for text, _ in pairs:
            assert code.count(text) == 1, f"{guide} no longer has {text!r} exactly once"


@pytest.mark.parametrize("guide", _python_guides())
def test_guide_python_runs(guide, bundle_dir, tmp_path, monkeypatch):
    """The guide's Python blocks, in order, in one namespace, as a reader would paste them (smaller settings)."""
    blocks = [b for b in read_blocks(DOCS / guide) if b.lang == "python" and not (b.marker and b.marker[0] == "skip")]
    source = "".join(b.code for b in blocks)
    if "load_interactions(" in source or "run_recipe(" in source:
        data_dir = os.environ.get("HF_GENREC_DATA_DIR")
        if not (data_dir and (Path(data_dir) / "ml-100k").is_dir()):
            pytest.skip("this guide reads ml-100k; set HF_GENREC_DATA_DIR to a folder holding it")
    shutil.copytree(bundle_dir / "outputs", tmp_path / "outputs")
    monkeypatch.chdir(tmp_path)
    from hf_genrec.utils.progress import disable_progress_bars, enable_progress_bars

    from .hub_server import use_loopback_hub

    hub = use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) if "hub" in source else None
    namespace: dict = {"__name__": "__main__"}
    disable_progress_bars()
    try:
        with hub or contextlib.nullcontext():
            for block in blocks:
                exec(compile(_smaller(guide, block.code), f"docs/{guide}:{block.line}", "exec"), namespace)
    finally:
        enable_progress_bars()


class _Parsed(Exception):
    """Raised once a command's parser has read its arguments: the command itself never runs."""


def _parse_command(argv: list[str], monkeypatch) -> None:
    """Parse ``hf-genrec ARGV`` with the command's own parser; a bad command or option fails the test."""
    from hf_genrec.cli.main import COMMANDS

    command, rest = argv[0], argv[1:]
    assert command in COMMANDS, f"unknown command: hf-genrec {command}"
    if "--help" in rest or "-h" in rest:
        pytest.fail("write `hf-genrec CMD --help` lines only in prose")
    if command == "train":
        from hf_genrec.cli.train import parse_train_arguments

        parse_train_arguments(rest)
        return
    original = argparse.ArgumentParser.parse_known_args

    def parse_then_stop(self, args=None, namespace=None):
        parsed, extras = original(self, args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        raise _Parsed

    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", parse_then_stop)
    module = __import__(f"hf_genrec.cli.{COMMANDS[command][0]}", fromlist=["run"])
    with pytest.raises(_Parsed):
        module.run(rest)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", original)


#: the first words a ```bash line of a guide may start with, besides ``hf-genrec`` (checked by its parser)
OTHER_COMMANDS = {"pip", "python", "export", "accelerate", "mkdocs", "hf", "CUDA_VISIBLE_DEVICES="}


def _commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comments and blank lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.split(" #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.parametrize("guide", [g.name for g in GUIDES if any(b.lang == "bash" for b in read_blocks(g))])
def test_guide_commands_parse(guide, tmp_path, monkeypatch, capsys):
    """Every ``hf-genrec`` command of the guide's bash blocks parses with that command's own parser, with the YAML
    files the guide writes; an ``accelerate launch ... -m hf_genrec.cli CMD ...`` line parses its CMD."""
    monkeypatch.chdir(tmp_path)
    blocks = read_blocks(DOCS / guide)
    for block in blocks:
        if block.marker and block.marker[0] == "file":
            (tmp_path / block.marker[1]).write_text(block.code, encoding="utf-8")
    for block in blocks:
        if block.lang != "bash" or (block.marker and block.marker[0] == "skip"):
            continue
        for command in _commands(block.code):
            words = shlex.split(command)
            if words[0] == "hf-genrec":
                argv = words[1:]
            elif words[0] == "accelerate" and "hf_genrec.cli" in words:
                argv = words[words.index("hf_genrec.cli") + 1 :]
            else:
                first = words[0].split("=")[0] + "=" if "=" in words[0] else words[0]
                assert first in OTHER_COMMANDS, f"{guide}:{block.line}: unexpected command {command!r}"
                continue
            try:
                _parse_command(argv, monkeypatch)
            except SystemExit as err:
                pytest.fail(
                    f"{guide}:{block.line}: `{command}` does not parse: {capsys.readouterr().err.strip()} ({err})"
                )
