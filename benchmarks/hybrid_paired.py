"""Paired test of a hybrid bundle against its own SASRec with the successor prior, user by user.

    python benchmarks/hybrid_paired.py outputs/reproduce/amazon-beauty_hybrid/hybrid --data-dir ../shared/data

Ranks every test user three ways from one hybrid bundle (``reproduce.py --hybrid-sasrec-minutes``): the hybrid at
its saved weights, its SASRec alone with the same successor prior fused (``--sasrec-prior-weight``, the weight the
harness picked for that SASRec), and the generative model with the prior only. Prints and writes (``--output``)
Recall@10 / NDCG@10 of each and the mean per-user difference of the hybrid from the other two with its standard
error (the users are the same, so the difference's error is much smaller than either figure's).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.sasrec import left_pad


def per_user(ranked: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Hit@k and NDCG@k of every user (one held-out item each)."""
    hit = ranked[:, :k] == targets[:, None]
    position = hit.argmax(axis=1)
    found = hit.any(axis=1)
    return {f"recall@{k}": found.astype(float), f"ndcg@{k}": np.where(found, 1 / np.log2(position + 2), 0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sasrec-prior-weight", type=float, default=2.0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    if recommender.scorer is None:
        raise SystemExit(f"{args.bundle} holds no scorer/: it is not a hybrid bundle.")
    config = recommender.config
    scorer = recommender.scorer
    data = load_interactions(args.dataset, args.data_dir)
    test = leave_one_out(data, max_history=scorer.config.max_positions)["test"]
    index = recommender.item_tokenizer.item_to_index
    histories = test["history"][:]
    targets = np.asarray([index[t] for t in test["target"][:]])
    rows = [[index[i] for i in h] for h in histories]

    def rank_generative(scorer_weight: float) -> np.ndarray:
        out = recommender.recommend(histories, k=10, scorer_weight=scorer_weight, batch_size=256)
        return np.asarray([[index[item] for item, _ in row] for row in out])

    timings, ranked = {}, {}
    start = time.perf_counter()
    ranked["hybrid"] = rank_generative(config.scorer_weight)
    timings["hybrid_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["generative_with_prior"] = rank_generative(0.0)
    timings["generative_with_prior_s"] = time.perf_counter() - start
    start = time.perf_counter()
    sasrec = []
    for first in range(0, len(rows), 1024):
        chunk = rows[first : first + 1024]
        bonus = recommender.transitions.dense_bonus(
            chunk, args.sasrec_prior_weight, config.transition_smoothing, config.transition_recent_items
        )
        tokens = left_pad(chunk, scorer.config.max_positions)
        sasrec.append(scorer.recommend(tokens, k=10, exclude_history=True, item_bonus=bonus)[0].numpy())
    ranked["sasrec_with_prior"] = np.concatenate(sasrec)
    timings["sasrec_with_prior_s"] = time.perf_counter() - start

    users = {name: per_user(r, targets) for name, r in ranked.items()}
    result = {"bundle": args.bundle, "users": len(targets), "weights": {
        "hybrid": {"transition_weight": config.transition_weight, "scorer_weight": config.scorer_weight},
        "sasrec_with_prior": {"transition_weight": args.sasrec_prior_weight},
        "generative_with_prior": {"transition_weight": config.transition_weight},
    }}  # fmt: skip
    result["metrics"] = {name: {m: float(v.mean()) for m, v in per.items()} for name, per in users.items()}
    result["hybrid_minus"] = {}
    for other in ("sasrec_with_prior", "generative_with_prior"):
        result["hybrid_minus"][other] = {}
        for metric, values in users["hybrid"].items():
            diff = values - users[other][metric]
            result["hybrid_minus"][other][metric] = {
                "mean": float(diff.mean()),
                "standard_error": float(diff.std(ddof=1) / np.sqrt(len(diff))),
            }
    result.update(timings=timings, machine=describe_machine())
    print(json.dumps({k: result[k] for k in ("metrics", "hybrid_minus", "timings")}, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
