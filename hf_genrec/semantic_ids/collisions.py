"""TIGER's collision level: one extra code that tells apart the items sharing a code tuple."""

from __future__ import annotations

import numpy as np


def check_codes(codes, name: str = "codes", allow_padding: bool = False) -> np.ndarray:
    """Return ``codes`` as a C-contiguous int64 ``[n_items, n_levels]`` array of non-negative ints, or raise.

    With ``allow_padding``, rows may end in ``-1`` padding (variable-length IDs: row ``i`` has codes in its first
    ``length_i`` columns and ``-1`` after them); every row needs at least one code.
    """
    array = np.asarray(codes)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D int array [n_items, n_levels], got shape {tuple(array.shape)}.")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(array.shape)}); it needs at least one item and one level.")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"{name} must have an integer dtype, got {array.dtype}. If the values are whole numbers, pass "
            f"{name}.astype(np.int64)."
        )
    array = np.ascontiguousarray(array, dtype=np.int64)
    if allow_padding:
        padded = array == -1
        # padding must be trailing: once a row has -1, every later column is -1 too
        bad = (array < -1) | (padded[:, :1]) | (np.diff(padded.astype(np.int8), axis=1) < 0).any(axis=1)[:, None]
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            raise ValueError(
                f"{name} must be non-negative codes, optionally followed by -1 padding (variable-length IDs); "
                f"{len(rows)} rows are not (first rows: {rows[:5].tolist()}): a row may not start with -1, hold "
                "codes after -1, or use other negative values."
            )
    elif array.min() < 0:
        rows = np.flatnonzero((array < 0).any(axis=1))
        raise ValueError(
            f"{name} must be non-negative; {len(rows)} rows have negative codes (first rows: {rows[:5].tolist()})."
        )
    return array


def id_lengths(codes: np.ndarray) -> np.ndarray:
    """Number of codes (non-padding columns) in each row."""
    return (np.asarray(codes) >= 0).sum(axis=1)


def tuple_groups(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group identical rows: returns (group index per row, size of each group)."""
    _, inverse, counts = np.unique(codes, axis=0, return_inverse=True, return_counts=True)
    return inverse.reshape(-1), counts


def add_collision_level(codes) -> np.ndarray:
    """Append one level numbering the items that share a code tuple: 0, 1, 2, ... in row order.

    Items whose tuple is unique get 0. Deterministic: the first row with a given tuple gets 0, the next 1, and so on.

    Example:
        >>> add_collision_level(np.array([[1, 2], [3, 4], [1, 2]]))
        array([[1, 2, 0],
               [3, 4, 0],
               [1, 2, 1]])
    """
    codes = check_codes(codes)  # fixed-length only: a padded row has no single "last level"
    group, _ = tuple_groups(codes)
    order = np.argsort(group, kind="stable")  # rows of each group stay in row order
    sorted_group = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_group)) + 1]
    group_start = np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    occurrence = np.empty(len(codes), dtype=np.int64)
    occurrence[order] = np.arange(len(order)) - group_start
    return np.concatenate([codes, occurrence[:, None]], axis=1)
