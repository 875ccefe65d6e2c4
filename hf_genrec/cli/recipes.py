"""``hf-genrec recipes``: list the shipped recipes (name, what each is, its headline settings), or print one."""

from __future__ import annotations

import argparse
import textwrap
from collections.abc import Sequence

from ..recipes.shipped import accelerate_configs, describe_recipes, recipe_names, recipe_path

WIDTH = 100


def format_value(value) -> str:
    """A setting as a recipe file writes it (lists in brackets)."""
    if isinstance(value, list):
        return "[" + ", ".join(str(v) for v in value) + "]"
    return str(value)


def format_recipes() -> str:
    """The listing ``hf-genrec recipes`` prints."""
    lines = ["Recipes shipped with hf_genrec: hf-genrec train --dataset NAME [--model tiger|hybrid|sasrec]", ""]
    titles = (
        ("dataset", "Datasets (--dataset NAME starts from its recipe; --recipe NAME picks one by name):"),
        ("model", "Models (--model NAME lays its overlay over the dataset's recipe):"),
    )
    for kind, title in titles:
        lines.append(title)
        for entry in describe_recipes():
            if entry["kind"] != kind:
                continue
            lines.append(f"  {entry['name']}" + ("" if entry["path"] is None else f"  ({entry['path'].name})"))
            lines += textwrap.wrap(entry["summary"], WIDTH, initial_indent="    ", subsequent_indent="    ")
            settings = ", ".join(f"{key} {format_value(value)}" for key, value in entry["headline"].items())
            lines += textwrap.wrap(settings, WIDTH, initial_indent="    ", subsequent_indent="    ")
        lines.append("")
    lines.append("Configs for `accelerate launch --config_file FILE -m hf_genrec.cli train ...`:")
    lines += [f"  {path}" for path in accelerate_configs()]
    lines.append("")
    lines.append("`hf-genrec recipes NAME` prints a recipe's file; docs/recipes.md says why each value is what it is.")
    return "\n".join(lines)


def run(argv: Sequence[str]) -> int:
    """Run ``hf-genrec recipes`` on ``argv``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="hf-genrec recipes", description="List the shipped recipes, or print the file of one."
    )
    parser.add_argument(
        "name", nargs="?", default=None, help=f"Print this recipe's file: {', '.join(recipe_names())}."
    )
    args = parser.parse_args(argv)
    if args.name is None:
        print(format_recipes())
        return 0
    path = recipe_path(args.name)  # an unknown name is an error that lists the shipped ones
    print(f"# {path}")
    print(path.read_text(encoding="utf-8"), end="")
    return 0
