"""benchmarks/report.py: benchmarks/README.md, the archive's INDEX.md and README.md's headline block are current with
the records (a stale one fails here, so CI catches a record committed without regenerating), and the table
functions on tiny synthetic records."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import report  # noqa: E402  (benchmarks/report.py)


def _record(**extra) -> dict:
    return {"command": "python benchmarks/reproduce.py --dataset ml-1m", "machine": "AMD EPYC, 2 cores",
            "date": "2026-12-04", **extra}  # fmt: skip


def _write(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def results(tmp_path, monkeypatch) -> Path:
    """A results folder holding the ML-1M headline's record (so its rows appear) and one archived record."""
    folder = tmp_path / "benchmarks" / "results"
    test = {"recall@5": 0.16, "ndcg@5": 0.11, "recall@10": 0.25, "ndcg@10": 0.14}
    baselines = {"most_popular": {"recall@10": 0.02, "ndcg@10": 0.01}, "successor_prior": {"recall@10": 0.22}}
    rel = report.HEADLINE["ml-1m"][0][1]
    _write(folder / rel, _record(dataset="ml-1m", test=test, baselines=baselines, budget_minutes=20.0, epochs=7.9))
    _write(folder / "archive" / "ml-1m.json", _record(dataset="ml-1m", test=test))
    index = [{"file": "ml-1m.json", "measured": "the old recipe", "replaced_by": [rel], "added": "2026-12-01"}]
    (folder / "archive" / "index.json").write_text(json.dumps(index))
    return folder


def test_generated_files_are_current():
    """`python benchmarks/report.py --check`: benchmarks/README.md, the archive index and README.md's block."""
    assert report.main(["--check"]) == 0, "run `python benchmarks/report.py` and commit what it writes"


def test_every_current_record_says_what_made_it_where_and_when():
    records = report.load_records(report.RESULTS)
    assert len(records) > 50
    for rel, record in records.items():
        assert record["command"] and record["machine"] and record["date"], rel
        assert report.question_of(record) != "other", f"{rel}: its command names none of the question scripts"


def test_headline_rows_come_from_the_records_with_the_papers_beside(results):
    table = report.headline_table(report.load_records(results))
    lines = table.splitlines()
    assert "| ml-1m | hf_genrec, recipe `ml-1m` | 0.2500 | 0.1400 | 20 min |" in lines
    assert "| ml-1m | most popular | 0.0200 | 0.0100 | – |" in lines
    assert "| ml-1m | successor prior alone | 0.2200 | – | – |" in lines
    assert "| ml-1m | HSTU-large (HSTU repository) | 0.3294 | 0.1893 | published |" in lines
    # no record, no row: the Beauty recipe's record is absent here, TIGER's published row is not
    assert not any("recipe `amazon-beauty`" in line for line in lines)
    assert any(line.startswith("| amazon-beauty | TIGER") for line in lines)
    assert "[benchmarks/README.md](benchmarks/README.md)" in table


def test_a_paired_records_bundle_row_gives_the_minutes_that_bundle_trained():
    paired = _record(metrics={"outputs/a": {"recall@10": 0.2}, "outputs/b": {"recall@10": 0.1}},
                     train_minutes={"outputs/a": 20.4, "outputs/b": None})  # fmt: skip
    assert report.headline_budget(paired, "metrics.outputs/a") == "20 min"
    assert report.headline_budget(paired, "metrics.outputs/b") == "–"  # a bundle without its run's results.json
    assert report.headline_budget(_record(budget_minutes=60.0), "test") == "60 min"
    assert report.headline_budget(_record(budget_minutes=60.0), "baselines.most_popular") == "–"


def test_a_record_without_a_date_is_refused(results):
    _write(results / "undated.json", {"command": "python benchmarks/scale.py", "machine": "x"})
    with pytest.raises(SystemExit, match=r"undated\.json has no date"):
        report.load_records(results)


def test_only_the_marked_block_of_the_readme_changes(results):
    records = report.load_records(results)
    readme = "# Title\n\nkept\n<!-- results:start (generated) -->\nold table\n<!-- results:end -->\nafter\n"
    new = report.with_headline(readme, records)
    assert new.startswith("# Title\n\nkept\n<!-- results:start (generated) -->\n| dataset |")
    assert new.endswith("<!-- results:end -->\nafter\n") and "old table" not in new
    assert report.with_headline(new, records) == new
    with pytest.raises(SystemExit, match="results:start"):
        report.with_headline("# no markers\n", records)


