"""Input checks shared by the semantic-ID schemes. Every error says what was wrong and what to do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

#: rows per chunk when a check or a transform walks a large feature matrix (bounded temporary memory)
CHUNK_ROWS = 8192


def check_features(features, name: str = "features") -> np.ndarray:
    """Return ``features`` as a C-contiguous float32 ``[n_items, dim]`` array, or raise a ValueError that says why not."""
    try:
        array = np.asarray(features)
    except Exception as err:  # ragged lists and the like
        raise ValueError(
            f"{name} could not be read as a numeric array ({err}); pass a 2-D array [n_items, dim]."
        ) from err
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"{name} must be numeric, got dtype {array.dtype}; pass a float array [n_items, dim].")
    if array.ndim != 2:
        hint = (
            " Use features.reshape(n_items, -1)."
            if array.ndim > 2
            else " Use features.reshape(-1, 1) for one feature."
        )
        raise ValueError(f"{name} must be a 2-D array [n_items, dim], got shape {tuple(array.shape)}.{hint}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(array.shape)}); it needs at least one item and one dimension."
        )
    array = np.ascontiguousarray(array, dtype=np.float32)
    # checked in row chunks: a boolean mask of a 1M x 768 catalogue alone would take 768 MB
    bad_rows, bad_values = [], 0
    for start in range(0, len(array), CHUNK_ROWS):
        finite = np.isfinite(array[start : start + CHUNK_ROWS])
        if not finite.all():
            bad_rows.append(start + np.flatnonzero(~finite.all(axis=1)))
            bad_values += int((~finite).sum())
    if bad_rows:
        bad_rows = np.concatenate(bad_rows)
        raise ValueError(
            f"{name} contains {bad_values} NaN/inf values in {len(bad_rows)} rows "
            f"(first rows: {bad_rows[:5].tolist()}). Fix or drop those items before fitting, e.g. recompute their "
            "features or replace them with np.nan_to_num(features)."
        )
    return array


def check_item_ids(item_ids, n_rows: int | None = None, what: str = "features") -> list[str]:
    """Return ``item_ids`` as a list of str; raise if duplicated or not aligned with ``n_rows``."""
    if item_ids is None:
        raise ValueError("item_ids is required: pass one id per row, in row order (e.g. items['item_id']).")
    if isinstance(item_ids, (str, bytes)):
        raise ValueError("item_ids must be a sequence of ids, not a single string.")
    ids = [str(item) for item in item_ids]
    if n_rows is not None and len(ids) != n_rows:
        raise ValueError(
            f"{what} has {n_rows} rows but item_ids has {len(ids)} entries; they must be aligned row by row "
            "(row i belongs to item_ids[i])."
        )
    if len(set(ids)) != len(ids):
        duplicated = [item for item, count in Counter(ids).items() if count > 1]
        raise ValueError(
            f"item_ids contains {len(duplicated)} duplicated ids (first: {duplicated[:5]}); each item must appear "
            "once. Deduplicate the item table first."
        )
    return ids


def check_codebook_sizes(codebook_size, n_levels: int) -> list[int]:
    """Expand an int (or validate a per-level list) into ``n_levels`` positive codebook sizes."""
    if isinstance(n_levels, bool) or not isinstance(n_levels, (int, np.integer)) or n_levels < 1:
        raise ValueError(f"n_levels must be a positive int, got {n_levels!r}.")
    if isinstance(codebook_size, Sequence) and not isinstance(codebook_size, str):
        sizes = list(codebook_size)
        if len(sizes) != n_levels:
            raise ValueError(f"codebook_size has {len(sizes)} entries but n_levels={n_levels}; give one per level.")
    else:
        sizes = [codebook_size] * n_levels
    for size in sizes:
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2:
            raise ValueError(f"each codebook_size must be an int >= 2, got {size!r}.")
    return [int(size) for size in sizes]


def check_codes(codes, codebook_sizes: Sequence[int]) -> np.ndarray:
    """Return ``codes`` as int64 ``[n, levels]`` (no collision level), or raise a ValueError that says what is wrong."""
    levels = len(codebook_sizes)
    array = np.asarray(codes)
    if array.ndim != 2 or array.shape[1] != levels or not (array.size == 0 or np.issubdtype(array.dtype, np.integer)):
        raise ValueError(
            f"codes must be int [n, n_levels={levels}] (without the collision level), got shape "
            f"{tuple(array.shape)} and dtype {array.dtype}."
        )
    array = array.astype(np.int64)
    for level, size in enumerate(codebook_sizes):
        if len(array) and not (array[:, level].min() >= 0 and array[:, level].max() < size):
            raise ValueError(f"codes at level {level} fall outside its codebook of {size} codes (0..{size - 1}).")
    return array


def check_enough_items(n_items: int, codebook_sizes: list[int]) -> None:
    """k-means (and k-means initialisation) needs at least as many items as codes."""
    largest = max(codebook_sizes)
    if n_items < largest:
        suggestion = max(2, 2 ** int(np.floor(np.log2(max(n_items // 4, 2)))))
        raise ValueError(
            f"Cannot learn a codebook of {largest} codes from {n_items} items: each code needs at least one item. "
            f"Use a smaller codebook_size (<= {n_items}; e.g. codebook_size={suggestion}) or more items."
        )


def check_collision_option(value) -> bool | None:
    if value is None or value == "auto":
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ValueError(f"add_collision_level must be True, False or None/'auto' (only when needed), got {value!r}.")
