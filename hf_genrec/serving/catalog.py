"""A living catalogue: add items to, and retire items from, a set of semantic IDs without retraining.

New items take codes from the fitted quantiser and, with TIGER's collision level, the smallest collision code not yet
taken under their prefix, by a live item or a retired one. No token is ever added: the model can only spell codes it
has embeddings for, so when every collision code of a prefix is taken the item cannot be placed and `add_codes`
raises (or, with ``if_full="skip"``, leaves it out and says so). Retired code tuples are remembered, in
``catalog.json`` beside the item map, and never given to another item, so an old log line or cached recommendation
that names a retired ID can never point at a different item.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..features import item_features
from ..semantic_ids import SemanticIDs
from ..semantic_ids.collisions import check_codes

logger = logging.getLogger(__name__)

IF_FULL_CHOICES = ("error", "skip")


def check_new_item_ids(catalogue: Mapping[str, int], item_ids: Sequence[str]) -> list[str]:
    """``item_ids`` as strings; raises unless they are distinct and none is in ``catalogue`` (item id -> row)."""
    if isinstance(item_ids, str | bytes):
        raise TypeError("item_ids must be a list of ids, not one string; for one item pass `[item_id]`.")
    ids = [str(item) for item in item_ids]
    if not ids:
        raise ValueError("item_ids is empty: there is nothing to add.")
    repeated = [item for item, count in Counter(ids).items() if count > 1]
    if repeated:
        raise ValueError(f"item_ids repeats {len(repeated)} ids (first: {repeated[:5]}); list each new item once.")
    existing = [item for item in ids if item in catalogue]
    if existing:
        raise ValueError(
            f"{len(existing)} of the items to add are already in the catalogue (first: {existing[:5]}). Item ids are "
            "unique; to give an item new features, remove_items([...]) it first, then add it again."
        )
    return ids


def _prefix_keys(codes: np.ndarray, sizes: Sequence[int]) -> np.ndarray:
    """One int64 per row naming its code tuple (rows of ``codes`` share a key iff they are equal)."""
    if not len(codes):
        return np.zeros(0, dtype=np.int64)
    if float(np.prod([float(s) + 1 for s in sizes])) < 2**62:  # mixed radix; +1 makes room for -1 padding
        return np.ravel_multi_index((codes + 1).T, [int(s) + 1 for s in sizes])
    view = np.ascontiguousarray(codes).view(np.dtype((np.void, codes.dtype.itemsize * codes.shape[1])))
    return np.unique(view, return_inverse=True)[1].reshape(-1)  # pragma: no cover - huge codebooks only


def assign_codes(
    semantic_ids: SemanticIDs,
    base_codes: np.ndarray,
    retired_codes: np.ndarray | None = None,
    item_ids: Sequence[str] | None = None,
    if_full: str = "error",
) -> tuple[np.ndarray, np.ndarray]:
    """Full code tuples for new items whose quantiser codes are ``base_codes``, none taken by a live or retired item.

    With a collision level, each new item gets the smallest collision code that no live item, retired item or
    earlier new item holds under its prefix; the collision codes the model has tokens for (``codebook_sizes[-1]``)
    are the limit. Without one, ``base_codes`` must already be new tuples.

    Returns:
        `(codes, placed)`: the full codes of the placed items, and a bool mask over the inputs of which were placed
        (all of them unless ``if_full="skip"``).
    """
    if if_full not in IF_FULL_CHOICES:
        raise ValueError(f"if_full must be one of {IF_FULL_CHOICES}, got {if_full!r}.")
    names = list(item_ids) if item_ids is not None else [f"row {i}" for i in range(len(base_codes))]
    base = check_codes(base_codes, name="codes of the new items", allow_padding=True)
    existing = semantic_ids.codes
    retired = np.zeros((0, existing.shape[1]), dtype=np.int64) if retired_codes is None else retired_codes
    sizes = semantic_ids.codebook_sizes
    levels = existing.shape[1] - int(semantic_ids.has_collision_level)
    if base.shape[1] != levels:
        raise ValueError(
            f"The new items have {base.shape[1]} code levels but this catalogue's IDs have {levels}"
            f"{' before the collision level' if semantic_ids.has_collision_level else ''}; encode them with the "
            "recommender's own quantiser."
        )
    too_big = base >= np.asarray(sizes[:levels])
    if too_big.any():
        row, level = (int(v[0]) for v in np.nonzero(too_big))
        raise ValueError(
            f"{names[row]} has code {int(base[row, level])} at level {level}, but the model has tokens for codes "
            f"0..{sizes[level] - 1} there only; no new tokens can be added without retraining."
        )
    taken = np.concatenate([existing, retired])
    if not semantic_ids.has_collision_level:
        all_keys = _prefix_keys(np.concatenate([taken, base]), sizes)
        taken_keys, new_keys = all_keys[: len(taken)], all_keys[len(taken) :]
        clash = np.isin(new_keys, taken_keys)
        _, first = np.unique(new_keys, return_index=True)
        repeated = np.ones(len(base), dtype=bool)
        repeated[first] = False
        bad = np.flatnonzero(clash | repeated)
        if len(bad):
            raise ValueError(
                f"{len(bad)} new items would share their ID with a live, retired or other new item (first: "
                f"{[names[i] for i in bad[:5]]}), and these IDs have no collision level to tell them apart. Give them "
                "distinct codes."
            )
        return base, np.ones(len(base), dtype=bool)

    limit = int(sizes[-1])
    prefix_sizes = sizes[:levels]
    taken_keys = _prefix_keys(taken[:, :levels], prefix_sizes)
    new_keys = _prefix_keys(base, prefix_sizes)
    relevant = np.flatnonzero(np.isin(taken_keys, new_keys))
    used: dict[int, set[int]] = {}
    for key, code in zip(taken_keys[relevant].tolist(), taken[relevant, -1].tolist()):
        used.setdefault(key, set()).add(code)
    collision = np.full(len(base), -1, dtype=np.int64)
    for row, key in enumerate(new_keys.tolist()):
        codes = used.setdefault(key, set())
        free = next((c for c in range(limit) if c not in codes), None)
        if free is not None:
            codes.add(free)
            collision[row] = free
    placed = collision >= 0
    if not placed.all():
        full = np.flatnonzero(~placed)
        message = (
            f"{len(full)} new items fall on a prefix whose {limit} collision codes are all taken by live or retired "
            f"items (first: {[(names[i], base[i].tolist()) for i in full[:3]]}). The model has tokens for {limit} "
            "items per prefix only and new tokens cannot be added without retraining"
        )
        if if_full == "error":
            raise ValueError(message + "; pass if_full='skip' to add the others and leave these out.")
        logger.warning("%s; left out (if_full='skip'): %s", message, [names[i] for i in full])
    return np.concatenate([base[placed], collision[placed, None]], axis=1), placed


def grow(semantic_ids: SemanticIDs, item_ids: Sequence[str], codes: np.ndarray) -> SemanticIDs:
    """``semantic_ids`` with rows appended; the codes must come from :func:`assign_codes` (unique, in range)."""
    n_old = semantic_ids.n_items
    out = _updated(
        semantic_ids, np.concatenate([semantic_ids.codes, codes]), list(semantic_ids.item_ids) + list(item_ids)
    )
    out.__dict__["lookup"] = {**semantic_ids.lookup, **{item: n_old + i for i, item in enumerate(item_ids)}}
    return out


def shrink(semantic_ids: SemanticIDs, keep: np.ndarray) -> SemanticIDs:
    """``semantic_ids`` restricted to the rows where ``keep`` is true."""
    ids = semantic_ids.item_ids
    return _updated(semantic_ids, semantic_ids.codes[keep], [ids[i] for i in np.flatnonzero(keep).tolist()])


def _updated(semantic_ids: SemanticIDs, codes: np.ndarray, item_ids: list[str]) -> SemanticIDs:
    """A copy with other rows. The checks of ``SemanticIDs(...)`` (a sort of every row) are skipped: the rows
    were valid, and appended ones were checked against all of them by `assign_codes`, so a change costs what the
    changed items cost, not what the catalogue costs."""
    out = copy.copy(semantic_ids)
    out.__dict__.pop("lookup", None)  # the cached item -> row map belongs to the old rows
    out.codes = np.ascontiguousarray(codes, dtype=np.int64)
    out.item_ids = item_ids
    # The fit's diagnostics describe the IDs as fitted; recomputing them on every update would cost more than the
    # update. Only the item count is kept current.
    out.diagnostics = {**semantic_ids.diagnostics, "n_items": len(item_ids)}
    return out


# ---------------------------------------------------------------------------------------------------- items files
ITEMS_FILE_HELP = """ITEMS_FILE: the items to add or remove, one per row.
  .jsonl  one JSON object per line with `item_id` and, to add, one of:
          `features` (a list of numbers, the quantiser's input width), `codes` (a list of ints, the quantiser's
          codes without the collision level), or the item's fields (`title`, `brand`, `categories`, `price`, ...),
          embedded with --text-model and the default template, as `hf-genrec train` embeds item text (or, when
          the bundle holds a content map, given the codes of the catalogue items that read alike: see
          GenerativeRecommender.fit_content_map; this is how items with text but no interactions join a
          catalogue whose IDs came from collaborative features);
  .csv    an `item_id` column and, to add, either numeric columns only (the feature vector, in column order) or
          the item's fields (`title`, `brand`, ...);
  .txt    (remove only) one item id per line."""


def _json_lines(path: Path, text: str, kind: str) -> list[tuple[int, Any]]:
    """``(line number, value)`` of each non-blank line of a JSON-lines file, or a ValueError naming the bad line."""
    values = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            values.append((number, json.loads(line)))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not a JSON {kind} ({err}). Write one {kind} per line.") from err
    return values


def read_items_file(path: str | os.PathLike) -> list[dict]:
    """The rows of an items file (see ``ITEMS_FILE_HELP``) as dicts, each with a string ``item_id``."""
    import csv

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Items file {path} not found.")
    suffix = path.suffix.lower()
    text = path.read_text(encoding="utf-8")
    if suffix in (".jsonl", ".json"):
        rows = []
        for number, row in _json_lines(path, text, "object"):
            if not isinstance(row, dict):
                raise ValueError(f"{path}, line {number}: expected a JSON object, got {type(row).__name__}.")
            rows.append(row)
    elif suffix == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    elif suffix == ".txt":
        rows = [{"item_id": line.strip()} for line in text.splitlines() if line.strip()]
    else:
        raise ValueError(f"Items file {path} must end in .jsonl, .csv or .txt.\n{ITEMS_FILE_HELP}")
    if not rows:
        raise ValueError(f"Items file {path} holds no items.")
    missing = [n for n, row in enumerate(rows, 1) if row.get("item_id") in (None, "")]
    if missing:
        raise ValueError(f"{path}: rows {missing[:5]} have no `item_id`; every row needs one.")
    for row in rows:
        row["item_id"] = str(row["item_id"])
    return rows


def read_histories_file(path: str | os.PathLike) -> list[list[str]]:
    """Histories from a .jsonl file: one JSON list of item ids per line, oldest first."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Histories file {path} not found.")
    histories = []
    for number, history in _json_lines(path, path.read_text(encoding="utf-8"), "list"):
        if not isinstance(history, list) or not all(isinstance(item, str | int) for item in history):
            raise ValueError(f"{path}, line {number}: expected a JSON list of item ids, got {history!r:.80}.")
        histories.append([str(item) for item in history])
    if not histories:
        raise ValueError(f"Histories file {path} holds no histories.")
    return histories


