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
from ..recipes.results import format_results_table
from ..recipes.run import run_experiment
from ..recipes.sasrec import run_sasrec_experiment
from ..recipes.scorer import ScorerArguments
from ..recipes.shipped import NO_RECIPE, check_model, read_recipe, recipe_layers, recipe_path
from ..semantic_ids import SemanticIDs
from ..tokenization import ITEM_MAP_DIR
from ..training.arguments import GenRecTrainingArguments
from .options import (
    add_config_option,
    apply_layers,
    check_flags,
    option_value,
    pop_config_files,
    read_layer,
    silence,
    with_default_output,
)

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
    parser = HfArgumentParser(
        (DataArguments, ItemIDArguments, ModelArguments, GenRecTrainingArguments, ScorerArguments,
         TrainOutputArguments, RecipeArguments),
        prog="hf-genrec train",
        description="Train and evaluate a recommender. `--dataset NAME` starts from the recipe shipped for NAME "
        "(`hf-genrec recipes` lists them); --config files lay over it, later ones winning, and flags over all.",
        allow_abbrev=False,  # the recipe is picked from --dataset before parsing: no abbreviation may hide it
    )  # fmt: skip
    add_config_option(parser)
    return parser


def parse_train_arguments(argv: Sequence[str]) -> TrainArguments:
    """``hf-genrec train``'s arguments from ``argv``; nothing is read or trained.

    The shipped recipe for the dataset (``--dataset``, else a --config file's ``dataset``; ``--recipe`` picks
    another, or none) is laid first, then the overlay of the ``--model`` (hybrid, sasrec), each ``--config`` file
    over them, and the flags over all. An unknown dataset, recipe or model is an error listing the choices."""
    parser = train_parser()
    argv, config_files = pop_config_files(parser, argv)
    configs = [read_layer(parser, path) for path in config_files]
    chosen = {key: value for layer in configs for key, value in layer.items()}
    model = check_model(option_value(argv, "model") or chosen.get("model") or RecipeArguments.model)
    recipe = option_value(argv, "recipe") or chosen.get("recipe")
    dataset = option_value(argv, "dataset") or chosen.get("dataset")
    if dataset is None and recipe not in (None, NO_RECIPE):
        dataset = read_recipe(recipe_path(recipe)).get("dataset")  # e.g. --recipe ml-1m alone
    dataset = dataset or DataArguments.dataset
    shipped = recipe_layers(dataset, model, recipe)
    defaults = apply_layers(parser, [*(read_layer(parser, str(path)) for path in shipped), *configs])
    argv = with_default_output(argv, defaults, f"outputs/{dataset}" + ("" if model == "tiger" else f"-{model}"))
    # the trailing namespace holds `--config`, already taken out of argv above
    check_flags(parser, argv)
    parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return TrainArguments(*parsed[:7], layers=[*map(str, shipped), *config_files])


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec train`` on ``argv``; returns the exit status."""
    args = parse_train_arguments(argv)
    if args.output.quiet:
        silence()
    logger.info("[recipe] %s", " + ".join(args.layers) if args.layers else "none: the options' own defaults")
    training_args = args.training
    resume = training_args.resume_from_checkpoint  # a checkpoint folder, or "last" for the output dir's newest
    resume = True if resume in ("last", "true", "True") else resume
    if args.recipe.model == "sasrec":
        results = run_sasrec_experiment(args.data, training_args, args.scorer, resume_from_checkpoint=resume)
    else:
        results = run_experiment(
            args.data, args.ids, args.model, training_args, resume_from_checkpoint=resume, scorer_args=args.scorer
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
