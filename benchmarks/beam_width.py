"""Does the constrained beam search find the model's top 10? One saved recommender ranks the same validation users
with several beam widths, alone and with its successor prior fused, and the figures and top-10 lists are compared
with the widest search's.

    python benchmarks/beam_width.py outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data

Beam search keeps ``num_beams`` prefixes per step, so an item whose first code tokens score low can be cut before its
last token; a wider search cuts less. When the widest search gives the same top 10, the default width loses nothing.

Writes ``benchmarks/results/<dataset>_beam_width.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe_machine, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.evaluation.metrics import ranking_metrics


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="A folder written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--beams", type=ints, default=[10, 20, 50, 100], help="Comma-separated beam widths.")
    parser.add_argument("--users", type=int, default=3000, help="Random validation users (seed 0).")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args()
    if min(args.beams) < 10:
        parser.error("--beams must all be at least 10: beam search returns at most num_beams items.")

    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    data = load_interactions(args.dataset, args.data_dir)
    validation = leave_one_out(data, max_history=recommender.config.max_history)["validation"]
    rows = np.random.default_rng(0).choice(len(validation), size=min(args.users, len(validation)), replace=False)
    chosen = validation.select(rows)  # one read of each column, not one per user
    histories = chosen["history"][:]
    index = {item: i for i, item in enumerate(recommender.item_ids)}
    targets = np.array([index[item] for item in chosen["target"][:]])

    weights = sorted({0.0, float(recommender.config.fusion.transition_weight or 0.0)})
    results = {}
    for weight in weights:
        lists = {}
        for beams in sorted(args.beams):
            start = time.perf_counter()
            ranked = recommender.recommend(histories, k=10, num_beams=beams, transition_weight=weight)
            seconds = time.perf_counter() - start
            lists[beams] = np.array([[index[item] for item, _ in row] for row in ranked])
            results.setdefault(str(weight), {})[str(beams)] = {
                **ranking_metrics(lists[beams], targets, (5, 10)),
                "seconds": seconds,
            }
            print(f"weight {weight} beams {beams}: {results[str(weight)][str(beams)]}", flush=True)
        widest = lists[max(lists)]
        for beams, top in lists.items():
            same = np.mean([list(a) == list(b) for a, b in zip(top, widest)])
            overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, widest)])
            results[str(weight)][str(beams)].update(
                same_top10_as_widest=float(same), overlap_with_widest=float(overlap)
            )

    record = {
        "dataset": args.dataset,
        "bundle": args.bundle,
        "validation_users": len(rows),
        "by_transition_weight_then_beams": results,
        "machine": describe_machine(),
        "command": "python benchmarks/beam_width.py " + " ".join(sys.argv[1:]),
    }
    write_record(record, Path(args.output_dir) / f"{args.dataset}_beam_width.json")


if __name__ == "__main__":
    main()