def items_file_inputs(
    rows: list[dict], text_model=None, codes_from_fields: Callable[[list[dict]], np.ndarray] | None = None
) -> tuple[list[str], np.ndarray | None, np.ndarray | None]:
    """``(item_ids, features, codes)`` of the rows of an items file to add (one of features / codes is None).

    Rows of item fields are embedded with ``text_model``, or given codes by ``codes_from_fields`` when it is passed
    (a bundle's content map).
    """
    ids = [row["item_id"] for row in rows]
    fields = [{k: v for k, v in row.items() if k != "item_id"} for row in rows]
    if all("codes" in f for f in fields):
        return ids, None, np.asarray([f["codes"] for f in fields], dtype=np.int64)
    if all("features" in f for f in fields):
        return ids, _numeric([f["features"] for f in fields]), None
    if any("codes" in f or "features" in f for f in fields):
        raise ValueError(
            "Every row must give the same kind of input: all `features`, all `codes`, or all item fields."
        )
    if not any(fields):
        raise ValueError("The rows hold only `item_id`: give each item `features`, `codes` or its fields to add it.")
    if all(_is_number(v) for f in fields for v in f.values()):  # CSV of feature columns
        return ids, _numeric([[float(v) for v in f.values()] for f in fields]), None
    if codes_from_fields is not None:
        return ids, None, codes_from_fields(fields)
    # text_features looked up when called, so that a replaced one (a test's offline fake) is the one used
    text_model = text_model or item_features.DEFAULT_TEXT_MODEL
    return ids, item_features.text_features(fields, model_name_or_path=text_model, show_progress_bar=False), None


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _numeric(rows: list) -> np.ndarray:
    widths = {len(r) for r in rows}
    if len(widths) != 1:
        raise ValueError(f"Feature vectors must all have the same width; got widths {sorted(widths)}.")
    return np.asarray(rows, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- cold start
class NewItemIndex:
    """The items added since training, bucketed by every prefix of their semantic codes, to rank them for a history.

    Items never seen in training have no interactions the model could have learnt from, but their IDs say what they
    are like: items with a common prefix came out of the same clusters of the features. So a new item ranks by how
    deep a prefix it shares with the history's items (the most recent first), and, among equals, by the model's own
    ranking of the new items (a beam search over their trie), then catalogue order.

    Args:
        item_ids: the new items.
        codes: their codes ``[n, levels]``; only the semantic levels (no collision level) are compared.
    """

    def __init__(self, item_ids: Sequence[str], codes: np.ndarray):
        self.item_ids = list(item_ids)
        self.levels = int(codes.shape[1])
        self.buckets: list[dict[tuple[int, ...], list[int]]] = []
        rows = np.asarray(codes).tolist()
        for depth in range(1, self.levels + 1):
            bucket: dict[tuple[int, ...], list[int]] = {}
            for n, row in enumerate(rows):
                bucket.setdefault(tuple(row[:depth]), []).append(n)
            self.buckets.append(bucket)

    def rank(self, history_codes: np.ndarray, model_ranked: Sequence[str], n: int, exclude: set[str]) -> list[str]:
        """The best ``n`` new items for a history (codes of its items ``[h, >= levels]``, oldest first), none of
        ``exclude`` (pass the history's own items: an item the user has is not a discovery)."""
        recent = [tuple(row[: self.levels]) for row in np.asarray(history_codes).tolist()[::-1]]
        model_rank = {item: r for r, item in enumerate(model_ranked)}
        out: list[str] = []
        seen = set(exclude)
        for depth in range(self.levels, 0, -1):
            for codes in recent:
                group = [self.item_ids[i] for i in self.buckets[depth - 1].get(codes[:depth], ())]
                group = sorted((i for i in group if i not in seen), key=lambda i: model_rank.get(i, len(model_rank)))
                for item in group:
                    seen.add(item)
                    out.append(item)
                    if len(out) >= n:
                        return out
        # no shared prefix left: the model's order
        out += [item for item in model_ranked if item not in seen][: n - len(out)]
        return out
