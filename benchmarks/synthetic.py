"""Synthetic catalogues and interactions for `scale_curves.py`: a Zipf popularity law and planted item-to-item
structure, generated with numpy in chunks from a seed, at any catalogue size (10 million items included).

- Popularity: item ``i`` has popularity rank ``rank[i]`` (a random permutation) and probability proportional to
  ``(rank + 1) ** -zipf_exponent``.
- Structure: items sit in clusters of ``cluster_size`` consecutive rows, each cluster a ring: item ``i``'s successor is
  the next item of its cluster's ring. A user starts at a popular item; each next item is the successor of the current
  one with probability ``p_successor``, another item of the same cluster (uniformly) with ``p_cluster``, and otherwise
  a fresh popularity draw (which leaves the cluster). Recall@10 far above popularity's is then reachable: the next
  item is the successor of the last one in ``p_successor`` of the cases.
- Item features (what the semantic IDs cluster): the cluster's centroid, plus the item's place on its ring along two
  directions of the cluster's own, plus noise; items of one cluster, and neighbours on a ring, are close.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

#: rows generated at once (users, or items for the features): bounds the memory a chunk takes
CHUNK = 65_536


@dataclass
class Catalogue:
    """A synthetic catalogue: its size, clusters and popularity law (``cdf`` over item rows)."""

    n_items: int
    cluster_size: int
    zipf_exponent: float
    cdf: np.ndarray  # float64 [n_items], cumulative popularity

    @property
    def n_clusters(self) -> int:
        return -(-self.n_items // self.cluster_size)

    def popularity(self) -> np.ndarray:
        """Each item's probability under the popularity law."""
        return np.diff(self.cdf, prepend=0.0)

    def cluster_of(self, items: np.ndarray) -> np.ndarray:
        return items // self.cluster_size

    def cluster_bounds(self, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First row and size of each item's cluster (the last cluster may be smaller)."""
        first = self.cluster_of(items) * self.cluster_size
        return first, np.minimum(self.cluster_size, self.n_items - first)

    def successor(self, items: np.ndarray) -> np.ndarray:
        """The planted next item of each item: the next one on its cluster's ring."""
        first, size = self.cluster_bounds(items)
        return first + (items - first + 1) % size

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` items drawn from the popularity law."""
        return np.minimum(np.searchsorted(self.cdf, rng.random(n) * self.cdf[-1], side="right"), self.n_items - 1)


def make_catalogue(n_items: int, zipf_exponent: float = 1.0, cluster_size: int = 50, seed: int = 0) -> Catalogue:
    """A catalogue of ``n_items`` items with a Zipf popularity law of ``zipf_exponent`` over a random ranking."""
    if n_items < 2 or cluster_size < 2:
        raise ValueError(f"n_items and cluster_size must be at least 2, got {n_items} and {cluster_size}.")
    rank = np.random.default_rng(seed).permutation(n_items)
    weights = (rank + 1.0) ** -float(zipf_exponent)
    cdf = np.cumsum(weights)
    return Catalogue(n_items, cluster_size, float(zipf_exponent), cdf / cdf[-1])


def generate_sequences(
    catalogue: Catalogue,
    n_users: int,
    length: int = 20,
    p_successor: float = 0.6,
    p_cluster: float = 0.1,
    seed: int = 0,
    chunk_users: int = CHUNK,
) -> Iterator[np.ndarray]:
    """Users' item rows, ``length`` each, oldest first: ``int64 [users, length]`` chunks of ``chunk_users`` users.
    Chunk ``k`` draws from its own generator, seeded with ``(seed, k)``: a run is reproducible and any chunk can be
    regenerated alone."""
    if not 0 <= p_successor + p_cluster <= 1 or min(p_successor, p_cluster) < 0:
        raise ValueError(f"p_successor and p_cluster must be >= 0 with a sum <= 1, got {p_successor}, {p_cluster}.")
    for chunk, start in enumerate(range(0, n_users, chunk_users)):
        rng = np.random.default_rng([seed, chunk])
        users = min(chunk_users, n_users - start)
        out = np.empty((users, length), dtype=np.int64)
        out[:, 0] = catalogue.draw(rng, users)
        for t in range(1, length):
            current = out[:, t - 1]
            u = rng.random(users)
            first, size = catalogue.cluster_bounds(current)
            in_cluster = first + (rng.random(users) * size).astype(np.int64)
            step = np.where(u < p_successor, catalogue.successor(current), in_cluster)
            fresh = u >= p_successor + p_cluster
            step[fresh] = catalogue.draw(rng, int(fresh.sum()))
            out[:, t] = step
        yield out


def item_features(catalogue: Catalogue, dim: int = 32, seed: int = 0) -> np.ndarray:
    """float32 ``[n_items, dim]``: cluster centroid + place on the cluster's ring (two directions of its own) +
    noise, written chunk by chunk."""
    rng = np.random.default_rng([seed, 1])
    centroids = rng.standard_normal((catalogue.n_clusters, dim), dtype=np.float32)
    directions = rng.standard_normal((catalogue.n_clusters, 2, dim), dtype=np.float32) / np.sqrt(dim)
    out = np.empty((catalogue.n_items, dim), dtype=np.float32)
    for start in range(0, catalogue.n_items, CHUNK):
        items = np.arange(start, min(start + CHUNK, catalogue.n_items))
        cluster = catalogue.cluster_of(items)
        first, size = catalogue.cluster_bounds(items)
        angle = (2 * np.pi * (items - first) / size).astype(np.float32)
        ring = np.stack([np.cos(angle), np.sin(angle)], axis=1)[:, :, None]  # [n, 2, 1]
        out[items] = centroids[cluster] + 2.0 * (ring * directions[cluster]).sum(1)
        out[items] += 0.01 * rng.standard_normal((len(items), dim), dtype=np.float32)
    return out
