"""``hf-genrec recommend``: print the top-K items for one history with a saved recommender."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence

from ..serving.recommender import GenerativeRecommender


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec recommend`` on ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="hf-genrec recommend", description="Top-K items for one history.")
    parser.add_argument("model", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("--history", nargs="+", required=True, help="Item ids, oldest first.")
    parser.add_argument("-k", "--k", type=int, default=None, help="How many items (default: the model's top_k).")
    parser.add_argument(
        "--num-beams", "--num_beams", type=int, default=None, help="Beams of the search (default: the model's)."
    )
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)

    recommender = GenerativeRecommender.from_pretrained(args.model)
    (items,) = recommender.recommend([args.history], k=args.k, num_beams=args.num_beams)
    if args.json:
        print(json.dumps([{"item_id": item, "score": score} for item, score in items]))
    else:
        print(f"{'rank':>4}  {'item_id':<20} {'score':>9}  semantic ID")
        for rank, (item, score) in enumerate(items, 1):
            print(f"{rank:>4}  {item:<20} {score:>9.3f}  {recommender.item_tokenizer.item_spelling(item)}")
    return 0
