"""Residual k-means (faiss): k-means on the features, then on what is left, level by level."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from ._io import (
    QUANTIZER_CONFIG_NAME,
    QUANTIZER_WEIGHTS_NAME,
    drop_unknown_keys,
    library_version,
    read_json,
    resolve_file,
    write_json,
)
from ._validation import (
    check_codebook_sizes,
    check_collision_option,
    check_enough_items,
    check_features,
    check_item_ids,
)
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


class RQKMeans:
    """Residual k-means semantic IDs (as in many TIGER re-implementations; no training of a network).

    Level ``l`` runs k-means (faiss, from a k-means++ start) on the residuals left by levels ``0..l-1``; an item's code at level ``l`` is its
    nearest centroid. ``encode`` gives new items codes from the same centroids.

    Args:
        n_levels: number of residual levels (without the collision level).
        codebook_size: codes per level (an int, or one per level).
        n_iter: k-means iterations per level.
        seed: seed of the k-means++ starts and faiss; same seed and input give the same codes.
        add_collision_level: ``True`` (TIGER; every ID gets the extra level), ``None``/``"auto"`` (only when tuples
            collide) or ``False`` (never; fitting raises if tuples collide).
        n_redo: k-means runs per level from different k-means++ starts (the best is kept).
        max_points_per_centroid: faiss subsamples to this many points per centroid when training.
        verbose: print faiss's progress.
    """

    scheme = "rqkmeans"

    def __init__(
        self,
        n_levels: int = 3,
        codebook_size: int | list[int] = 256,
        n_iter: int = 20,
        seed: int = 0,
        add_collision_level: bool | str | None = True,
        n_redo: int = 1,
        max_points_per_centroid: int = 256,
        verbose: bool = False,
    ):
        self.codebook_sizes = check_codebook_sizes(codebook_size, n_levels)
        self.n_levels = int(n_levels)
        self.n_iter = int(n_iter)
        self.seed = int(seed)
        self.add_collision_level = check_collision_option(add_collision_level)
        self.n_redo = int(n_redo)
        self.max_points_per_centroid = int(max_points_per_centroid)
        self.verbose = bool(verbose)
        self.centroids_: list[np.ndarray] | None = None

    def __repr__(self) -> str:
        return (
            f"RQKMeans(n_levels={self.n_levels}, codebook_size={self.codebook_sizes}, n_iter={self.n_iter}, "
            f"seed={self.seed}, fitted={self.centroids_ is not None})"
        )

    @property
    def dim(self) -> int | None:
        return None if self.centroids_ is None else int(self.centroids_[0].shape[1])

    def fit(self, features, item_ids) -> SemanticIDs:
        """Learn the centroids on ``features`` [n_items, dim] and return every item's semantic IDs."""
        start = time.perf_counter()
        x = check_features(features)
        item_ids = check_item_ids(item_ids, len(x))
        check_enough_items(len(x), self.codebook_sizes)
        residual = x.copy()
        energy = float((x.astype(np.float64) ** 2).sum(axis=1).mean())
        centroids, codes, residual_mse = [], [], []
        for level, size in enumerate(self.codebook_sizes):
            level_centroids = train_kmeans(
                residual,
                size,
                n_iter=self.n_iter,
                seed=self.seed + 1000 * level,
                n_redo=self.n_redo,
                max_points_per_centroid=self.max_points_per_centroid,
                verbose=self.verbose,
            )
            level_codes = nearest_centroid(residual, level_centroids)
            residual -= level_centroids[level_codes]
            centroids.append(level_centroids)
            codes.append(level_codes)
            residual_mse.append(float((residual.astype(np.float64) ** 2).sum(axis=1).mean()))
            logger.info("RQKMeans level %d: %d codes, residual energy %.4f", level, size, residual_mse[-1])
        self.centroids_ = centroids
        fit_seconds = time.perf_counter() - start
        return build_semantic_ids(
            np.stack(codes, axis=1),
            item_ids,
            scheme=self.scheme,
            codebook_sizes=self.codebook_sizes,
            add_collision_level=self.add_collision_level,
            extra_diagnostics={
                "fit_seconds": fit_seconds,
                "quantizer": {
                    "scheme": self.scheme,
                    "feature_energy": energy,
                    "residual_energy_per_level": residual_mse,
                },
            },
        )

    def encode(self, features) -> np.ndarray:
        """Codes ``int64 [n, n_levels]`` (without the collision level) of items given their features."""
        if self.centroids_ is None:
            raise ValueError("This RQKMeans is not fitted; call fit(features, item_ids) or from_pretrained() first.")
        x = check_features(features)
        if x.shape[1] != self.dim:
            raise ValueError(f"features have dim {x.shape[1]} but this RQKMeans was fitted on dim {self.dim}.")
        residual = x.copy()
        codes = []
        for level_centroids in self.centroids_:
            level_codes = nearest_centroid(residual, level_centroids)
            residual -= level_centroids[level_codes]
            codes.append(level_codes)
        return np.stack(codes, axis=1)

    # ------------------------------------------------------------------ files
    def _config(self) -> dict:
        return {
            "scheme": self.scheme,
            "hf_genrec_version": library_version(),
            "n_levels": self.n_levels,
            "codebook_size": self.codebook_sizes,
            "n_iter": self.n_iter,
            "seed": self.seed,
            "add_collision_level": self.add_collision_level,
            "n_redo": self.n_redo,
            "max_points_per_centroid": self.max_points_per_centroid,
            "dim": self.dim,
        }

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``quantizer_config.json`` and ``quantizer.safetensors`` (the centroids of each level)."""
        from safetensors.numpy import save_file

        if self.centroids_ is None:
            raise ValueError("Nothing to save: this RQKMeans is not fitted yet.")
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / QUANTIZER_CONFIG_NAME, self._config())
        tensors = {f"centroids.{level}": c for level, c in enumerate(self.centroids_)}
        save_file(tensors, str(directory / QUANTIZER_WEIGHTS_NAME), metadata={"scheme": self.scheme})

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, **hub_kwargs) -> RQKMeans:
        """Load what :meth:`save_pretrained` wrote (local folder or Hub repo id; ``subfolder=``, ``revision=``...)."""
        from safetensors.numpy import load_file

        config_path = resolve_file(path_or_repo_id, QUANTIZER_CONFIG_NAME, **hub_kwargs)
        config = read_json(config_path)
        if config.get("scheme") != cls.scheme:
            raise ValueError(
                f"{config_path} holds a {config.get('scheme')!r} quantizer, not {cls.scheme!r}; "
                "use hf_genrec.semantic_ids.load_quantizer() to load any scheme."
            )
        known = {"n_levels", "codebook_size", "n_iter", "seed", "add_collision_level", "n_redo"}
        known |= {"max_points_per_centroid"}
        kwargs = drop_unknown_keys(config, known | {"scheme", "hf_genrec_version", "dim"}, str(config_path))
        quantizer = cls(**{key: value for key, value in kwargs.items() if key in known})
        tensors = load_file(str(resolve_file(path_or_repo_id, QUANTIZER_WEIGHTS_NAME, **hub_kwargs)))
        quantizer.centroids_ = [
            np.ascontiguousarray(tensors[f"centroids.{level}"], dtype=np.float32)
            for level in range(quantizer.n_levels)
        ]
        return quantizer