def test_sections_list_each_record_with_its_command_machine_and_date(results):
    page = report.benchmarks_readme(report.load_records(results))
    rel = report.HEADLINE["ml-1m"][0][1]
    assert "## Quality on a CPU budget" in page and "results/archive/INDEX.md" in page
    assert (
        f"[`{rel}`](results/{rel}): `python benchmarks/reproduce.py --dataset ml-1m`. AMD EPYC, 2 cores, 2026-12-04."
        in page
    )
    assert "| published | SASRec (HSTU repository) |" in page


def test_old_script_names_become_the_command_that_reruns_them():
    assert report.current_command("cd benchmarks && python hybrid_paired.py ../b --output x") == (
        "cd benchmarks && python paired.py hybrid ../b --output x"
    )
    assert report.current_command("OMP_NUM_THREADS=1 python benchmarks/catalog_speed.py") == (
        "OMP_NUM_THREADS=1 python benchmarks/decoding_speed.py catalogue"
    )
    assert report.question_of(_record(command="python benchmarks/transition_fusion.py b")) == "fusion"
    assert report.question_of(_record(command="hf-genrec train --config c.yaml")) == "reproduce"


def test_archive_index_says_what_replaced_each_record(results):
    index = report.archive_index(results)
    assert "| [`ml-1m.json`](ml-1m.json) | 2026-12-01 | the old recipe |" in index
    assert f"[`{report.HEADLINE['ml-1m'][0][1]}`](../{report.HEADLINE['ml-1m'][0][1]})" in index
    (results / "archive" / "ml-1m.json").unlink()
    with pytest.raises(SystemExit, match="not in archive/: ml-1m.json"):
        report.archive_index(results)


def test_check_fails_on_a_stale_file_and_passes_once_written(results, capsys):
    readme = results.parents[1] / "README.md"
    readme.write_text("intro\n<!-- results:start -->\n<!-- results:end -->\n")
    argv = ["--results-dir", str(results), "--readme", str(readme)]
    assert report.main([*argv, "--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert report.main(argv) == 0
    assert report.main([*argv, "--check"]) == 0
    assert (results.parent / "README.md").read_text().startswith("# Benchmarks")
    assert "| ml-1m | hf_genrec, recipe `ml-1m` |" in readme.read_text()


def test_paired_files_compares_the_users_both_hold():
    paired = pytest.importorskip("paired")  # benchmarks/paired.py
    first = {"users": [1, 2, 3, 4], "recall@10": [1, 0, 1, 0], "ndcg@10": [1.0, 0.0, 0.5, 0.0]}
    second = {"users": [4, 3, 2, 9], "recall@10": [1, 1, 1, 0], "ndcg@10": [0.5, 0.5, 1.0, 0.0]}
    result = paired.compare_per_user(first, second)
    assert result["users"] == 3  # users 2, 3 and 4
    diff = result["second_minus_first"]["recall@10"]
    assert diff["mean"] == pytest.approx(2 / 3)
    assert diff["standard_error"] == pytest.approx(np.std([1, 0, 1], ddof=1) / np.sqrt(3))
    with pytest.raises(SystemExit, match="share 0 users"):
        paired.compare_per_user({"users": [1], "recall@10": [1]}, {"users": [2], "recall@10": [0]})


def test_a_guides_table_replaces_only_its_marked_block():
    guide = "intro\n<!-- load-test:start (generated) -->\nnot in yet\n<!-- load-test:end -->\nafter\n"
    new = report.with_block(guide, "load-test", "| table |", "docs/serving.md")
    assert new == "intro\n<!-- load-test:start (generated) -->\n| table |\n<!-- load-test:end -->\nafter\n"
    with pytest.raises(SystemExit, match=r"docs/serving\.md has no '<!-- load-test:start"):
        report.with_block("no markers\n", "load-test", "| table |", "docs/serving.md")
    for guide, (name, _, _) in report.GUIDE_BLOCKS.items():  # every guide named there has its block
        report.with_block((ROOT / guide).read_text(), name, "x", guide)


def test_paired_records_take_each_bundles_minutes_from_its_runs_results(tmp_path):
    import paired  # benchmarks/paired.py: its bundle rows feed the headline's budgets

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text(json.dumps({"train_minutes": 12.5}))
    assert paired.trained_minutes(str(tmp_path / "run")) == 12.5
    assert paired.trained_minutes(str(tmp_path / "bare")) is None
