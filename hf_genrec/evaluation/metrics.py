"""Ranking metrics for next-item prediction with one held-out target per user.

Predictions are item row indices ranked best first, ``[n_users, K]``, with ``-1`` where a generated sequence was no
item. With a single relevant item, Recall@K equals Hit@K, and NDCG@K is ``1 / log2(rank + 2)`` when the target is at
0-based ``rank < K``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def _as_arrays(predictions, targets) -> tuple[np.ndarray, np.ndarray]:
    predictions = np.asarray(predictions)
    targets = np.asarray(targets).reshape(-1)
    if predictions.ndim != 2:
        raise ValueError(f"predictions must be [n_users, K] item indices, got shape {predictions.shape}.")
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} prediction rows but {len(targets)} targets; they must match one to one.")
    return predictions, targets


def target_ranks(predictions, targets) -> np.ndarray:
    """0-based rank of each target in its prediction row; ``K`` (one past the end) where it is absent."""
    predictions, targets = _as_arrays(predictions, targets)
    hits = predictions == targets[:, None]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), predictions.shape[1])


def per_user_metrics(ranks, ks: Sequence[int] = (5, 10)) -> dict[str, np.ndarray]:
    """Each user's Recall@K (a hit, 0 or 1) and NDCG@K for every K, from the 0-based target ranks (`target_ranks`):
    the per-user values that paired comparisons of two rankings of the same users take the differences of.

    Example:

    ```python
    >>> {m: v.tolist() for m, v in per_user_metrics([0, 3, 1], ks=[2]).items()}
    {'recall@2': [1.0, 0.0, 1.0], 'ndcg@2': [1.0, 0.0, 0.6309297535714575]}
    ```
    """
    ranks = np.asarray(ranks).reshape(-1)
    out = {}
    for k in ks:
        out[f"recall@{k}"] = (ranks < k).astype(float)
        out[f"ndcg@{k}"] = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
    return out


def paired_difference(first: dict[str, np.ndarray], other: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per metric, the mean over users of ``first - other`` and its standard error: two rankings of the same users
    (`per_user_metrics` of each, users in the same order) compared user by user, so the error is that of the
    difference, much smaller than either mean's own.

    Example:

    ```python
    >>> diff = paired_difference({"recall@10": np.array([1.0, 1.0, 0.0])}, {"recall@10": np.array([0.0, 1.0, 0.0])})
    >>> round(diff["recall@10"]["mean"], 4), round(diff["recall@10"]["standard_error"], 4)
    (0.3333, 0.3333)
    ```
    """
    out = {}
    for metric, values in first.items():
        if metric not in other:
            raise KeyError(f"{metric!r} is in the first ranking's metrics but not the other's ({sorted(other)}).")
        a, b = np.asarray(values, dtype=float), np.asarray(other[metric], dtype=float)
        if a.shape != b.shape:
            raise ValueError(
                f"{metric!r}: {a.shape} users against {b.shape}; a paired difference needs the same users in the "
                "same order in both."
            )
        diff = a - b
        error = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else float("nan")
        out[metric] = {"mean": float(diff.mean()), "standard_error": error}
    return out


def recall_at_k(predictions, targets, k: int) -> float:
    """Share of users whose target is in their top ``k`` (= Hit@K for one target per user).

    Example:

    ```python
    >>> recall_at_k([[3, 1, 2], [0, 2, 1]], [1, 4], k=2)  # user 0's target is 2nd, user 1's is not ranked
    0.5
    ```
    """
    return float(per_user_metrics(target_ranks(predictions, targets), (k,))[f"recall@{k}"].mean())


hit_at_k = recall_at_k


def ndcg_at_k(predictions, targets, k: int) -> float:
    """Mean of ``1 / log2(rank + 2)`` over users whose target is at 0-based ``rank < k`` (0 for the others).

    Example:

    ```python
    >>> round(ndcg_at_k([[3, 1, 2], [0, 2, 1]], [1, 0], k=3), 4)  # ranks 1 and 0: (1/log2(3) + 1) / 2
    0.8155
    ```
    """
    return float(per_user_metrics(target_ranks(predictions, targets), (k,))[f"ndcg@{k}"].mean())


def mrr_at_k(predictions, targets, k: int) -> float:
    ranks = target_ranks(predictions, targets)
    return float(np.mean(np.where(ranks < k, 1.0 / (ranks + 1.0), 0.0)))


