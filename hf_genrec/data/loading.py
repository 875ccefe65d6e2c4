"""`load_interactions`: a dataset name in, an `InteractionData` out (reading a local copy or downloading one)."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..utils.paths import join_inside
from ._io import PathLike
from .amazon import AMAZON_2014_CATEGORIES, amazon_file_stem, category_slug, read_amazon
from .download import DATA_DIR_ENV, download_dataset
from .filtering import kcore_filter
from .interactions import InteractionData
from .movielens import read_movielens

logger = logging.getLogger(__name__)

KNOWN_DATASETS = ("ml-100k", "ml-1m", "amazon-beauty", "amazon-sports-and-outdoors", "amazon-toys-and-games")
_AMAZON_NAME = re.compile(r"^amazon-[a-z0-9][a-z0-9_ -]*$")


def default_data_dir() -> Path:
    """The data root: `$HF_GENREC_DATA_DIR` if set, else `~/.cache/hf_genrec/data`."""
    env = os.environ.get(DATA_DIR_ENV, "").strip()
    return Path(env).expanduser() if env else Path("~/.cache/hf_genrec/data").expanduser()


def normalize_dataset_name(name: str) -> str:
    """
    Check a dataset name and return its canonical spelling (`"Amazon-Sports_and_Outdoors"` ->
    `"amazon-sports-and-outdoors"`). Unknown names raise a `ValueError` listing what is known.
    """
    text = str(name).strip()
    lowered = text.lower()
    if lowered in ("ml-100k", "ml-1m"):
        return lowered
    if _AMAZON_NAME.match(lowered):
        return f"amazon-{category_slug(amazon_file_stem(text))}"
    categories = ", ".join(category_slug(c) for c in AMAZON_2014_CATEGORIES)
    raise ValueError(
        f"Unknown dataset {name!r}. Known names: {', '.join(KNOWN_DATASETS)}, and any Amazon 2014 category as "
        f"'amazon-<category>' ({categories}). To read your own files, call read_recbole_atomic, read_amazon or "
        "read_movielens on them."
    )


def load_interactions(
    name: str, data_dir: PathLike | None = None, *, download: bool = True, min_count: int | None = None
) -> InteractionData:
    """
    Load a benchmark dataset as an [`InteractionData`].

    The dataset is read from the folder `<data root>/<name>` (the layout of the shared benchmark data:
    `ml-100k/`, `ml-1m/`, `amazon-beauty/`, `amazon-<category>/`). When that folder does not exist and `download`
    is true, the files are first downloaded from the public source with a checksum check.

    Args:
        name: `"ml-100k"`, `"ml-1m"`, `"amazon-beauty"` or any Amazon 2014 category as `"amazon-<category>"`
            (e.g. `"amazon-sports-and-outdoors"`, `"amazon-toys-and-games"`).
        data_dir: The data root. Defaults to `$HF_GENREC_DATA_DIR`, then `~/.cache/hf_genrec/data`.
        download: Download the dataset when its folder is missing.
        min_count: Apply a k-core filter (users and items with fewer interactions are dropped, repeatedly);
            `None` keeps everything.

    Example:
        ```python
        >>> from hf_genrec.data import load_interactions, leave_one_out
        >>> data = load_interactions("amazon-beauty")
        >>> data.describe()
        'amazon-beauty: 22,363 users, 12,101 items, 198,502 interactions (...)'
        >>> splits = leave_one_out(data, max_history=20)
        ```
    """
    name = normalize_dataset_name(name)
    root = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    folder = join_inside(root, name, what="dataset name")
    if not folder.exists():
        if not download:
            raise FileNotFoundError(
                f"{folder} does not exist. Put the dataset there, point `data_dir` (`--data_dir` for hf-genrec, or "
                f"${DATA_DIR_ENV}) at a data root that has it, or pass download=True."
            )
        logger.info(
            "No local copy of %s at %s; downloading it (download=False only reads local copies).", name, folder
        )
        download_dataset(name, root)
    if name.startswith("ml-"):
        data = read_movielens(folder, name=name)
    else:
        data = read_amazon(folder, name, name=name)
    if min_count is not None:
        data = kcore_filter(data, min_count)
    return data
