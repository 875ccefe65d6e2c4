"""Collaborative item features: PPMI of windowed co-occurrence in the training sequences, factorised by SVD."""

import numpy as np
import pytest
from datasets import Dataset

from hf_genrec.collaborative import collaborative_features, cooccurrence_pairs
from hf_genrec.features import CONTENT_AXES, build_item_features


def two_communities(n_users: int = 60, seed: int = 0) -> tuple[list[list[str]], list[str]]:
    """Users of community A only use items a0..a9, users of B only b0..b9; item z is in the table but never used."""
    rng = np.random.default_rng(seed)
    sequences = []
    for user in range(n_users):
        prefix = "a" if user % 2 else "b"
        sequences.append([f"{prefix}{k}" for k in rng.integers(0, 10, size=6)])
    return sequences, [f"a{k}" for k in range(10)] + [f"b{k}" for k in range(10)] + ["z"]


def test_pairs_are_windowed_symmetric_and_weighted_by_steps():
    rows, cols, weights = cooccurrence_pairs([["x", "y", "w"], ["w"]], ["x", "y", "w"], window=2)
    pairs = {(int(r), int(c)): float(w) for r, c, w in zip(rows, cols, weights)}
    assert pairs == {(0, 1): 1.0, (1, 0): 1.0, (1, 2): 1.0, (2, 1): 1.0, (0, 2): 0.5, (2, 0): 0.5}
    # a window of 1 drops the pair two steps apart, and no pair crosses from one user to the next
    rows, cols, _ = cooccurrence_pairs([["x", "y"], ["w", "x"]], ["x", "y", "w"], window=1)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (0, 2), (1, 0), (2, 0)]


def test_items_used_together_get_close_vectors():
    sequences, item_ids = two_communities()
    vectors = collaborative_features(sequences, item_ids, dim=2)
    assert vectors.shape == (21, 2) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:20], axis=1), 1.0, atol=1e-5)
    assert not vectors[20].any()  # z co-occurs with nothing
    similarity = vectors[:20] @ vectors[:20].T
    same = np.equal.outer(np.arange(20) < 10, np.arange(20) < 10)
    off_diagonal = ~np.eye(20, dtype=bool)
    assert similarity[same & off_diagonal].min() > 0.5 > 0.1 > np.abs(similarity[~same]).max()


def test_features_are_reproducible():
    sequences, item_ids = two_communities()
    first = collaborative_features(sequences, item_ids, dim=4, seed=3)
    np.testing.assert_array_equal(first, collaborative_features(sequences, item_ids, dim=4, seed=3))


@pytest.mark.parametrize(
    "sequences, item_ids, kwargs, message",
    [
        ([["a", "q"]], ["a", "b", "c"], {"dim": 1}, "Sequence 0 holds item 'q'"),
        ([["a", "b"]], ["a", "b", "c"], {"dim": 3}, "dim=3 must be between 1 and n_items - 1 = 2"),
        ([["a", "b"]], ["a", "b", "c"], {"dim": 1, "window": 0}, "window=0"),
        ([["a"], ["b"]], ["a", "b", "c"], {"dim": 1}, "No two items co-occur"),
        ([["a", "b"]], ["a", "b", "a"], {"dim": 1}, "holds an item twice"),
    ],
)
def test_bad_input(sequences, item_ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        collaborative_features(sequences, item_ids, **kwargs)


def test_build_item_features_collaborative_and_content_beside_it():
    sequences, item_ids = two_communities()
    attributes = [["x", "y"] if item < "b" else ["y", "w"] for item in item_ids]
    items = Dataset.from_dict({"item_id": item_ids, "title": [None] * 21, "attributes": attributes})
    alone = build_item_features(items, method="collaborative", sequences=sequences, collaborative_dim=4)
    np.testing.assert_array_equal(alone, collaborative_features(sequences, item_ids, dim=4))
    both = build_item_features(items, method="content+collaborative", sequences=sequences, collaborative_dim=4)
    content_axes = min(CONTENT_AXES, 3)  # the attribute vocabulary has 3 tokens
    assert both.shape == (21, content_axes + 4)
    np.testing.assert_array_equal(both[:, content_axes:], alone)
    # the content part is centred and unit length, so an unused item still has a usable vector
    np.testing.assert_allclose(np.linalg.norm(both[:, :content_axes], axis=1), 1.0, atol=1e-5)
