"""Pictures of semantic IDs: how evenly each level's codebook is used (needs ``pip install hf_genrec[plot]``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .semantic_ids import SemanticIDs


def plot_codebook_usage(semantic_ids: SemanticIDs, path: str | os.PathLike, max_levels: int = 8) -> Path:
    """Draw one panel per level: items per code, most used first, against the uniform ideal; save a PNG to ``path``.

    A healthy level is a flat bar chart that spans the codebook; collapse shows as a few tall bars and a long empty
    tail. The panel titles give usage (share of codes in use) and perplexity (effective number of codes).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display needed
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            "Plotting codebook usage needs matplotlib: `pip install hf_genrec[plot]` (or `pip install matplotlib`)."
        ) from err
    diag = semantic_ids.diagnostics
    levels = diag["levels"][:max_levels]
    fig, axes = plt.subplots(len(levels), 1, figsize=(8, 1.9 * len(levels)), squeeze=False)
    for ax, stats in zip(axes[:, 0], levels):
        column = semantic_ids.codes[:, stats["level"]]
        column = column[column >= 0]
        counts = np.sort(np.bincount(column, minlength=stats["codebook_size"]))[::-1]
        ax.bar(np.arange(len(counts)), counts, width=1.0, color="#4c72b0")
        ax.axhline(len(column) / stats["codebook_size"], color="#dd8452", lw=1, ls="--", label="uniform")
        kind = " (collision level)" if stats["collision_level"] else ""
        ax.set_title(
            f"level {stats['level']}{kind}: {stats['used_codes']}/{stats['codebook_size']} codes used "
            f"({100 * stats['usage']:.0f}%), perplexity {stats['perplexity']:.1f}",
            fontsize=9,
        )
        ax.set_ylabel("items")
        ax.set_xlim(-0.5, len(counts) - 0.5)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("codes, most used first")
    rate = diag.get("collision_rate_before", 0.0)
    fig.suptitle(
        f"{semantic_ids.scheme} IDs: {semantic_ids.n_items} items, {100 * rate:.1f}% share a tuple before "
        "disambiguation",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
