"""ContentMap: new items' ID features from the catalogue items whose content is most alike."""

import numpy as np
import pytest

from hf_genrec.content_map import CONTENT_MAP_NAME, ContentMap


def _clustered(n_clusters: int = 6, per_cluster: int = 20, d_in: int = 16, d_out: int = 4, seed: int = 0):
    """Content near one of a few directions; each cluster's items share a target vector (plus noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d_in))
    cluster_targets = rng.normal(size=(n_clusters, d_out))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    content = centres[labels] + 0.1 * rng.normal(size=(len(labels), d_in))
    targets = cluster_targets[labels] + 0.01 * rng.normal(size=(len(labels), d_out))
    return content, targets, centres, cluster_targets


def test_prediction_is_the_similarity_weighted_mean_of_the_nearest_items():
    content = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    targets = np.array([[1.0, 0.0], [0.0, 1.0], [5.0, 5.0], [9.0, 9.0]])
    content_map = ContentMap(content, targets, n_neighbors=2)
    query = np.array([[3.0, 1.0]])  # length does not matter, only direction
    unit = query / np.linalg.norm(query)
    sims = (content / np.linalg.norm(content, axis=1, keepdims=True)) @ unit[0]
    nearest = np.argsort(-sims)[:2]
    assert set(nearest) == {0, 1}
    expected = (sims[nearest, None] * targets[nearest]).sum(0) / sims[nearest].sum()
    np.testing.assert_allclose(content_map.predict(query)[0], expected, rtol=1e-6)
    # one neighbour: the nearest item's target exactly
    np.testing.assert_allclose(ContentMap(content, targets, n_neighbors=1).predict(query)[0], targets[0])
    # nothing similar (all neighbours at negative cosine): the plain mean of the nearest, not a division by zero
    far = ContentMap(content[:2], targets[:2], n_neighbors=2).predict(np.array([[-1.0, -1.0]]))
    np.testing.assert_allclose(far[0], targets[:2].mean(0))


def test_new_items_land_on_their_clusters_targets_and_the_fit_reports_it():
    content, targets, centres, cluster_targets = _clustered()
    content_map = ContentMap.fit(content, targets)
    assert content_map.input_dim == 16 and content_map.output_dim == 4 and len(content_map) == 120
    predicted = content_map.predict(centres + 0.1 * np.random.default_rng(5).normal(size=centres.shape))
    np.testing.assert_allclose(predicted, cluster_targets, atol=0.05)
    assert content_map.diagnostics["loo_cosine"] > 0.99
    # content that says nothing about the targets: the leave-one-out agreement falls to about nothing
    shuffled = ContentMap.fit(np.random.default_rng(2).normal(size=content.shape), targets)
    assert shuffled.diagnostics["loo_cosine"] < 0.5 < 0.99 < content_map.diagnostics["loo_cosine"]


def test_items_with_zero_targets_are_left_out():
    content, targets, centres, cluster_targets = _clustered()
    targets[:10] = 0.0  # collaborative vectors of items that co-occurred with nothing
    content_map = ContentMap.fit(content, targets, n_neighbors=3)
    assert content_map.diagnostics["items"] == 110 and len(content_map) == 110
    # the first cluster's new items still land on its (non-zero) target
    np.testing.assert_allclose(content_map.predict(centres[:1]), cluster_targets[:1], atol=0.05)


def test_save_and_load_round_trip(tmp_path):
    content, targets, centres, _ = _clustered()
    content_map = ContentMap.fit(content, targets, text_model="some/text-model", template="{title} by {brand}")
    content_map.save_pretrained(tmp_path)
    assert (tmp_path / CONTENT_MAP_NAME).is_file()
    loaded = ContentMap.from_pretrained(tmp_path)
    assert loaded.n_neighbors == content_map.n_neighbors and len(loaded) == len(content_map)
    assert (loaded.text_model, loaded.template) == ("some/text-model", "{title} by {brand}")
    assert loaded.diagnostics == content_map.diagnostics
    np.testing.assert_array_equal(loaded.targets, content_map.targets)
    # content is stored as float16 (only directions are compared): the same neighbours, nearly the same weights
    np.testing.assert_allclose(loaded.predict(centres), content_map.predict(centres), atol=1e-3)


def test_bad_input_gets_clear_errors(tmp_path):
    content, targets, _, _ = _clustered()
    content_map = ContentMap.fit(content, targets)
    with pytest.raises(ValueError, match="width 3 but the content map was fitted on width 16"):
        content_map.predict(content[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        content_map.predict(content[0])
    bad = content[:4].copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN/inf values in 1 rows \(first: \[2\]\)"):
        content_map.predict(bad)
    with pytest.raises(ValueError, match=r"all-zero rows \(1, first: \[0\]\)"):
        content_map.predict(np.zeros((1, 16)))
    with pytest.raises(ValueError, match="one per item"):
        ContentMap.fit(content, targets[:-1])
    with pytest.raises(ValueError, match="Only 3 items have non-zero target features"):
        ContentMap.fit(content[:3], targets[:3])
    with pytest.raises(ValueError, match="positive integer"):
        ContentMap(content, targets, n_neighbors=0)
    with pytest.raises(ValueError, match="own content arrays"):
        content_map.embed([{"title": "a lipstick"}])
    with pytest.raises(FileNotFoundError, match="no content map"):
        ContentMap.from_pretrained(tmp_path)
