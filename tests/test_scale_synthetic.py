"""benchmarks/synthetic.py: the scale benchmark's synthetic catalogues follow their Zipf law, and their planted
item-to-item structure is there to be learnt (successor counts rank the next item far above popularity)."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import synthetic  # noqa: E402  (benchmarks/synthetic.py)


def test_popularity_follows_the_zipf_law():
    catalogue = synthetic.make_catalogue(5000, zipf_exponent=1.0, seed=1)
    first_items = np.concatenate([chunk[:, 0] for chunk in synthetic.generate_sequences(catalogue, 100_000, 2)])
    counts = np.sort(np.bincount(first_items, minlength=5000))[::-1][:200]
    slope = np.polyfit(np.log(np.arange(1, 201)), np.log(counts), 1)[0]
    assert -1.15 < slope < -0.85, slope
    assert np.isclose(catalogue.popularity().sum(), 1.0)


def test_planted_successors_are_recoverable_far_above_popularity():
    catalogue = synthetic.make_catalogue(1000, cluster_size=20, seed=0)
    users = np.concatenate(list(synthetic.generate_sequences(catalogue, 3000, 12, seed=0, chunk_users=1000)))
    train, test = users[:2500], users[2500:]
    successors: dict[int, Counter] = {}
    for row in train:
        for a, b in zip(row[:-1], row[1:]):
            successors.setdefault(int(a), Counter())[int(b)] += 1
    popular = [item for item, _ in Counter(train.ravel().tolist()).most_common(10)]
    by_successors = np.mean([row[-1] in dict(successors.get(int(row[-2]), Counter()).most_common(10)) for row in test])
    by_popularity = np.mean([row[-1] in popular for row in test])
    assert by_successors > 0.6 and by_successors > 3 * by_popularity, (by_successors, by_popularity)
    # the planted successor stays in its cluster, and a ring closes on itself
    assert catalogue.successor(np.array([0, 19, 20, 999])).tolist() == [1, 0, 21, 980]


def test_generation_is_seeded_and_features_reflect_clusters():
    catalogue = synthetic.make_catalogue(300, cluster_size=10, seed=0)
    a = np.concatenate(list(synthetic.generate_sequences(catalogue, 50, 5, seed=3)))
    b = np.concatenate(list(synthetic.generate_sequences(catalogue, 50, 5, seed=3)))
    assert (a == b).all() and a.shape == (50, 5) and a.max() < 300
    features = synthetic.item_features(catalogue, dim=16)
    same = np.linalg.norm(features[0] - features[1])
    other = np.linalg.norm(features[0] - features[10])
    assert features.dtype == np.float32 and same < other / 3, (same, other)
    with pytest.raises(ValueError, match="p_successor"):
        next(synthetic.generate_sequences(catalogue, 5, p_successor=0.9, p_cluster=0.2))
