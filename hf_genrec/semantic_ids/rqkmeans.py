"""Residual k-means (faiss): k-means on the features, then on what is left, level by level."""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from ..utils.progress import progress_bar
from ._validation import (
    CHUNK_ROWS,
    check_codebook_sizes,
    check_codes,
    check_collision_option,
    check_enough_items,
    check_features,
    check_item_ids,
)
from .base import ItemIDScheme
from .ids import SemanticIDs, build_semantic_ids

logger = logging.getLogger(__name__)


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator, n_local_trials: int | None = None) -> np.ndarray:
    """Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with local trials as in scikit-learn): ``k`` rows of x."""
    n = len(x)
    trials = n_local_trials or 2 + int(np.log(k))
    sq_norms = (x * x).sum(axis=1)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = np.maximum(sq_norms + sq_norms[first] - 2.0 * (x @ x[first]), 0.0)
    for c in range(1, k):
        potential = float(closest.sum())
        if potential <= 0:  # fewer distinct points than k: the rest are copies
            candidates = rng.integers(n, size=1)
        else:
            cumulative = np.cumsum(closest, dtype=np.float64)
            candidates = np.searchsorted(cumulative, rng.random(trials) * cumulative[-1])
            candidates = np.minimum(candidates, n - 1)
        distances = sq_norms[candidates][:, None] + sq_norms[None, :] - 2.0 * (x[candidates] @ x.T)
        distances = np.minimum(closest[None, :], np.maximum(distances, 0.0))
        best = int(np.argmin(distances.sum(axis=1)))
        centers[c] = x[candidates[best]]
        closest = distances[best]
    return centers


def train_kmeans(
    x: np.ndarray,
    k: int,
    n_iter: int = 20,
    seed: int = 0,
    n_redo: int = 1,
    max_points_per_centroid: int = 256,
    verbose: bool = False,
) -> np.ndarray:
    """faiss k-means from a k-means++ start (the best of ``n_redo`` starts); returns float32 centroids [k, dim]."""
    # lazy: faiss loads a large native library, needed only while fitting, never to load or serve a bundle
    import faiss

    rng = np.random.default_rng(seed)
    sample = x
    if len(x) > k * max_points_per_centroid:  # faiss would subsample too; seed on the same budget
        sample = x[np.sort(rng.choice(len(x), k * max_points_per_centroid, replace=False))]
    best, best_obj = None, np.inf
    for redo in range(max(1, n_redo)):
        kmeans = faiss.Kmeans(
            x.shape[1],
            k,
            niter=n_iter,
            seed=seed + redo,
            verbose=verbose,
            max_points_per_centroid=max_points_per_centroid,
            min_points_per_centroid=1,  # callers check n_items >= k; faiss would only print a warning
        )
        kmeans.train(sample, init_centroids=kmeans_plusplus(sample, k, rng))
        objective = float(kmeans.obj[-1]) if len(kmeans.obj) else 0.0
        if objective < best_obj or best is None:
            best, best_obj = np.ascontiguousarray(kmeans.centroids, dtype=np.float32), objective
    return best


def nearest_centroid(x: np.ndarray, centroids: np.ndarray, batch_size: int = 65536) -> np.ndarray:
    """Index of the nearest centroid (squared L2) of each row; float32 numpy, deterministic for a given input."""
    centroid_norms = (centroids.astype(np.float64) ** 2).sum(axis=1).astype(np.float32)
    out = np.empty(len(x), dtype=np.int64)
    for start in range(0, len(x), batch_size):
        chunk = x[start : start + batch_size]
        # ||x||^2 is the same for every centroid, so argmin ||c||^2 - 2 x.c picks the nearest one
        out[start : start + batch_size] = np.argmin(centroid_norms[None, :] - 2.0 * (chunk @ centroids.T), axis=1)
    return out


