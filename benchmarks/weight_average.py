"""Averaged against raw weights at the same training step: what ``ema_decay`` changes, paired.

A checkpoint of a run with ``ema_decay`` holds the moving average of the weights (its model files) and the raw
weights training continues from (``training_weights.safetensors``), both of the same step of the same run. This script
ranks every user of the leave-one-out validation and test splits with each, under the same protocol as the harness
(history items excluded as the bundle says, the successor prior fused at ``--transition-weight``):

    python benchmarks/weight_average.py outputs/reproduce/amazon-beauty_genrec_ema/checkpoint-N \\
        --data-dir ../shared/data --transition-weight 8

Writes ``<output-dir>/<dataset>_weight_average.json`` (default ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from machine import describe_machine, write_record  # benchmarks/machine.py (scripts run from benchmarks/)
from reproduce import KS, rank_genrec

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.training.averaging import load_training_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="A checkpoint folder of a run with ema_decay.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument(
        "--transition-weight", type=float, default=None, help="Prior weight (default: the checkpoint's)."
    )
    parser.add_argument("--splits", default="validation,test")
    parser.add_argument("--max-users", type=int, default=None, help="Rank the first N users of each split only.")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args()
    splits = args.splits.split(",")
    if not splits or not set(splits) <= {"validation", "test"}:
        parser.error(f"--splits takes validation, test or both (comma-separated), got {args.splits!r}")

    averaged = GenerativeRecommender.from_pretrained(args.checkpoint)
    raw = GenerativeRecommender.from_pretrained(args.checkpoint)
    updates = load_training_weights(raw.model, args.checkpoint)
    weight = averaged.config.fusion.transition_weight if args.transition_weight is None else args.transition_weight
    exclude = averaged.config.fusion.exclude_history
    data = load_interactions(args.dataset, args.data_dir)
    examples = leave_one_out(data, max_history=averaged.config.max_history)
    index = averaged.item_tokenizer.item_to_index

    results: dict[str, dict] = {}
    for split in splits:
        rows = examples[split]
        if args.max_users is not None:
            rows = rows.select(range(min(args.max_users, len(rows))))
        histories, targets = rows["history"][:], np.asarray([index[t] for t in rows["target"][:]])
        for name, recommender in (("averaged", averaged), ("raw", raw)):
            start = time.perf_counter()
            ranked = rank_genrec(recommender, histories, max(KS), weight, exclude)
            metrics = ranking_metrics(ranked, targets, KS)
            results.setdefault(split, {})[name] = {**metrics, "rank_seconds": time.perf_counter() - start}
            print(split, name, {k: round(v, 4) for k, v in metrics.items()}, flush=True)
        results[split]["users"] = len(targets)

    record = {
        "dataset": args.dataset,
        "checkpoint": str(args.checkpoint),
        "averaging_updates": updates,
        "transition_weight": weight,
        "exclude_history": exclude,
        "splits": results,
        "command": f"python benchmarks/weight_average.py {args.checkpoint} --dataset {args.dataset} "
        f"--transition-weight {weight} --splits {args.splits}"
        + ("" if args.max_users is None else f" --max-users {args.max_users}"),
        "machine": describe_machine(),
    }
    write_record(record, Path(args.output_dir) / f"{args.dataset}_weight_average.json")


if __name__ == "__main__":
    main()
