"""Hierarchical k-means IDs (DSI's semantically structured identifiers): cluster, then cluster inside each cluster."""

from __future__ import annotations

import logging
import time

import numpy as np

from ..utils.progress import progress_bar
from ._validation import check_codebook_sizes, check_codes, check_enough_items, check_features, check_item_ids
from .base import ItemIDScheme
from .ids import SemanticIDs, build_semantic_ids
from .rqkmeans import PCAProjection, check_distinct, nearest_centroid, train_kmeans

logger = logging.getLogger(__name__)


class HierarchicalKMeans(PCAProjection, ItemIDScheme):
    """Recursive k-means (Tay et al., 2022, DSI): level 0 clusters the catalogue, level 1 clusters each level-0
    cluster on its own, and so on; the last level numbers the items inside their leaf cluster.

    Unlike residual k-means, a child cluster is only meaningful under its parent (code 3 at level 1 means different
    things under different level-0 codes), so the tree is the codebook.

    Args:
        n_levels: cluster levels (the item-in-leaf level comes on top).
        codebook_size: clusters per node at each level (an int, or one per level). A node with fewer items than
            that is split into as many clusters as it has distinct items.
        n_iter: k-means iterations per node.
        pca_dim: project features on their top principal axes first (``None``: no projection).
        seed: seed of the k-means starts.
    """

    scheme = "hierarchical"
    _config_keys = ("n_levels", "codebook_size", "n_iter", "pca_dim", "seed")

    def __init__(
        self,
        n_levels: int = 2,
        codebook_size: int | list[int] = 32,
        n_iter: int = 20,
        pca_dim: int | None = 32,
        seed: int = 0,
    ):
        self.codebook_size = check_codebook_sizes(codebook_size, n_levels)
        self.n_levels = int(n_levels)
        self.n_iter = int(n_iter)
        self.pca_dim = None if pca_dim is None else int(pca_dim)
        self.seed = int(seed)
        #: (level, parent prefix) -> centroids of that node's children, flattened into arrays for saving
        self.nodes_: dict[tuple[int, ...], np.ndarray] | None = None

    @property
    def codebook_sizes(self) -> list[int]:
        return self.codebook_size

    def fit(self, features, item_ids) -> SemanticIDs:
        """Build the cluster tree on ``features`` [n_items, dim]; every item's ID is its path plus its leaf index."""
        start = time.perf_counter()
        x = check_features(features)
        item_ids = check_item_ids(item_ids, len(x))
        check_enough_items(len(x), self.codebook_sizes[:1])
        check_distinct(x, self.codebook_sizes[:1])
        z = self._fit_projection(x)
        codes = np.zeros((len(z), self.n_levels), dtype=np.int64)
        nodes: dict[tuple[int, ...], np.ndarray] = {}
        groups = {(): np.arange(len(z))}
        for level, size in enumerate(progress_bar(self.codebook_sizes, desc="hierarchical k-means", unit="level")):
            next_groups = {}
            for prefix, rows in groups.items():
                k = min(size, len(np.unique(z[rows], axis=0)))
                if k <= 1:  # one distinct point left: nothing to split
                    centroids = z[rows[:1]].copy()
                    labels = np.zeros(len(rows), dtype=np.int64)
                else:
                    seed = self.seed + 7919 * level + len(nodes)
                    centroids = train_kmeans(z[rows], k, n_iter=self.n_iter, seed=seed)
                    labels = nearest_centroid(z[rows], centroids)
                nodes[prefix] = centroids
                codes[rows, level] = labels
                for label in np.unique(labels):
                    next_groups[(*prefix, int(label))] = rows[labels == label]
            groups = next_groups
            logger.info("Hierarchical k-means level %d: %d nodes", level, len(groups))
        self.nodes_ = nodes
        return build_semantic_ids(
            codes,
            item_ids,
            scheme=self.scheme,
            codebook_sizes=self.codebook_sizes,
            add_collision_level=True,  # the item's index inside its leaf cluster
            extra_diagnostics={
                "fit_seconds": time.perf_counter() - start,
                "quantizer": {"scheme": self.scheme, "nodes": len(nodes), "leaves": len(groups)},
            },
        )

    def encode(self, features) -> np.ndarray:
        """Path ``int64 [n, n_levels]`` of new items down the tree (nearest child at each node; no leaf index)."""
        self._require_fitted()
        z = self._project(check_features(features))
        codes = np.zeros((len(z), self.n_levels), dtype=np.int64)
        for i, row in enumerate(z):
            prefix: tuple[int, ...] = ()
            for level in range(self.n_levels):
                centroids = self.nodes_.get(prefix)
                if centroids is None:  # the parent had a single point; its child is code 0
                    code = 0
                else:
                    code = int(nearest_centroid(row[None, :], centroids)[0])
                codes[i, level] = code
                prefix = (*prefix, code)
        return codes

    def decode(self, codes) -> np.ndarray:
        """The features ``float32 [n, dim]`` that ``codes`` (int ``[n, n_levels]``, no leaf index) stand for: the
        centroid of the deepest tree node on their path, mapped back from the PCA space when there is one."""
        self._require_fitted()
        codes = check_codes(codes, self.codebook_sizes)
        out = np.empty((len(codes), next(iter(self.nodes_.values())).shape[1]), dtype=np.float32)
        for i, row in enumerate(codes.tolist()):
            centroid = None
            for level, code in enumerate(row):
                centroids = self.nodes_.get(tuple(row[:level]))
                if centroids is None:  # below a cluster no item reached: encode() gives code 0 there
                    if code != 0:
                        raise ValueError(
                            f"codes {row} are not a path of the tree: the node {row[:level]} has no children, so "
                            f"its code must be 0, got {code}."
                        )
                    continue
                if code >= len(centroids):
                    raise ValueError(
                        f"codes {row} are not a path of the tree: the node {row[:level]} has {len(centroids)} "
                        f"children (codes 0..{len(centroids) - 1}), got {code}."
                    )
                centroid = centroids[code]
            out[i] = centroid
        return self._unproject(out)

    # ------------------------------------------------------------------ files
    def _state(self) -> dict[str, np.ndarray]:
        if self.nodes_ is None:
            return {}
        prefixes = sorted(self.nodes_)
        width = self.n_levels
        # one table of node prefixes (-1 padded) and one stacked centroid array with offsets: safetensors has no dicts
        table = np.full((len(prefixes), width), -1, dtype=np.int64)
        offsets = np.zeros(len(prefixes) + 1, dtype=np.int64)
        for i, prefix in enumerate(prefixes):
            table[i, : len(prefix)] = prefix
            offsets[i + 1] = offsets[i] + len(self.nodes_[prefix])
        state = {
            "node_prefixes": table,
            "node_depths": np.asarray([len(p) for p in prefixes], dtype=np.int64),
            "node_offsets": offsets,
            "centroids": np.concatenate([self.nodes_[p] for p in prefixes]).astype(np.float32),
        }
        return {**state, **self._projection_state()}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        offsets = tensors["node_offsets"]
        self.nodes_ = {
            tuple(int(c) for c in tensors["node_prefixes"][i, :depth]): tensors["centroids"][
                offsets[i] : offsets[i + 1]
            ]
            for i, depth in enumerate(tensors["node_depths"].tolist())
        }
        self._load_projection(tensors, config)
