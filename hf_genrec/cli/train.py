"""``hf-genrec train``: read data, build item IDs, train and evaluate a recommender, save it (``--plot``: PNGs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from transformers import HfArgumentParser

from ..evaluation.plots import plot_results
from ..recipes.arguments import DataArguments, ItemIDArguments, ModelArguments, RecipeArguments
from ..recipes.launch import RecipeSettings, parse_recipe_arguments, recipe_parser, run_settings
from ..recipes.results import format_results_table
from ..recipes.scorer import ScorerArguments
from ..semantic_ids import SemanticIDs
from ..tokenization import ITEM_MAP_DIR
from ..training.arguments import GenRecTrainingArguments
from .quiet import silence

logger = logging.getLogger(__name__)


@dataclass
class TrainOutputArguments:
    """What ``train`` draws, and how much it says."""

    plot: bool = field(
        default=False,
        metadata={
            "help": "Also draw training_curves.png (loss, validation metrics), codebook_usage.png (items per code, "
            "per level) and recall_at_k.png (test Recall@K against K, beside popularity) next to results.json."
        },
    )
    quiet: bool = field(
        default=False, metadata={"help": "No progress bars and no info log lines (warnings still show); the results."}
    )


class TrainArguments(NamedTuple):
    """``hf-genrec train``'s arguments, each group a dataclass, and the YAML files they were read from."""

    data: DataArguments
    ids: ItemIDArguments
    model: ModelArguments
    training: GenRecTrainingArguments
    scorer: ScorerArguments
    output: TrainOutputArguments
    recipe: RecipeArguments
    #: the YAML files laid under the flags, the later over the earlier: the shipped recipe, then each --config
    layers: list[str]


def train_parser() -> HfArgumentParser:
    """The parser of ``hf-genrec train``'s options (``--config`` included, for ``--help``)."""
    return recipe_parser((TrainOutputArguments,))


def parse_train_arguments(argv: Sequence[str]) -> TrainArguments:
    """``hf-genrec train``'s arguments from ``argv``; nothing is read or trained (see `parse_recipe_arguments`)."""
    settings = parse_recipe_arguments(argv, (TrainOutputArguments,))
    return TrainArguments(
        data=settings.data,
        ids=settings.ids,
        model=settings.model,
        training=settings.training,
        scorer=settings.scorer,
        output=settings.extra[0],
        recipe=settings.recipe,
        layers=settings.layers,
    )


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec train`` on ``argv``; returns the exit status."""
    args = parse_train_arguments(argv)
    if args.output.quiet:
        silence()
    logger.info("[recipe] %s", " + ".join(args.layers) if args.layers else "none: the options' own defaults")
    training_args = args.training
    results = run_settings(
        RecipeSettings(args.data, args.ids, args.model, training_args, args.scorer, args.recipe, args.layers)
    )
    if training_args.process_index != 0:  # under `accelerate launch`, one table is enough
        return 0
    print()
    print(f"Test metrics on {results['dataset']} ({results['protocol']}):")
    print(format_results_table(results))
    print(
        f"\nTraining: {results['train_seconds']:.0f} s, {results['train_steps']} steps. "
        f"Saved to {training_args.output_dir}"
    )
    if args.recipe.model != "sasrec":  # a bundle: what a user does with it next
        print(
            f"Recommend with it: hf-genrec recommend {training_args.output_dir} --history <item id> ... ; share it: "
            f"hf-genrec push {training_args.output_dir} <your-name>/<repo>"
        )
    if args.output.plot:
        output_dir = Path(training_args.output_dir)
        # SASRec has no semantic IDs to draw
        semantic_ids = None if args.recipe.model == "sasrec" else SemanticIDs.load(output_dir / ITEM_MAP_DIR)
        for path in plot_results(results, output_dir, semantic_ids):
            print(f"Plot: {path}")
    return 0
