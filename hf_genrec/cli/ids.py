"""``hf-genrec build-ids``: read data, build item IDs with one scheme, print and save their diagnostics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, HfArgumentParser

from ..data import load_interactions
from ..data.splits import training_part
from ..evaluation.plots import plot_codebook_usage
from ..recipes.arguments import DataArguments, ItemIDArguments
from ..recipes.item_ids import fit_item_ids
from ..recipes.layers import (
    add_config_option,
    apply_layers,
    check_flags,
    option_value,
    pop_config_files,
    read_layer,
    with_default_output,
)
from .quiet import silence


@dataclass
class BuildIDsArguments:
    """Where ``build-ids`` writes, and whether it draws."""

    output_dir: str = field(
        default="outputs/ids",
        metadata={"help": "Folder for semantic_ids/ and quantizer/ (default: outputs/<dataset>/ids)."},
    )
    plot: bool = field(default=False, metadata={"help": "Also draw codebook usage per level to codebook_usage.png."})
    quiet: bool = field(
        default=False, metadata={"help": "No progress bars and no info log lines (warnings still show); the summary."}
    )
    base_tokenizer: str | None = field(
        default=None, metadata={"help": "title IDs: the T5 tokenizer to spell titles with (default: learn one)."}
    )


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec build-ids`` on ``argv``; returns the exit status."""
    parser = HfArgumentParser(
        (DataArguments, ItemIDArguments, BuildIDsArguments),
        prog="hf-genrec build-ids",
        description="Build item IDs with one scheme and report their codebook usage and collisions.",
    )
    add_config_option(parser)
    argv, config_files = pop_config_files(parser, argv)
    defaults = apply_layers(parser, [read_layer(parser, path) for path in config_files])
    dataset = option_value(argv, "dataset") or defaults.get("dataset") or DataArguments.dataset
    argv = with_default_output(argv, defaults, f"outputs/{dataset}/ids")
    check_flags(parser, argv)
    data_args, id_args, out_args, *_ = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    if out_args.quiet:
        silence()
    data = load_interactions(data_args.dataset, data_args.data_dir, min_count=data_args.min_count)
    base_tokenizer = AutoTokenizer.from_pretrained(out_args.base_tokenizer) if out_args.base_tokenizer else None
    scheme, semantic_ids, timings = fit_item_ids(
        data.items, id_args, base_tokenizer, sequences=training_part(data.sequences["item_ids"][:])
    )
    output_dir = Path(out_args.output_dir)
    semantic_ids.save(output_dir / "semantic_ids")
    scheme.save_pretrained(output_dir / "quantizer")
    print(semantic_ids.summary())
    print(f"Features {timings['features_s']:.1f} s, IDs {timings['semantic_ids_s']:.1f} s. Saved to {output_dir}")
    if out_args.plot:
        print(f"Codebook usage plot: {plot_codebook_usage(semantic_ids, output_dir / 'codebook_usage.png')}")
    return 0
