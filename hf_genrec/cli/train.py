"""``hf-genrec train``: read data, build item IDs, train and evaluate a recommender, save it (``--plot``: PNGs)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from transformers import HfArgumentParser

from ..evaluation.plots import plot_results
from ..recipes.arguments import DataArguments, ItemIDArguments, ModelArguments
from ..recipes.results import format_results_table
from ..recipes.run import run_experiment
from ..recipes.scorer import ScorerArguments
from ..semantic_ids import SemanticIDs
from ..tokenization import ITEM_MAP_DIR
from ..training.trainer import GenRecTrainingArguments
from .options import add_config_option, apply_layers, option_value, pop_config_files, silence, with_default_output


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
    """``hf-genrec train``'s arguments, each group a dataclass."""

    data: DataArguments
    ids: ItemIDArguments
    model: ModelArguments
    training: GenRecTrainingArguments
    scorer: ScorerArguments
    output: TrainOutputArguments


def train_parser() -> HfArgumentParser:
    """The parser of ``hf-genrec train``'s options (``--config`` included, for ``--help``)."""
    parser = HfArgumentParser(
        (DataArguments, ItemIDArguments, ModelArguments, GenRecTrainingArguments, ScorerArguments,
         TrainOutputArguments),
        prog="hf-genrec train",
        description="Train and evaluate a generative recommender (TIGER recipe).",
    )  # fmt: skip
    add_config_option(parser)
    return parser


def parse_train_arguments(argv: Sequence[str]) -> TrainArguments:
    """``hf-genrec train``'s arguments from ``argv``, ``--config`` files applied (later files over earlier ones,
    flags over both); nothing is read or trained."""
    parser = train_parser()
    argv, config_files = pop_config_files(parser, argv)
    defaults = apply_layers(parser, config_files)
    dataset = option_value(argv, "dataset") or defaults.get("dataset") or DataArguments.dataset
    argv = with_default_output(argv, defaults, f"outputs/{dataset}")
    # the trailing namespace holds `--config`, already taken out of argv above
    parsed = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    return TrainArguments(*parsed[:6])


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec train`` on ``argv``; returns the exit status."""
    args = parse_train_arguments(argv)
    if args.output.quiet:
        silence()
    training_args = args.training
    resume = training_args.resume_from_checkpoint  # a checkpoint folder, or "last" for the output dir's newest
    resume = True if resume in ("last", "true", "True") else resume
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
    if args.output.plot:
        output_dir = Path(training_args.output_dir)
        semantic_ids = SemanticIDs.load(output_dir / ITEM_MAP_DIR)
        for path in plot_results(results, output_dir, semantic_ids):
            print(f"Plot: {path}")
    return 0