def balanced_assignment(x: np.ndarray, centroids: np.ndarray, capacity: int | None = None) -> np.ndarray:
    """Assign rows to centroids with at most ``capacity`` rows each (default ``ceil(n / k)``: equal-size clusters).

    Deferred acceptance: every unassigned row proposes to its nearest centroid that still has room; each centroid
    keeps the closest proposals that fit and turns the others away, who propose to their next choice. Vectorised
    per round; at most ``k`` rounds.
    """
    n, k = len(x), len(centroids)
    capacity = math.ceil(n / k) if capacity is None else int(capacity)
    if capacity * k < n:
        raise ValueError(f"capacity {capacity} x {k} centroids cannot hold {n} rows.")
    distances = (centroids**2).sum(axis=1)[None, :] - 2.0 * (x @ centroids.T)
    preference = np.argsort(distances, axis=1, kind="stable")
    pointer = np.zeros(n, dtype=np.int64)
    room = np.full(k, capacity, dtype=np.int64)
    assignment = np.full(n, -1, dtype=np.int64)
    rows = np.arange(n)
    while len(rows):
        choice = preference[rows, pointer[rows]]
        full = room[choice] == 0
        while full.any():  # skip centroids that filled up in earlier rounds
            pointer[rows[full]] += 1
            choice[full] = preference[rows[full], pointer[rows[full]]]
            full = room[choice] == 0
        order = np.lexsort((distances[rows, choice], choice))
        sorted_choice = choice[order]
        first = np.r_[0, np.flatnonzero(np.diff(sorted_choice)) + 1]
        rank = np.arange(len(order)) - np.repeat(first, np.diff(np.r_[first, len(order)]))
        accepted = rank < room[sorted_choice]
        winners = rows[order[accepted]]
        assignment[winners] = sorted_choice[accepted]
        np.subtract.at(room, sorted_choice[accepted], 1)
        losers = rows[order[~accepted]]
        pointer[losers] += 1
        rows = losers
    return assignment


#: above this many feature values, PCA uses the covariance matrix built in row chunks instead of an SVD of a float64
#: copy of the whole matrix (1M x 768 items would need 12 GB for that copy and its centred twin)
SVD_MAX_VALUES = 50_000_000


