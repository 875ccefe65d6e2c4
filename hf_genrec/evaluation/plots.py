"""Pictures of a run (needs ``pip install hf_genrec[plot]``): training and validation curves, codebook usage per
level, and Recall@K against K.

Each picture has a ``*_figure`` function that returns the matplotlib `Figure` (to show in a notebook or inspect)
and a ``plot_*`` function that saves it as a PNG and returns the path. :func:`plot_results` draws all three from a
run's ``results.json``, as ``hf-genrec train --plot`` does.

Example:

```python
>>> from hf_genrec.evaluation.plots import recall_at_k_figure
>>> fig = recall_at_k_figure({"k": [1, 2, 3], "model": [0.1, 0.2, 0.25], "most popular": [0.05, 0.1, 0.12]})
>>> fig.axes[0].get_title()
'Recall@K against K'
>>> [line.get_label() for line in fig.axes[0].get_lines()]
['model', 'most popular']
```
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..semantic_ids import SemanticIDs

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    # lazy: matplotlib is optional (the `plot` extra) and only the plots need it
    try:
        import matplotlib

        if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
            matplotlib.use("Agg")  # no display needed; a notebook (MPLBACKEND=inline) keeps its own backend
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError(
            'Plotting needs matplotlib: `pip install "hf_genrec[plot]"` (or `pip install matplotlib`).'
        ) from err
    return plt


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Save ``fig`` as a PNG at ``path`` (folders created), close it and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _pyplot().close(fig)
    return path


# ---------------------------------------------------------------------------------------------------- codebook usage
def codebook_usage_figure(semantic_ids: SemanticIDs, max_levels: int = 8) -> Figure:
    """One panel per level: items per code, most used first, against the uniform ideal.

    A healthy level is a flat bar chart that spans the codebook; collapse shows as a few tall bars and a long empty
    tail. The panel titles give usage (share of codes in use) and perplexity (effective number of codes).
    """
    plt = _pyplot()
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
    return fig


def plot_codebook_usage(semantic_ids: SemanticIDs, path: str | os.PathLike, max_levels: int = 8) -> Path:
    """Save :func:`codebook_usage_figure` as a PNG at ``path``."""
    return save_figure(codebook_usage_figure(semantic_ids, max_levels), path)


# ---------------------------------------------------------------------------------------------------- training
def training_curves_figure(log_history: Sequence[Mapping[str, Any]], x: str = "step") -> Figure:
    """Left: training and validation loss; right: the validation ranking metrics (Recall@K, NDCG@K), against ``x``.

    Args:
        log_history: `Trainer`'s ``state.log_history`` (also ``results.json``'s ``log_history`` and a checkpoint's
            ``trainer_state.json``): dicts with ``loss`` (training) or ``eval_*`` keys (validation).
        x: ``"step"`` or ``"epoch"``.
    """
    plt = _pyplot()
    if x not in ("step", "epoch"):
        raise ValueError(f"x must be 'step' or 'epoch', got {x!r}.")
    fig, (loss_ax, rank_ax) = plt.subplots(1, 2, figsize=(11, 4))
    train = [e for e in log_history if "loss" in e and x in e]
    valid = [e for e in log_history if "eval_loss" in e and x in e]
    if not train and not valid:
        raise ValueError(
            "log_history holds no training or validation loss; pass trainer.state.log_history after training (with "
            "logging_steps small enough to log at least once)."
        )
    if train:
        loss_ax.plot([e[x] for e in train], [e["loss"] for e in train], label="training loss", color="#4c72b0")
    if valid:
        loss_ax.plot([e[x] for e in valid], [e["eval_loss"] for e in valid], "o-", label="validation loss",
                     color="#dd8452")  # fmt: skip
    loss_ax.set_title("Training and validation loss")
    loss_ax.set_xlabel(x)
    loss_ax.set_ylabel("cross-entropy per ID token")
    loss_ax.legend()
    ranked = [e for e in log_history if x in e and any(k.startswith("eval_") and "@" in k for k in e)]
    names = {k[len("eval_") :] for e in ranked for k in e if k.startswith("eval_") and "@" in k}
    names = [n for n in names if n.startswith(("recall@", "ndcg@")) and n.split("@")[1].isdigit()]
    names.sort(key=lambda n: (not n.startswith("recall"), int(n.split("@")[1])))
    ks = sorted({int(n.split("@")[1]) for n in names})
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for name in names:  # one colour per K; Recall solid, NDCG dashed
        points = [(e[x], e[f"eval_{name}"]) for e in ranked if f"eval_{name}" in e]
        color = colors[ks.index(int(name.split("@")[1])) % len(colors)]
        style = "o-" if name.startswith("recall") else "s--"
        label = name.replace("recall", "Recall").replace("ndcg", "NDCG")
        rank_ax.plot(*zip(*points), style, color=color, label=label, markersize=4)
    rank_ax.set_title("Validation ranking metrics" if names else "Validation ranking metrics (none logged)")
    rank_ax.set_xlabel(x)
    if names:
        rank_ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def plot_training_curves(log_history: Sequence[Mapping[str, Any]], path: str | os.PathLike, x: str = "step") -> Path:
    """Save :func:`training_curves_figure` as a PNG at ``path``."""
    return save_figure(training_curves_figure(log_history, x), path)


# ---------------------------------------------------------------------------------------------------- Recall@K
def recall_at_k_figure(recall_curve: Mapping[str, Sequence[float]], title: str = "Recall@K against K") -> Figure:
    """Recall@K for every K of ``recall_curve["k"]``, one line per model (every other key of ``recall_curve``).

    ``results.json``'s ``recall_curve`` holds the trained model's and the most-popular baseline's test curves.
    """
    plt = _pyplot()
    if "k" not in recall_curve or len(recall_curve) < 2:
        raise ValueError("recall_curve needs a 'k' list and at least one model's Recall@K list beside it.")
    ks = list(recall_curve["k"])
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, values in recall_curve.items():
        if label == "k":
            continue
        if len(values) != len(ks):
            raise ValueError(f"recall_curve[{label!r}] has {len(values)} values for {len(ks)} K values.")
        ax.plot(ks, values, "o-" if len(ks) <= 20 else "-", label=label, markersize=3)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title)
    ax.set_xlabel("K (items recommended)")
    ax.set_ylabel("Recall@K (test)")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    return fig


def plot_recall_at_k(recall_curve: Mapping[str, Sequence[float]], path: str | os.PathLike) -> Path:
    """Save :func:`recall_at_k_figure` as a PNG at ``path``."""
    return save_figure(recall_at_k_figure(recall_curve), path)


def plot_results(
    results: Mapping[str, Any], output_dir: str | os.PathLike, semantic_ids: SemanticIDs | None = None
) -> list[Path]:
    """Draw a run's pictures next to its ``results.json``: ``training_curves.png``, ``recall_at_k.png`` and, when
    ``semantic_ids`` are given, ``codebook_usage.png``. Returns the paths written."""
    output_dir = Path(output_dir)
    paths = []
    if results.get("log_history"):
        paths.append(plot_training_curves(results["log_history"], output_dir / "training_curves.png"))
    if results.get("recall_curve"):
        paths.append(plot_recall_at_k(results["recall_curve"], output_dir / "recall_at_k.png"))
    if semantic_ids is not None:
        paths.append(plot_codebook_usage(semantic_ids, output_dir / "codebook_usage.png"))
    return paths
