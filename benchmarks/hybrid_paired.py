"""Paired test of a hybrid bundle against its own SASRec with the successor prior, user by user.

    python benchmarks/hybrid_paired.py outputs/reproduce/amazon-beauty_hybrid/hybrid --data-dir ../shared/data

Ranks every test user four ways from one hybrid bundle (``reproduce.py --hybrid-sasrec-minutes`` or
``--overlay hf_genrec/recipes/hybrid.yaml``): the hybrid at its saved weights, its SASRec with the same successor prior fused
(``--sasrec-prior-weight``, the weight the harness picked for that SASRec), the same SASRec alone, and the generative
model with the prior only (``--generative-prior-weight``, default the hybrid's prior weight). Prints and writes
(``--output``) Recall@10 / NDCG@10 of each and mean per-user differences with their standard errors (the users are
the same, so a difference's error is much smaller than either figure's): the hybrid against the SASRec with the prior
and the generative model with the prior (``hybrid_minus``), and the generative model with the prior against the
SASRec alone and with the prior (``generative_with_prior_minus``): is generative retrieval, as the recipe ranks,
ahead of the model a practitioner would pick instead?

With ``--transition-weights`` and ``--scorer-weights`` the weights are picked again on the run's validation sample
(``--validation-users`` users drawn with ``--seed``, the sample `run_experiment` validates on): every pair for the
hybrid, every prior weight for SASRec with the prior (its ``--sasrec-prior-weight`` is then ignored), and, when 0 is
among the scorer weights, every prior weight for the generative model without the scorer; best NDCG@10 (the smaller
weights on a tie). That widens a finished run's grid without training again:

    python benchmarks/hybrid_paired.py outputs/reproduce/ml-1m_hybrid-data-settings --dataset ml-1m \
        --data-dir ../shared/data --transition-weights 8 16 32 --scorer-weights 8 16 32
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
from hf_genrec.models.sasrec import left_pad


def per_user(ranked: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Hit@k and NDCG@k of every user (one held-out item each)."""
    hit = ranked[:, :k] == targets[:, None]
    position = hit.argmax(axis=1)
    found = hit.any(axis=1)
    return {f"recall@{k}": found.astype(float), f"ndcg@{k}": np.where(found, 1 / np.log2(position + 2), 0.0)}


