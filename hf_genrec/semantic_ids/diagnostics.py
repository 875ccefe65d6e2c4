"""Codebook health and collision statistics of a set of semantic IDs (plain, JSON-serialisable numbers)."""

from __future__ import annotations

import numpy as np

from .collisions import tuple_groups


def _perplexity(column: np.ndarray) -> float:
    counts = np.bincount(column).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


def compute_diagnostics(
    codes: np.ndarray,
    codebook_sizes: list[int],
    has_collision_level: bool,
    base_codes: np.ndarray | None = None,
) -> dict:
    """Per-level usage/perplexity/items-per-prefix and collision rates.

    - ``levels[l].usage``: fraction of level ``l``'s codes used by at least one item; ``perplexity``: exp(entropy) of
      the code distribution at that level (equals the codebook size when codes are used uniformly).
    - ``levels[l].items_per_prefix_mean/max``: items per distinct prefix ``codes[:, :l+1]`` (over the items whose ID
      reaches level ``l``; variable-length IDs are padded with ``-1``).
    - ``collision_rate_before``: fraction of items whose codes before disambiguation (``base_codes``; by default the
      codes without the collision level) are shared with another item; ``collision_rate_after``: the same over the
      full codes (0 for valid semantic IDs).
    """
    codes = np.asarray(codes, dtype=np.int64)
    n_items, n_levels = codes.shape
    levels = []
    for level in range(n_levels):
        reaches = codes[:, level] >= 0
        column = codes[reaches, level]
        size = int(codebook_sizes[level])
        used = int(len(np.unique(column)))
        _, prefix_counts = tuple_groups(codes[reaches, : level + 1])
        levels.append(
            {
                "level": level,
                "codebook_size": size,
                "used_codes": used,
                "usage": used / size,
                "perplexity": _perplexity(column),
                "items": int(reaches.sum()),
                "items_per_prefix_mean": float(reaches.sum() / len(prefix_counts)),
                "items_per_prefix_max": int(prefix_counts.max()),
                "collision_level": bool(has_collision_level and level == n_levels - 1),
            }
        )
    if base_codes is None:
        base_codes = codes[:, :-1] if has_collision_level and n_levels > 1 else codes
    group, counts = tuple_groups(np.asarray(base_codes, dtype=np.int64))
    shared = counts[group] > 1
    after_group, after_counts = tuple_groups(codes)
    lengths = (codes >= 0).sum(axis=1)
    return {
        "n_items": int(n_items),
        "n_levels": int(n_levels),
        "levels": levels,
        "id_length_mean": float(lengths.mean()),
        "id_length_max": int(lengths.max()),
        "unique_tuples_before": int(len(counts)),
        "colliding_items_before": int(shared.sum()),
        "collision_rate_before": float(shared.mean()),
        "max_items_per_tuple": int(counts.max()),
        "collision_rate_after": float((after_counts[after_group] > 1).mean()),
        "extra_levels": int(bool(has_collision_level)),
    }


def format_summary(semantic_ids) -> str:
    """Human-readable table of ``semantic_ids.diagnostics``."""
    diag = semantic_ids.diagnostics
    n_levels = semantic_ids.n_levels
    base_levels = n_levels - int(semantic_ids.has_collision_level)
    head = f"SemanticIDs(scheme={semantic_ids.scheme!r}): {len(semantic_ids.item_ids)} items, {n_levels} levels"
    if semantic_ids.has_collision_level:
        head += f" ({base_levels} + 1 collision level)"
    if diag.get("fit_seconds") is not None:
        head += f", fitted in {diag['fit_seconds']:.1f} s"
    if diag.get("id_length_max", n_levels) != diag.get("id_length_mean", n_levels):
        head += f" (variable length: mean {diag['id_length_mean']:.2f}, max {diag['id_length_max']})"
    rows = [("level", "codes", "used", "usage", "perplexity", "items/prefix mean", "items/prefix max")]
    for stats in diag.get("levels", []):
        name = f"{stats['level']}" + (" (collision)" if stats.get("collision_level") else "")
        rows.append(
            (
                name,
                str(stats["codebook_size"]),
                str(stats["used_codes"]),
                f"{100 * stats['usage']:.1f}%",
                f"{stats['perplexity']:.1f}",
                f"{stats['items_per_prefix_mean']:.2f}",
                str(stats["items_per_prefix_max"]),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [head]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(width) if i else cell.ljust(width) for cell, width in zip(row, widths)))
    if "collision_rate_before" in diag:
        lines.append(
            f"collisions before disambiguation: {100 * diag['collision_rate_before']:.2f}% of items "
            f"({diag['colliding_items_before']} items; {diag['unique_tuples_before']} distinct tuples; "
            f"at most {diag['max_items_per_tuple']} items share one); after: {100 * diag['collision_rate_after']:.2f}%"
        )
    return "\n".join(lines)
