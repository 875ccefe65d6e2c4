"""``hf-genrec catalog``: add items to, or retire items from, a saved recommender without retraining."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..serving.catalog import (
    IF_FULL_CHOICES,
    ITEMS_FILE_HELP,
    items_file_inputs,
    read_histories_file,
    read_items_file,
)
from ..serving.recommender import GenerativeRecommender


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec catalog`` on ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="hf-genrec catalog",
        description="Add items to, or retire items from, a saved recommender; no retraining, no new tokens.",
        epilog=ITEMS_FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["add", "remove"])
    parser.add_argument("bundle", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("items_file", help="The items (see below).")
    parser.add_argument("--output", default=None, help="Write the updated bundle here (default: update BUNDLE).")
    parser.add_argument("--text-model", default=None, help="Embeds item fields (default: all-MiniLM-L6-v2).")
    parser.add_argument("--if-full", choices=IF_FULL_CHOICES, default="error", help="A prefix with no free ID.")
    parser.add_argument(
        "--histories",
        default=None,
        help="add only: a .jsonl of interaction histories (one JSON list of item ids per line, oldest first) that "
        "mention the new items; each new item is placed beside the catalogue items it sits next to there "
        "(GenerativeRecommender.features_from_sequences), so ITEMS_FILE needs only `item_id`. This is how items "
        "join a catalogue whose IDs came from collaborative features (the default recipe).",
    )
    args = parser.parse_args(argv)

    rows = read_items_file(args.items_file)
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    before = len(recommender.item_ids)
    if args.action == "add":
        if args.histories:
            ids, codes = [row["item_id"] for row in rows], None
            if any(len(row) > 1 for row in rows):
                raise ValueError("With --histories, the items file gives only `item_id`: features come from them.")
            features = recommender.features_from_sequences(ids, read_histories_file(args.histories))
        else:
            codes_from_fields = None
            content_map = recommender.content_map
            if content_map is not None:  # item text or attributes -> the codes of catalogue items alike
                if args.text_model is not None and content_map.attributes is not None:
                    raise ValueError(
                        "This bundle's content map embeds items by their attributes, not their text; leave "
                        "--text-model out."
                    )
                if args.text_model not in (None, content_map.text_model):
                    raise ValueError(
                        f"--text-model {args.text_model} differs from the model of this bundle's content map "
                        f"({content_map.text_model}); leave --text-model out."
                    )
                codes_from_fields = lambda fields: recommender.codes_from_content(items=fields)  # noqa: E731
            ids, features, codes = items_file_inputs(rows, args.text_model, codes_from_fields)
        added = recommender.add_items(ids, features, codes=codes, if_full=args.if_full)
        for item, item_codes in added.items():
            print(f"added    {item:<20} {list(item_codes)}")
        if len(added) < len(ids):
            print(f"not added (their prefix has no free ID): {[i for i in ids if i not in added]}")
    else:
        ids = [row["item_id"] for row in rows]
        recommender.remove_items(ids)
        for item in ids:
            print(f"retired  {item}")
    output = args.output or args.bundle
    recommender.save_pretrained(output)
    print(f"{output}: {before} -> {len(recommender.item_ids)} items")
    return 0
