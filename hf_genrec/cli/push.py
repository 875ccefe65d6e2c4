"""``hf-genrec push``: upload a saved recommender (model, tokenizer, item map, quantiser, card) to the Hub."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from ..bundle.config import GenRecConfig
from ..bundle.hub import check_bundle, push_folder
from ..bundle.model_card import build_model_card
from ..tokenization import ItemTokenizer


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec push`` on ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="hf-genrec push", description="Upload a recommender bundle to the Hub.")
    parser.add_argument("output_dir", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("repo_id", help="The Hub repo, e.g. `your-name/tiger-beauty`; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (default: main).")
    parser.add_argument("--token", default=None, help="A write token (default: the one `hf auth login` saved).")
    parser.add_argument("--commit-message", default="Upload hf_genrec recommender")
    parser.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing.")
    args = parser.parse_args(argv)

    folder = Path(args.output_dir)
    check_bundle(folder)
    if not (folder / "README.md").is_file():  # older bundles: give them a card before they go public
        card = build_model_card(
            ItemTokenizer.from_pretrained(folder), GenRecConfig.from_pretrained(folder), None, args.repo_id
        )
        (folder / "README.md").write_text(card, encoding="utf-8")
    info = push_folder(
        folder,
        args.repo_id,
        token=args.token,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
    )
    print(f"Pushed {folder} to {getattr(info, 'commit_url', args.repo_id)}")
    return 0