def invalid_rate(predictions, k: int | None = None) -> float:
    """Share of returned top-``k`` slots that hold no real item (``-1``)."""
    predictions = np.asarray(predictions)
    if k is not None:
        predictions = predictions[:, :k]
    return float(np.mean(predictions < 0)) if predictions.size else 0.0


def ranking_metrics(predictions, targets, ks: Sequence[int] = (5, 10)) -> dict[str, float]:
    """Recall@K, NDCG@K for every K, MRR@max(K) and the invalid-ID rate over the top max(K).

    Example:

    ```python
    >>> ranking_metrics([[1, -1], [2, 1]], [1, 0], ks=[1, 2])  # -1: a generated sequence that is no item
    {'recall@1': 0.5, 'ndcg@1': 0.5, 'recall@2': 0.5, 'ndcg@2': 0.5, 'mrr@2': 0.5, 'invalid_rate': 0.25}
    ```
    """
    predictions, targets = _as_arrays(predictions, targets)
    if max(ks) > predictions.shape[1]:
        raise ValueError(
            f"Asked for metrics at K={max(ks)} but only {predictions.shape[1]} items were ranked per user; "
            "generate at least max(K) items (num_beams >= K)."
        )
    # the targets are found once for every K (recall_at_k and ndcg_at_k would each find them again)
    per_user = per_user_metrics(target_ranks(predictions, targets), ks)
    out = {name: float(values.mean()) for name, values in per_user.items()}
    out[f"mrr@{max(ks)}"] = mrr_at_k(predictions, targets, max(ks))
    out["invalid_rate"] = invalid_rate(predictions, max(ks))
    return out


def recall_curve(predictions, targets, max_k: int | None = None) -> list[float]:
    """Recall@K for every K from 1 to ``max_k`` (default: all ranked columns), from one pass over the ranks.

    Example:

    ```python
    >>> recall_curve([[3, 1, 2], [0, 2, 1]], [1, 4])
    [0.0, 0.5, 0.5]
    ```
    """
    ranks = target_ranks(predictions, targets)
    max_k = np.asarray(predictions).shape[1] if max_k is None else max_k
    return [float(np.mean(ranks < k)) for k in range(1, max_k + 1)]


def make_compute_metrics(ks: Sequence[int] = (5, 10), record: dict | None = None) -> Callable:
    """A ``compute_metrics`` for `GenRecTrainer`: its predictions are ranked item indices, its labels item indices.

    With a ``record`` dict, each call also stores the target ranks of that evaluation under ``record["ranks"]``
    (0-based, ``max(ks)`` where absent), e.g. to draw Recall@K against K after ``trainer.evaluate``.
    """

    def compute_metrics(eval_prediction) -> dict[str, float]:
        predictions = eval_prediction.predictions
        if isinstance(predictions, tuple):
            predictions = predictions[0]
        if record is not None:
            record["ranks"] = target_ranks(predictions, eval_prediction.label_ids)
        return ranking_metrics(predictions, eval_prediction.label_ids, ks)

    return compute_metrics


def load_evaluate_metric(ks: Sequence[int] = (5, 10)):
    """The same metrics as an `evaluate` module (``add_batch`` / ``compute``), for users of that library."""
    import datasets

    try:
        import evaluate
    except ImportError as err:
        raise ImportError(
            'The `evaluate` module of these metrics needs the evaluate library: `pip install "hf_genrec[evaluate]"` '
            "(or `pip install evaluate`); `hf_genrec.evaluation.metrics.ranking_metrics` computes the same figures "
            "without it."
        ) from err

    class GenRecRanking(evaluate.Metric):
        def _info(self):
            return evaluate.MetricInfo(
                description="Recall@K, NDCG@K, MRR and invalid-ID rate for generative recommendation.",
                citation="Rajput et al., Recommender Systems with Generative Retrieval, NeurIPS 2023.",
                inputs_description="predictions: ranked item indices per user (-1 = no item); references: target index.",
                features=datasets.Features(
                    {"predictions": datasets.Sequence(datasets.Value("int64")), "references": datasets.Value("int64")}
                ),
            )

        def _compute(self, predictions, references):
            return ranking_metrics(np.asarray(predictions), np.asarray(references), ks)

    return GenRecRanking()
