"""Fusion search: which successor-prior settings rank best, on validation users, and what the pick gives on test.

    python benchmarks/fusion_search.py grid outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data
    python benchmarks/fusion_search.py grid outputs/reproduce/ml-1m_genrec --dataset ml-1m --data-dir ../shared/data \\
        --weights 8,16,32,64 --smoothings 0.01 --shrinkages 30 --output-name ml-1m_transition_fusion_wider-grid.json
    python benchmarks/fusion_search.py prior-alone --data-dir ../shared/data --dataset amazon-beauty

- ``grid``: the prior fused into a trained recommender's beam search, every (weight, smoothing, shrinkage) of a grid
  on validation users, the best on the test users;
- ``prior-alone``: the prior alone as a recommender, on validation users, for several pseudo-counts.

The hybrid's scorer weights are searched the same way by ``paired.py hybrid --transition-weights ...
--scorer-weights ...`` (it ranks the hybrid against its own parts on the same users).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
from machine import bundle_parser, dispatch, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.baselines import MostPopular
from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.prior import ItemTransitions


def floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",")]


def split_by_transition(predictions: np.ndarray, targets: np.ndarray, transition: np.ndarray) -> dict:
    """Recall@10 / NDCG@10 of the users whose (last item -> target) pair occurs in training, and of the others."""
    return {
        name: {"users": int(mask.sum()), **ranking_metrics(predictions[mask], targets[mask], (10,))}
        for name, mask in (("transition_seen", transition), ("transition_unseen", ~transition))
    }


def rank_sasrec(args, data, transitions, index, seen, best, exclude: bool) -> dict:
    from reproduce import sasrec_rank  # benchmarks/reproduce.py: SASRec ranked as the harness ranks it

    from hf_genrec.models.sasrec import SASRecModel

    model = SASRecModel.from_pretrained(args.sasrec).eval()
    examples = leave_one_out(data, max_history=model.config.max_positions)["test"]
    histories = [[index[i] for i in h] for h in examples["history"][:]]
    targets = np.array([index[t] for t in examples["target"][:]])
    transition = np.array([seen[(h[-1], t)] > 0 for h, t in zip(examples["history"][:], examples["target"][:])])
    out = {}
    for weight in sorted({0.0, best["weight"]}):
        fusion = (transitions, {"weight": weight, "smoothing": best["smoothing"], "recent": args.recent})
        predictions = sasrec_rank(model, histories, 10, exclude, fusion=fusion)
        out[str(weight)] = {
            "metrics": ranking_metrics(predictions, targets, (5, 10)),
            **split_by_transition(predictions, targets, transition),
        }
        print(f"SASRec test weight {weight}: { {k: round(v, 4) for k, v in out[str(weight)]['metrics'].items()} }")
    return out


def transition_grid(argv: list[str]) -> None:
    """The successor prior fused into a trained recommender's beam search: a grid of weights on validation users, the
    best one on the test users.

    The prior counts which item followed which in the training part of users' sequences (`ItemTransitions`), so it
    adds what a generative model recalls worst: that item B followed item A in someone else's history. This script
    ranks validation users with every (weight, smoothing, shrinkage) of the grid, picks the one with the best validation
    NDCG@10, and ranks all test users with it and without it (weight 0), splitting the test figures by whether the
    user's (last item -> target) transition occurs in the training sequences:

        python benchmarks/fusion_search.py grid outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data

    Writes ``benchmarks/results/<dataset>_transition_fusion.json``.
    """
    parser = bundle_parser("fusion_search.py grid", transition_grid.__doc__)
    parser.add_argument("--weights", type=floats, default=[0.0, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--smoothings", type=floats, default=[0.01, 0.03])
    parser.add_argument(
        "--shrinkages", type=floats, default=[0.0], help="Pseudo-counts of the prior (ItemTransitions.shrinkage)."
    )
    parser.add_argument("--window", type=int, default=3, help="Successors up to this many steps after an item.")
    parser.add_argument("--recent", type=int, default=3, help="Mix the successors of this many last items.")
    parser.add_argument("--validation-users", type=int, default=4000, help="Random validation users for the grid.")
    parser.add_argument(
        "--sasrec",
        default=None,
        help="A SASRec checkpoint of reproduce.py (its 50-item histories): its test users are split the same way, "
        "ranked alone and with the prior at the weight picked for the generative model.",
    )
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--output-name", default=None, help="Default: <dataset>_transition_fusion.json.")
    args = parser.parse_args(argv)

    data = load_interactions(args.dataset, args.data_dir)
    sequences = data.sequences["item_ids"][:]
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    index = {item: i for i, item in enumerate(recommender.item_ids)}
    train = training_part(sequences)
    # counted as run_experiment does (a bundle from before transitions were saved has none; one with another
    # window would not match the flag)
    recommender.transitions = ItemTransitions.fit([[index[i] for i in s] for s in train], len(index), args.window)
    recommender.config.fusion.transition_recent_items = args.recent
    seen = Counter((a, b) for s in train for a, b in zip(s, s[1:]))
    examples = leave_one_out(data, max_history=recommender.config.max_history)

    def rank(split, weight, smoothing, shrinkage, users=None):
        histories, targets = examples[split]["history"][:], examples[split]["target"][:]
        if users is not None:
            histories, targets = [histories[u] for u in users], [targets[u] for u in users]
        recommender.config.fusion.transition_smoothing = smoothing
        recommender.transitions.shrinkage = shrinkage
        start = time.perf_counter()
        ranked = recommender.recommend(histories, k=10, batch_size=256, transition_weight=weight)
        seconds = time.perf_counter() - start
        predictions = np.array([[index[item] for item, _ in row] for row in ranked])
        target_rows = np.array([index[t] for t in targets])
        transition = np.array([seen[(h[-1], t)] > 0 for h, t in zip(histories, targets)])
        out = {"metrics": ranking_metrics(predictions, target_rows, (5, 10)), "seconds": round(seconds, 1)}
        return {**out, **split_by_transition(predictions, target_rows, transition)}

    n_val = len(examples["validation"])
    users = np.random.default_rng(0).choice(n_val, size=min(args.validation_users, n_val), replace=False).tolist()
    grid = []
    for shrinkage in args.shrinkages:
        for smoothing in args.smoothings:
            for weight in args.weights:
                if weight == 0 and (smoothing, shrinkage) != (args.smoothings[0], args.shrinkages[0]):
                    continue  # weight 0 is the model alone, whatever the prior's settings
                result = rank("validation", weight, smoothing, shrinkage, users)
                grid.append({"weight": weight, "smoothing": smoothing, "shrinkage": shrinkage, **result})
                print(f"validation weight {weight} smoothing {smoothing} shrinkage {shrinkage}: "
                      f"{ {k: round(v, 4) for k, v in result['metrics'].items()} }", flush=True)  # fmt: skip
    best = max(grid, key=lambda row: row["metrics"]["ndcg@10"])
    test = {}
    for weight in sorted({0.0, best["weight"]}):
        test[str(weight)] = rank("test", weight, best["smoothing"], best["shrinkage"])
        print(f"test weight {weight} smoothing {best['smoothing']} shrinkage {best['shrinkage']}: "
              f"{ {k: round(v, 4) for k, v in test[str(weight)]['metrics'].items()} }", flush=True)  # fmt: skip
    if args.sasrec:
        recommender.transitions.shrinkage = best["shrinkage"]
        test["sasrec"] = rank_sasrec(
            args, data, recommender.transitions, index, seen, best, recommender.config.fusion.exclude_history
        )
    record = {
        "dataset": args.dataset,
        "bundle": str(args.bundle),
        "validation_users": len(users),
        "window": args.window,
        "recent_items": args.recent,
        "grid": transition_grid,
        "best": {"weight": best["weight"], "smoothing": best["smoothing"], "shrinkage": best["shrinkage"]},
        "test": test,
    }
    out = Path(args.output_dir) / (args.output_name or f"{args.dataset}_transition_fusion.json")
    write_record(record, out)


def prior_alone(argv: list[str]) -> None:
    """The successor prior alone as a recommender, on validation users, for several pseudo-counts
    (`ItemTransitions.shrinkage`): which counts-to-probabilities rule ranks best, with no model involved.

        python benchmarks/fusion_search.py prior-alone --data-dir ../shared/data --dataset amazon-beauty --shrinkages 0,10,30,100,1000

    Each user is ranked as `hf-genrec train`'s ``successor_prior`` baseline ranks test users: the successors of the
    last 3 history items (window 3), then the most popular items, never an item of the history. The counts come from
    the training part of each sequence only. Writes ``benchmarks/results/<dataset>_prior_alone.json``.
    """
    parser = argparse.ArgumentParser(
        prog="fusion_search.py prior-alone",
        description=prior_alone.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--shrinkages", default="0,10,30,100,1000")
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--recent", type=int, default=3)
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)

    data = load_interactions(args.dataset, args.data_dir)
    train = training_part(data.sequences["item_ids"][:])
    index = {item: row for row, item in enumerate(data.items["item_id"][:])}
    rows = [[index[i] for i in s] for s in train]
    popular = MostPopular(index).fit(train)
    examples = leave_one_out(data, max_history=20)[args.split]
    histories = [[index[i] for i in h] for h in examples["history"][:]]
    targets = np.array([index[t] for t in examples["target"][:]])
    results = {}
    for shrinkage in [float(x) for x in args.shrinkages.split(",")]:
        start = time.perf_counter()
        prior = ItemTransitions.fit(rows, len(index), window=args.window, shrinkage=shrinkage)
        ranked = prior.predict(histories, 10, recent=args.recent, fallback=popular.ranking, exclude=histories)
        metrics = ranking_metrics(ranked, targets, (5, 10))
        results[str(shrinkage)] = {**metrics, "seconds": round(time.perf_counter() - start, 1)}
        print(f"shrinkage {shrinkage}: { {k: round(v, 4) for k, v in metrics.items()} }", flush=True)
    record = {
        "dataset": args.dataset,
        "split": args.split,
        "users": len(targets),
        "window": args.window,
        "recent_items": args.recent,
        "by_shrinkage": results,
    }
    out = Path(args.output_dir) / f"{args.dataset}_prior_alone.json"
    write_record(record, out)


if __name__ == "__main__":
    dispatch(__doc__, {"grid": transition_grid, "prior-alone": prior_alone})
