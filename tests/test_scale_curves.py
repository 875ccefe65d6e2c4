"""benchmarks/scale_curves.py: cases that cannot fit are recorded as not run with the reason (estimated before
anything is allocated), tables show every case, and (slow) the quick run writes a record in which every case has its
numbers or says why not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import scale_curves  # noqa: E402  (benchmarks/scale_curves.py)
import scale_plot  # noqa: E402

GB = scale_curves.GB


def _spec(method: str, n_items: int, **extra) -> dict:
    return {"method": method, "dataset": "synthetic", "n_items": n_items, "n_users": 500_000, "length": 20,
            "max_positions": 20, **extra}  # fmt: skip


def test_a_full_softmax_over_ten_million_items_is_recorded_as_not_run():
    sized, skipped = scale_curves.fit_memory(_spec("sasrec_full", 10_000_000), limit=19 * GB)
    assert skipped["status"] == "not run" and skipped["n_items"] == 10_000_000
    assert "even at a batch of 8 users" in skipped["reason"] and "logits of a batch" in skipped["reason"]
    assert skipped["estimated_gb"] > 19


def test_the_largest_batch_that_fits_is_chosen():
    sized, skipped = scale_curves.fit_memory(_spec("sasrec_full", 1_000_000), limit=19 * GB)
    assert skipped is None and sized["batch_size"] in scale_curves.BATCHES[1:]  # 128 users' logits do not fit
    sized, skipped = scale_curves.fit_memory(_spec("sasrec_full", 10_000), limit=19 * GB)
    assert skipped is None and sized["batch_size"] == 128
    # the sampled softmax and the generative model keep their batch: their memory hardly grows with the batch
    for method in ("sasrec_sampled", "t5"):
        sized, skipped = scale_curves.fit_memory(_spec(method, 10_000_000), limit=19 * GB)
        assert skipped is None and sized["batch_size"] == 128, method


def test_rows_of_fifty_million_interactions_in_memory_are_not_run_but_from_arrow_they_are():
    common = dict(method="examples", dataset="synthetic", n_items=10_000, n_users=2_500_000, length=20)
    _, in_memory = scale_curves.fit_memory({**common, "storage": "memory"}, limit=19 * GB)
    _, arrow = scale_curves.fit_memory({**common, "storage": "arrow"}, limit=19 * GB)
    assert in_memory["status"] == "not run" and arrow is None


def test_table_shows_cases_that_did_not_run_with_their_reason():
    record = {"results": [
        {"method": "sasrec_full", "dataset": "synthetic", "n_items": 10_000_000, "status": "not run",
         "reason": "needs about 60 GB"},
        {"method": "sasrec_sampled", "dataset": "synthetic", "n_items": 1000, "status": "ok", "peak_rss_mb": 500.0,
         "train_s_per_1k_targets": 0.3, "popularity_recall@10": 0.1, "flat": {"recall@10": 0.2, "latency_p50_ms": 1.0},
         "hnsw": {"recall@10": 0.19, "latency_p50_ms": 0.5}},
    ]}  # fmt: skip
    text = scale_plot.table(record)
    assert "not run: needs about 60 GB" in text
    assert "| sasrec_sampled + flat | synthetic | 1,000 |" in text and "0.1900 (0.1000)" in text


def test_a_recipe_variant_is_a_case_of_its_own_labelled_in_the_tables_and_unknown_keys_are_refused():
    import scale_cases

    overrides = scale_cases.parse_overrides(["item_positions=false", "num_decoder_layers=3"])
    assert overrides == {"item_positions": False, "num_decoder_layers": 3}
    assert scale_cases.recipe_settings(False, overrides)["item_positions"] is False
    assert scale_cases.recipe_settings(False)["item_positions"] is True  # the shipped recipe is untouched
    with pytest.raises(SystemExit, match="do not read this key"):
        scale_cases.parse_overrides(["collision_codes=per_item"])  # an ID option the cases would ignore
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        scale_cases.parse_overrides(["item_positions"])
    with pytest.raises(SystemExit, match="generative recipes only"):
        scale_curves.main(["--set", "item_positions=false", "--methods", "t5", "sasrec_full"])

    base = {"method": "t5", "dataset": "synthetic", "n_items": 10_000, "status": "ok", "recall@10": 0.4,
            "popularity_recall@10": 0.1}  # fmt: skip
    varied = {**base, "recipe_overrides": {"item_positions": False}, "recall@10": 0.6}
    assert scale_curves.case_key(base) != scale_curves.case_key(varied)
    assert "| t5 (item_positions=false) | synthetic | 10,000 |" in scale_plot.table({"results": [base, varied]})
    guide = scale_plot.guide_table({"results": [varied, base]})
    assert guide.index("| 10k | T5 recipe |") < guide.index("| 10k | T5 recipe (item_positions=false) |")


def test_a_record_keeps_earlier_cases_and_replaces_those_measured_again():
    import argparse

    args = argparse.Namespace(budget=None, negatives=256, threads=2, note="busy machine")
    old = {"method": "t5", "dataset": "synthetic", "n_items": 10_000, "status": "ok", "recall@10": 0.3, "command": "a"}
    kept = {**old, "n_items": 100_000}
    new = {**old, "recall@10": 0.4}
    record = scale_curves.merged_record(
        args, "full", scale_curves.MODES["full"], 19 * GB, [old, kept], [new], "b", 0.0
    )
    assert [(r["n_items"], r["recall@10"], r["command"]) for r in record["results"]] == [(100_000, 0.3, "a"),
                                                                                       (10_000, 0.4, "b")]  # fmt: skip
    assert record["settings"]["sizes"] == [10_000, 100_000] and record["commands"] == ["a", "b"]
    assert {"machine", "note", "command"} <= record.keys() and record["note"] == "busy machine"


def test_the_guide_table_lists_each_case_that_did_not_run_with_its_reason():
    record = {"results": [
        {"method": "sasrec_full", "dataset": "synthetic", "n_items": 10_000_000, "status": "not run",
         "reason": "needs about 27 GB even at a batch of 8 users"},
        {"method": "t5", "dataset": "amazon-beauty", "n_items": 12_101, "status": "ok", "recall@10": 0.05,
         "popularity_recall@10": 0.01, "train_s_per_1k_targets": 0.2, "peak_rss_mb": 900.0},
    ]}  # fmt: skip
    text = scale_plot.guide_table(record)
    assert "| 10M | SASRec, full softmax | – |" in text
    assert "- SASRec, full softmax at 10M items, not run: needs about 27 GB even at a batch of 8 users" in text
    assert "| Beauty (12,101) | T5 recipe | 0.20 | 900 |" in text and "0.010 at Beauty (12,101)" in text


@pytest.mark.slow
def test_quick_run_records_every_case_with_numbers_or_a_reason(tmp_path):
    output = tmp_path / "scale_curves_quick.json"
    done = subprocess.run([sys.executable, "benchmarks/scale_curves.py", "--quick", "--output", str(output)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(output.read_text())
    assert record["mode"] == "quick" and {"command", "machine", "date", "settings"} <= record.keys()
    quick = scale_curves.MODES["quick"]
    expected = {(m, n, None) for m in scale_curves.METHODS for n in quick["sizes"]}
    expected |= {("examples", quick["examples_items"], storage) for storage in ("memory", "arrow")}
    assert {(r["method"], r["n_items"], r.get("storage")) for r in record["results"]} == expected
    for r in record["results"]:
        if r["status"] != "ok":
            assert r["reason"], r
            continue
        assert r["peak_rss_mb"] > 0
        if r["method"] == "examples":
            assert r["rows"] > 0 and r["train_steps"] > 0
            continue
        assert r["train_s_per_1k_targets"] > 0 and r["trained_targets"] > 0 and r["bundle_mb"] > 0
        servings = [r["flat"], r["hnsw"]] if r["method"] == "sasrec_sampled" else [r]
        for serving in servings:
            assert 0 <= serving["recall@10"] <= 1 and serving["eval_users"] == quick["eval_users"]
            assert 0 < serving["latency_p50_ms"] <= serving["latency_p99_ms"] and serving["batch64_users_per_s"] > 0
    assert output.with_suffix(".png").stat().st_size > 10_000
    assert "| t5 | synthetic | 1,000 |" in done.stdout
