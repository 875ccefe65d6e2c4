"""Collaborative item features: PPMI of windowed co-occurrence in the training sequences, factorised by SVD."""

import inspect
import re

import numpy as np
import pytest
import torch
from datasets import Dataset

from hf_genrec.features import collaborative
from hf_genrec.features import item_features as item_features_module
from hf_genrec.features.collaborative import (
    collaborative_features,
    cooccurrence_pairs,
    fold_in_features,
    sasrec_features,
)
from hf_genrec.features.item_features import CONTENT_AXES, build_item_features
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel
from hf_genrec.training.sasrec import train_sasrec_for_features


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


def test_sasrec_features_place_items_that_follow_each_other_close():
    sequences, item_ids = two_communities()
    model = train_sasrec_for_features(
        sequences, item_ids, dim=8, epochs=8, max_length=6, batch_size=32, learning_rate=1e-2
    )
    vectors = sasrec_features(model, item_ids, sequences)
    assert vectors.shape == (21, 8) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors[:20], axis=1), 1.0, atol=1e-5)
    assert not vectors[20].any()  # z is in no sequence: its embedding never trained
    similarity = vectors[:20] @ vectors[:20].T
    same = np.equal.outer(np.arange(20) < 10, np.arange(20) < 10)
    off_diagonal = ~np.eye(20, dtype=bool)
    assert similarity[same & off_diagonal].mean() > similarity[~same].mean() + 0.5
    # the seed fixes initialisation, dropout and batch order
    items = Dataset.from_dict({"item_id": item_ids})
    once = train_sasrec_for_features(sequences, item_ids, dim=8, epochs=1)
    again = train_sasrec_for_features(sequences, item_ids, dim=8, epochs=1)
    np.testing.assert_array_equal(
        build_item_features(items, method="sasrec", sequences=sequences, sasrec_model=again),
        sasrec_features(once, item_ids, sequences),
    )


def test_sasrec_features_only_read_the_given_model():
    _, item_ids = two_communities()
    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(num_items=21, max_positions=6, hidden_size=4, num_layers=1))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    vectors = sasrec_features(model, item_ids)  # no sequences: every row is kept
    weights = model.item_embeddings.weight[1:].detach().numpy()
    np.testing.assert_allclose(vectors, weights / np.linalg.norm(weights, axis=1, keepdims=True), rtol=1e-6)
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    # features/ trains nothing: it reaches only the stages before it (no models/, no training/), in functions too
    source = inspect.getsource(collaborative) + inspect.getsource(item_features_module)
    assert set(re.findall(r"from \.\.(\w+)", source)) <= {"utils", "data"}


def test_sasrec_features_refuse_a_missing_or_mismatched_model():
    sequences, item_ids = two_communities()
    items = Dataset.from_dict({"item_id": item_ids})
    with pytest.raises(ValueError, match="pass sasrec_model=.*train_sasrec_for_features"):
        build_item_features(items, method="sasrec", sequences=sequences)
    with pytest.raises(TypeError, match="reads the item embeddings of a trained SASRecModel, got ndarray"):
        sasrec_features(np.zeros((21, 8)), item_ids)
    small = SASRecModel(SASRecConfig(num_items=5, max_positions=6, hidden_size=4, num_layers=1))
    with pytest.raises(ValueError, match="scores 5 items but item_ids has 21"):
        sasrec_features(small, item_ids)


@pytest.mark.parametrize(
    "sequences, kwargs, message",
    [
        ([["a", "q"]], {}, "Sequence 0 holds item 'q'"),
        ([["a"], ["b"]], {}, "No sequence has two items"),
        ([["a", "b"]], {"epochs": 0}, "must be at least 1"),
    ],
)
def test_train_sasrec_for_features_bad_input(sequences, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_sasrec_for_features(sequences, ["a", "b", "c"], dim=2, **kwargs)


def test_fold_in_places_a_new_item_at_the_weighted_mean_of_its_neighbours():
    known = ["a", "b", "c"]
    features = np.array([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0]], dtype=np.float32)
    # "n" sits 1 step from "a" and 2 steps from "b" (weights 1 and 1/2); "c" is 3 steps away, outside window 2
    out = fold_in_features(["n"], [["c", "b", "a", "n"]], known, features, window=2)
    mean = (1.0 * features[0] + 0.5 * features[1]) / 1.5
    np.testing.assert_allclose(out[0] / np.linalg.norm(out[0]), mean / np.linalg.norm(mean), rtol=1e-6)
    # scaled to its neighbours' mean length, not shrunk by averaging two directions
    np.testing.assert_allclose(np.linalg.norm(out[0]), 2.0, rtol=1e-6)
    # a new item beside another new one only takes the known neighbours
    out = fold_in_features(["n", "m"], [["a", "n", "m", "b"]], known, features, window=1)
    np.testing.assert_allclose(out, features[:2])
    with pytest.raises(ValueError, match="co-occur with no catalogue item.*'m'"):
        fold_in_features(["n", "m"], [["a", "n"], ["m"]], known, features, window=1)


@pytest.mark.parametrize(
    "new, sequences, message",
    [
        (["a"], [["a", "b"]], "already known"),
        (["n"], [["n", "z"]], "not in item_ids"),
        (["n"], [["n"]], "co-occur with no catalogue item"),
    ],
)
def test_fold_in_bad_input(new, sequences, message):
    with pytest.raises(ValueError, match=message):
        fold_in_features(new, sequences, ["a", "b"], np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="known_features must be"):
        fold_in_features(["n"], [["n", "a"]], ["a", "b"], np.eye(3, dtype=np.float32))
