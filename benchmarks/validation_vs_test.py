"""One saved recommender ranked on both leave-one-out splits (all users), and how the two splits' targets differ.

The reproduce harness validates on 2,000 users and tests on all of them; this script ranks every user on both, so
the gap between validation and test is measured, not guessed, and it says how much of it the data explains: how
often a split's (last history item -> target) transition occurs in the training sequences, and how often its
target was trained on.

    python benchmarks/validation_vs_test.py outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data

Writes ``benchmarks/results/<dataset>_validation_vs_test.json``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from machine import describe_machine, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.metrics import ranking_metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="A folder written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument(
        "--exclude-history",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Rank only items outside each history (default: the bundle's exclude_history).",
    )
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args()

    data = load_interactions(args.dataset, args.data_dir)
    sequences = data.sequences["item_ids"][:]
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    max_history = recommender.config.max_history
    index = {item: i for i, item in enumerate(recommender.item_ids)}
    train = training_part(sequences)
    transitions = Counter((a, b) for sequence in train for a, b in zip(sequence, sequence[1:]))
    trained = Counter(item for sequence in train for item in sequence)

    splits = {}
    # the library's own leave-one-out split, so the protocol is the harness's by construction
    examples = leave_one_out(data, max_history=max_history)
    for split in ("validation", "test"):
        histories, target_ids = examples[split]["history"][:], examples[split]["target"][:]
        targets = np.array([index[item] for item in target_ids])
        start = time.perf_counter()
        ranked = recommender.recommend(
            histories, k=10, num_beams=args.num_beams, batch_size=256, exclude_history=args.exclude_history
        )
        seconds = time.perf_counter() - start
        predictions = np.array([[index[item] for item, _ in row] for row in ranked])
        counts = [trained[item] for item in target_ids]
        splits[split] = {
            "metrics": ranking_metrics(predictions, targets, (5, 10)),
            "users": len(target_ids),
            "transition_in_training": float(
                np.mean([transitions[(history[-1], item)] > 0 for history, item in zip(histories, target_ids)])
            ),
            "target_training_count_median": float(np.median(counts)),
            "target_training_count_mean": float(np.mean(counts)),
            "rank_seconds": seconds,
        }
        print(split, {k: round(v, 4) for k, v in splits[split]["metrics"].items()}, flush=True)
        print(f"  transition seen in training {splits[split]['transition_in_training']:.4f}; target trained on "
              f"{splits[split]['target_training_count_median']:.0f} times (median)")  # fmt: skip

    excluded = recommender.config.fusion.exclude_history if args.exclude_history is None else args.exclude_history
    record = {
        "dataset": args.dataset,
        "bundle": str(args.bundle),
        "num_beams": args.num_beams,
        "exclude_history": excluded,
        "max_history": max_history,
        "splits": splits,
        "command": "python benchmarks/validation_vs_test.py "
        + str(args.bundle)
        + f" --dataset {args.dataset}"
        + {None: "", True: " --exclude-history", False: " --no-exclude-history"}[args.exclude_history],
        "machine": describe_machine(),
    }
    suffix = "_history-excluded" if excluded else ""
    out = Path(args.output_dir) / f"{args.dataset}_validation_vs_test{suffix}.json"
    write_record(record, out)


if __name__ == "__main__":
    main()
