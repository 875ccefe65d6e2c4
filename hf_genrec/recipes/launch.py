"""A run's settings from its layers (the shipped recipe, ``--config`` files or dicts of options, flags), and
`run_recipe`: the command-line ``hf-genrec train`` from Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from transformers import HfArgumentParser

from ..training.arguments import GenRecTrainingArguments
from .arguments import DataArguments, ItemIDArguments, ModelArguments, RecipeArguments
from .layers import (
    add_config_option,
    apply_layers,
    check_flags,
    check_layer,
    option_value,
    pop_config_files,
    read_layer,
    with_default_output,
)
from .run import run_experiment
from .sasrec import run_sasrec_experiment
from .scorer import ScorerArguments
from .shipped import NO_RECIPE, check_model, read_recipe, recipe_layers, recipe_path

#: the option groups of a run, in the order `RecipeSettings` holds them
SETTINGS_GROUPS = (
    DataArguments,
    ItemIDArguments,
    ModelArguments,
    GenRecTrainingArguments,
    ScorerArguments,
    RecipeArguments,
)


class RecipeSettings(NamedTuple):
    """A run's options, each group a dataclass, and the YAML files they were read from."""

    data: DataArguments
    ids: ItemIDArguments
    model: ModelArguments
    training: GenRecTrainingArguments
    scorer: ScorerArguments
    recipe: RecipeArguments
    #: the YAML files laid under the flags, the later over the earlier: the shipped recipe, then each --config
    layers: list[str]
    #: instances of the caller's own option groups (``extra_groups``), in their order
    extra: tuple = ()


def recipe_parser(extra_groups: Sequence[type] = (), prog: str = "hf-genrec train") -> HfArgumentParser:
    """The parser of a run's options (and of ``extra_groups``, e.g. the command line's own), ``--config`` included."""
    parser = HfArgumentParser(
        (*SETTINGS_GROUPS, *extra_groups),
        prog=prog,
        description="Train and evaluate a recommender. `--dataset NAME` starts from the recipe shipped for NAME "
        "(`hf-genrec recipes` lists them); --config files lay over it, later ones winning, and flags over all.",
        allow_abbrev=False,  # the recipe is picked from --dataset before parsing: no abbreviation may hide it
    )
    add_config_option(parser)
    return parser


def parse_recipe_arguments(
    argv: Sequence[str] = (),
    extra_groups: Sequence[type] = (),
    options: Mapping[str, Any] | None = None,
    prog: str = "hf-genrec train",
) -> RecipeSettings:
    """A run's settings from ``argv``; nothing is read or trained.

    The shipped recipe for the dataset (``--dataset``, else a --config file's ``dataset``; ``--recipe`` picks
    another, or none) is laid first, then the overlay of the ``--model`` (hybrid, decoder, sasrec), each
    ``--config`` file over them, then ``options`` (a dict, as a last file), and the flags over all. An unknown
    dataset, recipe, model or option is an error listing the choices."""
    parser = recipe_parser(extra_groups, prog)
    argv, config_files = pop_config_files(parser, argv)
    configs = [read_layer(parser, path) for path in config_files]
    if options:
        configs.append(check_layer(parser, options, "run_recipe's options"))
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
    groups = len(SETTINGS_GROUPS)
    return RecipeSettings(
        *parsed[:groups],
        layers=[*map(str, shipped), *config_files],
        extra=tuple(parsed[groups : groups + len(extra_groups)]),
    )


def run_settings(settings: RecipeSettings) -> dict:
    """Train and evaluate the run ``settings`` describe; returns its results (also written to ``results.json``)."""
    training_args = settings.training
    resume = training_args.resume_from_checkpoint  # a checkpoint folder, or "last" for the output dir's newest
    resume = True if resume in ("last", "true", "True") else resume
    if settings.recipe.model == "sasrec":
        return run_sasrec_experiment(settings.data, training_args, settings.scorer, resume_from_checkpoint=resume)
    return run_experiment(
        settings.data,
        settings.ids,
        settings.model,
        training_args,
        resume_from_checkpoint=resume,
        scorer_args=settings.scorer,
    )


def run_recipe(dataset: str | None = None, *, config: str | Path | Sequence[str | Path] = (), **options: Any) -> dict:
    """Run a shipped recipe from Python, exactly as ``hf-genrec train --dataset DATASET`` does.

    Reads the data, fits the item IDs, trains within the recipe's time budget, ranks the test users beside the
    baselines and saves a bundle (`GenerativeRecommender.from_pretrained` loads it) with ``results.json``.

    Args:
        dataset (`str`, *optional*):
            The dataset: ``ml-100k``, ``ml-1m``, ``amazon-beauty`` or any Amazon 2014 category as
            ``amazon-<category>``, read from ``data_dir`` (or downloaded); its shipped recipe is laid first.
            Default: ``ml-100k``.
        config (`str` or list of `str`, *optional*):
            YAML files of options laid over the recipe, later ones winning (``--config`` on the command line).
        options:
            Any option of ``hf-genrec train --help`` by its name, laid over everything else, e.g.
            ``output_dir="outputs/mine"``, ``max_train_minutes=30``, ``model="hybrid"``, ``recipe="none"``.
            An unknown name is an error that names the closest option there is.

    Returns:
        `dict`: the run's results: ``test`` (Recall@K, NDCG@K, MRR on the test users), ``baselines`` (most popular
        and the successor prior alone, ranked the same way), timings and the settings.

    Example:

    ```python
    >>> from hf_genrec import run_recipe
    >>> results = run_recipe("ml-100k", output_dir="outputs/ml-100k")  # doctest: +SKIP
    >>> results["test"]["recall@10"] > results["baselines"]["most_popular"]["recall@10"]  # doctest: +SKIP
    True
    ```
    """
    if dataset is not None:
        options = {"dataset": dataset, **options}
    files = [config] if isinstance(config, (str, Path)) else list(config)
    argv = [token for path in files for token in ("--config", str(path))]
    return run_settings(parse_recipe_arguments(argv, options=options))