def fit_pca(x: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[d]`` and the top-``dim`` principal axes ``[dim, d]`` of ``x`` (float32).

    Small matrices take an exact SVD; large ones the eigenvectors of the covariance, accumulated in float64 over row
    chunks, so memory stays at one chunk plus ``d x d`` whatever the number of items.
    """
    mean = x.mean(axis=0, dtype=np.float64)
    if x.size <= SVD_MAX_VALUES:
        _, _, vt = np.linalg.svd(x.astype(np.float64) - mean, full_matrices=False)
        return mean.astype(np.float32), np.ascontiguousarray(vt[:dim], dtype=np.float32)
    scatter = np.zeros((x.shape[1], x.shape[1]), dtype=np.float64)
    for start in range(0, len(x), CHUNK_ROWS):
        chunk = x[start : start + CHUNK_ROWS].astype(np.float64) - mean
        scatter += chunk.T @ chunk
    _, vectors = np.linalg.eigh(scatter)  # ascending eigenvalues
    axes = vectors[:, ::-1][:, :dim].T
    # an eigenvector's sign is arbitrary: fix it as SVD tends to, largest component positive, for stable codes
    signs = np.sign(axes[np.arange(dim), np.abs(axes).argmax(axis=1)])
    return mean.astype(np.float32), np.ascontiguousarray(axes * signs[:, None], dtype=np.float32)


def count_distinct_rows(x: np.ndarray, at_least: int) -> int:
    """Distinct rows of ``x``, or a count ``>= at_least`` when there are at least that many.

    Equal rows have equal random projections, so the distinct projections are a lower bound on the distinct rows;
    when that bound already reaches ``at_least`` the exact count (a sort of the whole matrix) is skipped.
    """
    direction = np.random.default_rng(0).standard_normal(x.shape[1])
    projections = np.concatenate([x[s : s + CHUNK_ROWS] @ direction for s in range(0, len(x), CHUNK_ROWS)])
    bound = len(np.unique(projections))
    return bound if bound >= at_least else len(np.unique(x, axis=0))


def check_distinct(x: np.ndarray, codebook_sizes: list[int]) -> None:
    """k-means cannot fill more codes than there are distinct feature rows."""
    distinct = count_distinct_rows(x, max(codebook_sizes))
    if distinct < max(codebook_sizes):
        raise ValueError(
            f"The features have only {distinct} distinct rows, so a codebook of {max(codebook_sizes)} codes cannot be "
            f"reached (codes would repeat or stay empty). Use codebook_size <= {distinct}, or richer features "
            "(e.g. text embeddings instead of sparse attributes)."
        )


class PCAProjection:
    """Optional projection of the features on their top ``pca_dim`` principal axes, fitted and saved with a scheme.

    Used by the k-means schemes: on raw sentence embeddings most energy sits in a few directions, and deeper levels
    collapse onto a handful of codes without it.
    """

    pca_dim: int | None
    dim_: int | None = None
    pca_mean_: np.ndarray | None = None
    pca_axes_: np.ndarray | None = None

    def _fit_projection(self, x: np.ndarray) -> np.ndarray:
        """Fit the projection on ``x`` and return the projected copy."""
        self.dim_ = int(x.shape[1])
        self.pca_mean_ = self.pca_axes_ = None
        if self.pca_dim is not None and self.pca_dim < x.shape[1]:
            self.pca_mean_, self.pca_axes_ = fit_pca(x, self.pca_dim)
        return self._project(x)

    def _project(self, x: np.ndarray) -> np.ndarray:
        """A projected copy of ``x`` (a plain copy without PCA), after checking its dimension."""
        if self.dim_ is not None and x.shape[1] != self.dim_:
            raise ValueError(
                f"features have dim {x.shape[1]} but this {type(self).__name__} was fitted on dim {self.dim_}."
            )
        if self.pca_axes_ is None:
            return x.copy()
        out = np.empty((len(x), self.pca_axes_.shape[0]), dtype=np.float32)
        for start in range(0, len(x), CHUNK_ROWS):  # chunks: no centred copy of the whole matrix
            out[start : start + CHUNK_ROWS] = (x[start : start + CHUNK_ROWS] - self.pca_mean_) @ self.pca_axes_.T
        return out

    def _unproject(self, z: np.ndarray) -> np.ndarray:
        """Map points of the projected space back to the features' space (a float32 copy without PCA)."""
        out = np.asarray(z, dtype=np.float32)
        if self.pca_axes_ is not None:  # the axes are orthonormal rows: back-projection is their transpose
            out = out @ self.pca_axes_ + self.pca_mean_
        return np.ascontiguousarray(out, dtype=np.float32)

    def _extra_config(self) -> dict:
        return {"dim": self.dim_}

    @classmethod
    def _extra_keys(cls) -> tuple[str, ...]:
        return ("dim",)

    def _projection_state(self) -> dict[str, np.ndarray]:
        return {} if self.pca_axes_ is None else {"pca.mean": self.pca_mean_, "pca.axes": self.pca_axes_}

    def _load_projection(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        self.pca_mean_ = tensors.get("pca.mean")
        self.pca_axes_ = tensors.get("pca.axes")
        self.dim_ = config.get("dim")


class RQKMeans(PCAProjection, ItemIDScheme):
    """Residual k-means semantic IDs (RQ-KMeans; no network to train).

    Level ``l`` runs k-means (faiss, from a k-means++ start) on the residuals left by levels ``0..l-1``; an item's
    code at level ``l`` is its nearest centroid. ``encode`` gives new items codes from the same centroids.

    Args:
        n_levels: number of residual levels (without the collision level).
        codebook_size: codes per level (an int, or one per level).
        n_iter: k-means iterations per level.
        seed: seed of the k-means++ starts and faiss; same seed and input give the same codes.
        add_collision_level: ``True`` (TIGER; every ID gets the extra level), ``None``/``"auto"`` (only when tuples
            collide) or ``False`` (never; fitting raises if tuples collide).
        balanced: assign the catalogue's items to equal-size clusters at every level (``balanced_assignment``,
            refined for ``balanced_iters`` rounds of re-centring). Spreads items evenly over codes, which cuts
            collisions; new items (``encode``) still take their nearest centroid.
        balanced_iters: re-centring rounds of balanced k-means.
        pca_dim: project features on their top principal axes first. On raw sentence embeddings (384-d, most energy
            in a few directions) deeper levels collapse onto a handful of codes; 32 axes keep every level busy.
        n_redo: k-means runs per level from different k-means++ starts (the best is kept).
        max_points_per_centroid: faiss subsamples to this many points per centroid when training.
        verbose: print faiss's progress.

    Example:

    ```python
    >>> import numpy as np
    >>> from hf_genrec import RQKMeans
    >>> features = np.random.default_rng(0).normal(size=(100, 16)).astype("float32")
    >>> ids = RQKMeans(n_levels=2, codebook_size=4, pca_dim=None).fit(features, [str(i) for i in range(100)])
    >>> ids.codes.shape, ids.has_collision_level  # 2 levels of 4 codes, then one numbering shared tuples
    ((100, 3), True)
    ```
    """

    scheme = "rqkmeans"
    _config_keys = (
        "n_levels",
        "codebook_size",
        "n_iter",
        "seed",
        "add_collision_level",
        "balanced",
        "balanced_iters",
        "pca_dim",
        "n_redo",
        "max_points_per_centroid",
    )

    def __init__(
        self,
        n_levels: int = 3,
        codebook_size: int | list[int] = 256,
        n_iter: int = 20,
        seed: int = 0,
        add_collision_level: bool | str | None = True,
        balanced: bool = False,
        balanced_iters: int = 5,
        pca_dim: int | None = 32,
        n_redo: int = 1,
        max_points_per_centroid: int = 256,
        verbose: bool = False,
    ):
        self.codebook_size = check_codebook_sizes(codebook_size, n_levels)
        self.n_levels = int(n_levels)
        self.n_iter = int(n_iter)
        self.seed = int(seed)
        self.add_collision_level = check_collision_option(add_collision_level)
        self.balanced = bool(balanced)
        self.balanced_iters = int(balanced_iters)
        if pca_dim is not None and (isinstance(pca_dim, bool) or int(pca_dim) < 1):
            raise ValueError(f"pca_dim must be a positive int or None (no projection), got {pca_dim!r}.")
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.n_redo = int(n_redo)
        self.max_points_per_centroid = int(max_points_per_centroid)
        self.verbose = bool(verbose)
        self.centroids_: list[np.ndarray] | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return self.codebook_size

    @property
    def dim(self) -> int | None:
        """Dimension of the features the scheme was fitted on."""
        return self.dim_

    def fit(self, features, item_ids) -> SemanticIDs:
        """Learn the centroids on ``features`` [n_items, dim] and return every item's semantic IDs."""
        start = time.perf_counter()
        x = check_features(features)
        item_ids = check_item_ids(item_ids, len(x))
        check_enough_items(len(x), self.codebook_sizes)
        check_distinct(x, self.codebook_sizes)
        residual = self._fit_projection(x)
        energy = float((residual.astype(np.float64) ** 2).sum(axis=1).mean())
        centroids, codes, residual_mse = [], [], []
        levels = progress_bar(self.codebook_sizes, desc="RQ-KMeans", unit="level")
        for level, size in enumerate(levels):
            level_centroids = train_kmeans(
                residual,
                size,
                n_iter=self.n_iter,
                seed=self.seed + 1000 * level,
                n_redo=self.n_redo,
                max_points_per_centroid=self.max_points_per_centroid,
                verbose=self.verbose,
            )
            if self.balanced:
                for _ in range(max(1, self.balanced_iters)):
                    level_codes = balanced_assignment(residual, level_centroids)
                    sums = np.zeros_like(level_centroids, dtype=np.float64)
                    np.add.at(sums, level_codes, residual)
                    counts = np.bincount(level_codes, minlength=size)[:, None]
                    level_centroids = np.where(counts > 0, sums / np.maximum(counts, 1), level_centroids)
                    level_centroids = np.ascontiguousarray(level_centroids, dtype=np.float32)
                level_codes = balanced_assignment(residual, level_centroids)
            else:
                level_codes = nearest_centroid(residual, level_centroids)
            residual -= level_centroids[level_codes]
            centroids.append(level_centroids)
            codes.append(level_codes)
            residual_mse.append(float((residual.astype(np.float64) ** 2).sum(axis=1).mean()))
            logger.info("RQKMeans level %d: %d codes, residual energy %.4f", level, size, residual_mse[-1])
        self.centroids_ = centroids
        return build_semantic_ids(
            np.stack(codes, axis=1),
            item_ids,
            scheme=self.scheme,
            codebook_sizes=self.codebook_sizes,
            add_collision_level=self.add_collision_level,
            extra_diagnostics={
                "fit_seconds": time.perf_counter() - start,
                "quantizer": {
                    "scheme": self.scheme,
                    "balanced": self.balanced,
                    "pca_dim": None if self.pca_axes_ is None else self.pca_dim,
                    "feature_energy": energy,
                    "residual_energy_per_level": residual_mse,
                },
            },
        )

    def encode(self, features) -> np.ndarray:
        """Codes ``int64 [n, n_levels]`` (without the collision level) of items given their features."""
        self._require_fitted()
        residual = self._project(check_features(features))
        codes = []
        for level_centroids in self.centroids_:
            level_codes = nearest_centroid(residual, level_centroids)
            residual -= level_centroids[level_codes]
            codes.append(level_codes)
        return np.stack(codes, axis=1)

    def decode(self, codes) -> np.ndarray:
        """The features ``float32 [n, dim]`` that ``codes`` (int ``[n, n_levels]``, no collision level) stand for:
        the sum of their centroids, mapped back from the PCA space when there is one."""
        self._require_fitted()
        codes = check_codes(codes, [len(c) for c in self.centroids_])
        return self._unproject(sum(c[codes[:, level]] for level, c in enumerate(self.centroids_)))

    # ------------------------------------------------------------------ files
    def _state(self) -> dict[str, np.ndarray]:
        if self.centroids_ is None:
            return {}
        state = {f"centroids.{level}": c for level, c in enumerate(self.centroids_)}
        return {**state, **self._projection_state()}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        self.centroids_ = [
            np.ascontiguousarray(tensors[f"centroids.{level}"], dtype=np.float32) for level in range(self.n_levels)
        ]
        self._load_projection(tensors, config)
