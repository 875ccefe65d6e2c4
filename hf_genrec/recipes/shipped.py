"""The recipes shipped with hf_genrec: one YAML file of run options per dataset, and one overlay per model kind.

``hf-genrec train --dataset NAME`` starts from the recipe shipped for ``NAME`` (`recipe_for_dataset`): its own for
ML-100K, ML-1M and Amazon Beauty, the general Amazon recipe (``amazon-default``) for any other Amazon 2014
category. ``--model hybrid``, ``--model decoder`` and ``--model sasrec`` lay their overlay over it
(`recipe_layers`); ``--config`` files and flags then lay over both. The files sit beside this module
(``hf_genrec/recipes/*.yaml``), and the configs for ``accelerate launch`` in ``accelerate/``. Why each value is
what it is: ``docs/recipes.md``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from ..data.amazon import AMAZON_2014_CATEGORIES, amazon_file_stem
from ..data.loading import normalize_dataset_name

RECIPE_DIR = Path(__file__).resolve().parent
ACCELERATE_DIR = RECIPE_DIR / "accelerate"
#: recipes for a dataset, in the order `hf-genrec recipes` lists them
DATASET_RECIPES = ("ml-100k", "ml-1m", "amazon-beauty", "amazon-default")
#: the general Amazon recipe: every Amazon 2014 category without a recipe of its own runs it
AMAZON_DEFAULT = "amazon-default"
#: model kind -> the overlay laid over the dataset's recipe (`None`: the recipe alone)
MODELS = {"tiger": None, "hybrid": "hybrid", "decoder": "decoder", "sasrec": "sasrec"}
#: what ``tiger`` is, which has no file to say it
TIGER_SUMMARY = "The dataset's recipe alone: the generative recommender (semantic IDs, a T5, constrained beam search)."
#: ``--recipe none``: no shipped recipe under the --config files and flags
NO_RECIPE = "none"
#: the settings `hf-genrec recipes` shows for each recipe, where the recipe sets them
HEADLINE_KEYS = (
    "dataset", "max_history", "id_scheme", "item_features", "n_levels", "codebook_size", "d_model", "num_layers",
    "num_decoder_layers", "backbone", "max_train_minutes", "scorer", "scorer_hidden_size", "scorer_budget_share",
    "scorer_patience", "scorer_weights",
)  # fmt: skip


def recipe_names() -> list[str]:
    """Every shipped recipe and overlay, by name: the dataset recipes first, then the model overlays."""
    return [*DATASET_RECIPES, *(overlay for overlay in MODELS.values() if overlay)]


def recipe_path(name: str) -> Path:
    """The YAML file of the shipped recipe ``name``; an unknown name is an error listing the shipped ones."""
    if name not in recipe_names():
        raise ValueError(
            f"No recipe called {name!r} ships with hf_genrec. Shipped recipes: {', '.join(recipe_names())} "
            f"(`hf-genrec recipes` says what each is), or {NO_RECIPE!r} for the options' own defaults."
        )
    return RECIPE_DIR / f"{name}.yaml"


def read_recipe(path: str | Path) -> dict:
    """The options a recipe file sets (a YAML mapping of option names to values)."""
    with open(path, encoding="utf-8") as f:
        settings = yaml.safe_load(f) or {}
    if not isinstance(settings, dict):
        raise ValueError(f"{path} must hold a mapping of option names to values, not a {type(settings).__name__}.")
    return settings


def recipe_for_dataset(dataset: str) -> str:
    """The name of the recipe shipped for ``dataset``: its own (ml-100k, ml-1m, amazon-beauty), else
    ``amazon-default`` for an Amazon 2014 category. Other names are an error that lists the choices."""
    name = normalize_dataset_name(dataset)  # names no reader knows fail here, listing the known ones
    if name in DATASET_RECIPES and name != AMAZON_DEFAULT:
        return name
    if name.startswith("amazon-") and amazon_file_stem(name) in AMAZON_2014_CATEGORIES:
        return AMAZON_DEFAULT
    raise ValueError(
        f"No recipe ships for dataset {name!r}: recipes ship for {', '.join(DATASET_RECIPES[:-1])} and, as "
        f"{AMAZON_DEFAULT}, for every Amazon 2014 category. Pass --recipe {AMAZON_DEFAULT} (or another shipped "
        f"recipe) to train {name} with it, or --recipe {NO_RECIPE} for the options' own defaults."
    )


def check_model(model: str) -> str:
    """``model`` when it names a model kind (`MODELS`), else an error listing them."""
    if model not in MODELS:
        raise ValueError(f"Unknown model {model!r}; choose one of {', '.join(MODELS)}.")
    return model


def recipe_layers(dataset: str, model: str = "tiger", recipe: str | None = None) -> list[Path]:
    """The shipped files a run of ``model`` on ``dataset`` starts from, the later laid over the earlier: the
    dataset's recipe (or the named ``recipe``; none for ``"none"``), then the model's overlay."""
    overlay = MODELS[check_model(model)]
    layers = (
        [] if recipe == NO_RECIPE else [recipe_path(recipe if recipe is not None else recipe_for_dataset(dataset))]
    )
    if overlay is not None:
        layers.append(recipe_path(overlay))
    return layers


def recipe_summary(path: str | Path) -> str:
    """What a recipe is: its first line, a comment."""
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    if not first.startswith("#"):
        raise ValueError(f"{path} must start with a comment line saying what the recipe is.")
    return first.lstrip("#").strip()


def describe_recipes() -> list[dict]:
    """One entry per dataset recipe and model kind: ``name``, ``kind`` (``"dataset"`` or ``"model"``), ``summary``
    (what it is), ``headline`` (its main settings) and ``path`` (`None` for ``tiger``, which is no file)."""
    entries = []
    for name in [*DATASET_RECIPES, *MODELS]:
        kind = "dataset" if name in DATASET_RECIPES else "model"
        overlay = name if kind == "dataset" else MODELS[name]
        if overlay is None:
            entries.append({"name": name, "kind": kind, "summary": TIGER_SUMMARY, "headline": {}, "path": None})
            continue
        path = recipe_path(overlay)
        settings = read_recipe(path)
        headline = {key: settings[key] for key in HEADLINE_KEYS if key in settings}
        entries.append(
            {"name": name, "kind": kind, "summary": recipe_summary(path), "headline": headline, "path": path}
        )
    return entries


def accelerate_configs() -> list[Path]:
    """The shipped configs for ``accelerate launch --config_file`` (DDP, FSDP, DeepSpeed ZeRO-2 and -3)."""
    return sorted(ACCELERATE_DIR.glob("*.yaml"))