def paired_difference(first: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per metric, the mean over users of ``first - other`` (``per_user`` arrays of the same users) and its standard
    error."""
    out = {}
    for metric, values in first.items():
        diff = values - other[metric]
        out[metric] = {"mean": float(diff.mean()), "standard_error": float(diff.std(ddof=1) / np.sqrt(len(diff)))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sasrec-prior-weight", type=float, default=2.0)
    parser.add_argument(
        "--generative-prior-weight",
        type=float,
        default=None,
        help="Prior weight for the generative model without the scorer (default: the hybrid's prior weight).",
    )
    parser.add_argument("--transition-weights", type=float, nargs="+", default=None)
    parser.add_argument("--scorer-weights", type=float, nargs="+", default=None)
    parser.add_argument("--validation-users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--max-history",
        type=int,
        default=None,
        help="Items of each history given to the bundle (default: its scorer's window); every given item is excluded, "
        "so bundles compared on the same users need the same value.",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    if (args.transition_weights is None) != (args.scorer_weights is None):
        parser.error("--transition-weights and --scorer-weights go together (the hybrid's grid is their pairs).")
    torch.set_num_threads(2)
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    if recommender.scorer is None:
        raise SystemExit(f"{args.bundle} holds no scorer/: it is not a hybrid bundle.")
    config = recommender.config
    scorer = recommender.scorer
    data = load_interactions(args.dataset, args.data_dir)
    splits = leave_one_out(data, max_history=args.max_history or scorer.config.max_positions)
    index = recommender.item_tokenizer.item_to_index

    def users(split):
        histories = split["history"][:]
        targets = np.asarray([index[t] for t in split["target"][:]])
        return histories, [[index[i] for i in h] for h in histories], targets

    def rank_generative(histories, transition_weight: float, scorer_weight: float) -> np.ndarray:
        out = recommender.recommend(
            histories, k=10, transition_weight=transition_weight, scorer_weight=scorer_weight, batch_size=256
        )
        return np.asarray([[index[item] for item, _ in row] for row in out])

    def rank_sasrec(rows, prior_weight: float) -> np.ndarray:
        ranked = []
        for first in range(0, len(rows), 1024):
            chunk = rows[first : first + 1024]
            bonus = recommender.transitions.dense_bonus(
                chunk, prior_weight, config.fusion.transition_smoothing, config.fusion.transition_recent_items
            )
            for row, history in enumerate(chunk):  # every given item, as the bundle's recommend excludes
                bonus[row, history] = float("-inf")
            tokens = left_pad(chunk, scorer.config.max_positions)
            ranked.append(scorer.recommend(tokens, k=10, exclude_history=True, item_bonus=bonus)[0].numpy())
        return np.concatenate(ranked)

    picked = {
        "hybrid": (config.fusion.transition_weight, config.fusion.scorer_weight),
        "sasrec": args.sasrec_prior_weight,
        "generative": args.generative_prior_weight,
    }
    grid = None
    if args.transition_weights is not None:
        validation = splits["validation"]
        if args.validation_users < len(validation):
            validation = validation.shuffle(seed=args.seed).select(range(args.validation_users))
        v_histories, v_rows, v_targets = users(validation)
        start = time.perf_counter()
        grid = {"hybrid": {}, "sasrec_with_prior": {}}
        for t in sorted(args.transition_weights):
            for w in sorted(args.scorer_weights):
                ndcg = per_user(rank_generative(v_histories, t, w), v_targets)["ndcg@10"].mean()
                grid["hybrid"][f"{t}/{w}"] = float(ndcg)
                print(f"validation hybrid prior {t} scorer {w}: NDCG@10 {ndcg:.4f}", flush=True)
            grid["sasrec_with_prior"][str(t)] = float(per_user(rank_sasrec(v_rows, t), v_targets)["ndcg@10"].mean())
        best = max(grid["hybrid"], key=lambda k: (grid["hybrid"][k], *(-float(x) for x in k.split("/"))))
        picked["hybrid"] = tuple(float(x) for x in best.split("/"))
        picked["sasrec"] = float(
            max(grid["sasrec_with_prior"], key=lambda k: (grid["sasrec_with_prior"][k], -float(k)))
        )
        without_scorer = {k: v for k, v in grid["hybrid"].items() if float(k.split("/")[1]) == 0.0}
        if without_scorer:  # the generative model with the prior, at its own best weight
            best_alone = max(without_scorer, key=lambda k: (without_scorer[k], -float(k.split("/")[0])))
            picked["generative"] = float(best_alone.split("/")[0])
        grid["validation_s"] = time.perf_counter() - start
        print(
            f"picked: hybrid prior/scorer {best}, SASRec prior {picked['sasrec']}, generative prior "
            f"{picked['generative']}",
            flush=True,
        )
    if picked["generative"] is None:
        picked["generative"] = picked["hybrid"][0]

    histories, rows, targets = users(splits["test"])

    timings, ranked = {}, {}
    start = time.perf_counter()
    ranked["hybrid"] = rank_generative(histories, *picked["hybrid"])
    timings["hybrid_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["generative_with_prior"] = rank_generative(histories, picked["generative"], 0.0)
    timings["generative_with_prior_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["sasrec_with_prior"] = rank_sasrec(rows, picked["sasrec"])
    timings["sasrec_with_prior_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["sasrec_alone"] = rank_sasrec(rows, 0.0)
    timings["sasrec_alone_s"] = time.perf_counter() - start

    users = {name: per_user(r, targets) for name, r in ranked.items()}
    result = {"bundle": args.bundle, "users": len(targets), "weights": {
        "hybrid": {"transition_weight": picked["hybrid"][0], "scorer_weight": picked["hybrid"][1]},
        "sasrec_with_prior": {"transition_weight": picked["sasrec"]},
        "generative_with_prior": {"transition_weight": picked["generative"]},
        "sasrec_alone": {"transition_weight": 0.0},
    }, "validation_grid": grid}  # fmt: skip
    result["metrics"] = {name: {m: float(v.mean()) for m, v in per.items()} for name, per in users.items()}
    comparisons = {
        "hybrid": ("sasrec_with_prior", "generative_with_prior"),
        "generative_with_prior": ("sasrec_alone", "sasrec_with_prior"),
    }
    for first, others in comparisons.items():
        result[f"{first}_minus"] = {other: paired_difference(users[first], users[other]) for other in others}
    result.update(timings=timings, machine=describe_machine())
    shown = ("metrics", "hybrid_minus", "generative_with_prior_minus", "timings")
    print(json.dumps({k: result[k] for k in shown}, indent=2))
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
