"""Saved recommenders ranked on the same test users and the same histories, compared user by user.

    cd benchmarks && python paired_bundles.py ../outputs/reproduce/ml-1m_h50 ../outputs/reproduce/ml-1m_h200 \
        --dataset ml-1m --data-dir ../shared/data --max-history 200

Runs with different ``max_history`` rank different test histories in their records: with ``exclude_history`` (the
recipes') each excludes the items it read, so a wider window also removes more wrong candidates. Here every bundle
is given each test user's last ``--max-history`` items: it reads its own window of them, excludes every one of them
(`GenerativeRecommender.recommend` bans the whole given history), and ranks at its saved fusion weights
(``--transition-weight W`` sets one prior weight for all, 0 ranks the models alone). Prints and
writes (``--output``) Recall@10 / NDCG@10 of each bundle and each one's mean per-user difference from the first, with
its standard error (the users are the same, so the difference's error is much smaller than either figure's).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hybrid_paired import paired_difference, per_user  # benchmarks/hybrid_paired.py
from machine import describe_machine  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundles", nargs="+", help="Folders written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-history", type=int, required=True, help="Items of each test history every bundle gets.")
    parser.add_argument(
        "--transition-weight",
        type=float,
        default=None,
        help="Rank every bundle at this successor-prior weight instead of its saved one (0: the models alone).",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if len(args.bundles) < 2:
        parser.error("Give at least two bundles to compare.")
    torch.set_num_threads(2)
    data = load_interactions(args.dataset, args.data_dir)
    test = leave_one_out(data, max_history=args.max_history)["test"]
    histories, targets = test["history"][:], test["target"][:]

    per, metrics, seconds = {}, {}, {}
    for bundle in args.bundles:
        recommender = GenerativeRecommender.from_pretrained(bundle)
        index = recommender.item_tokenizer.item_to_index
        start = time.perf_counter()
        ranked = recommender.recommend(histories, k=10, batch_size=256, transition_weight=args.transition_weight)
        seconds[bundle] = time.perf_counter() - start
        rows = np.asarray([[index[item] for item, _ in row] for row in ranked])
        per[bundle] = per_user(rows, np.asarray([index[t] for t in targets]))
        metrics[bundle] = {m: float(v.mean()) for m, v in per[bundle].items()}
        print(f"{bundle}: {metrics[bundle]} ({seconds[bundle]:.0f} s)", flush=True)

    first = args.bundles[0]
    minus_first = {bundle: paired_difference(per[bundle], per[first]) for bundle in args.bundles[1:]}
    result = {
        "dataset": args.dataset,
        "users": len(targets),
        "max_history": args.max_history,
        "transition_weight": args.transition_weight,
        "metrics": metrics,
        "minus_first": minus_first,
        "ranking_seconds": seconds,
        "machine": describe_machine(),
        "command": "python benchmarks/paired_bundles.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps({k: result[k] for k in ("metrics", "minus_first")}, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
