"""RQKMeans: residual k-means semantic IDs (faiss)."""

import json

import numpy as np
import pytest

from hf_genrec.semantic_ids import RQKMeans, SemanticIDs, add_collision_level, load_quantizer


def clustered(n_clusters=8, per_cluster=60, dim=16, noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 3
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    x = centers[labels] + noise * rng.normal(size=(len(labels), dim))
    return x.astype(np.float32), labels


@pytest.fixture(scope="module")
def data():
    x, labels = clustered()
    item_ids = [f"item{i}" for i in range(len(x))]
    return x, labels, item_ids


@pytest.fixture(scope="module")
def fitted(data):
    x, _, item_ids = data
    quantizer = RQKMeans(n_levels=3, codebook_size=8, n_iter=20, seed=0)
    return quantizer, quantizer.fit(x, item_ids)


def test_fit_codes_shape_range_uniqueness(data, fitted):
    x, _, item_ids = data
    quantizer, ids = fitted
    assert isinstance(ids, SemanticIDs)
    assert ids.scheme == "rqkmeans" and ids.has_collision_level and ids.item_ids == item_ids
    assert ids.codes.shape == (len(x), 4) and ids.codes.dtype == np.int64
    assert ids.codebook_sizes[:3] == [8, 8, 8]
    assert (ids.codes >= 0).all() and (ids.codes < np.asarray(ids.codebook_sizes)).all()
    assert len(np.unique(ids.codes, axis=0)) == len(x)
    # the last level is exactly TIGER's collision level of the first three
    np.testing.assert_array_equal(ids.codes, add_collision_level(ids.codes[:, :3]))
    assert ids.codebook_sizes[3] == ids.diagnostics["max_items_per_tuple"] == ids.codes[:, 3].max() + 1
    assert ids.diagnostics["collision_rate_after"] == 0.0
    assert ids.diagnostics["fit_seconds"] > 0
    json.dumps(ids.diagnostics)  # JSON-serialisable
    energies = ids.diagnostics["quantizer"]["residual_energy_per_level"]
    assert energies == sorted(energies, reverse=True)  # every level explains some of what is left


def test_first_level_recovers_well_separated_clusters(data, fitted):
    _, labels, _ = data
    _, ids = fitted
    # each level-0 code holds (almost) a single true cluster
    purity = sum(np.bincount(labels[ids.codes[:, 0] == code]).max() for code in np.unique(ids.codes[:, 0]))
    assert purity / len(labels) > 0.9
    assert ids.diagnostics["levels"][0]["usage"] == 1.0


def test_encode_reproduces_fit_codes(data, fitted):
    x, _, _ = data
    quantizer, ids = fitted
    np.testing.assert_array_equal(quantizer.encode(x), ids.codes[:, :3])
    # rows are encoded independently of each other
    np.testing.assert_array_equal(quantizer.encode(x[10:20]), ids.codes[10:20, :3])


@pytest.mark.parametrize("pca_dim", [None, 4])
def test_decode_returns_what_the_codes_stand_for(data, pca_dim):
    x, _, item_ids = data
    quantizer = RQKMeans(n_levels=3, codebook_size=8, seed=0, pca_dim=pca_dim)
    ids = quantizer.fit(x, item_ids)
    decoded = quantizer.decode(ids.codes[:, :3])
    assert decoded.shape == x.shape and decoded.dtype == np.float32
    # what the last level left over is exactly the distance from the (projected) features to the decoded ones
    error = ((quantizer._project(x) - quantizer._project(decoded)).astype(np.float64) ** 2).sum(axis=1).mean()
    left = ids.diagnostics["quantizer"]["residual_energy_per_level"][-1]
    np.testing.assert_allclose(error, left, rtol=1e-3)
    # re-encoded, the decoded features land in their items' first-level clusters (deeper levels are greedy: a sum
    # of centroids can sit nearer another path)
    np.testing.assert_array_equal(quantizer.encode(decoded)[:, 0], ids.codes[:, 0])
    with pytest.raises(ValueError, match="outside its codebook"):
        quantizer.decode([[8, 0, 0]])
    with pytest.raises(ValueError, match="n_levels=3"):
        quantizer.decode([[0, 0]])


def test_fit_is_deterministic(data, fitted):
    x, _, item_ids = data
    _, ids = fitted
    again = RQKMeans(n_levels=3, codebook_size=8, n_iter=20, seed=0).fit(x, item_ids)
    np.testing.assert_array_equal(again.codes, ids.codes)


def test_save_pretrained_round_trip(tmp_path, data, fitted):
    x, _, _ = data
    quantizer, _ = fitted
    quantizer.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quantizer.safetensors", "quantizer_config.json"]
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))
    loaded = RQKMeans.from_pretrained(tmp_path)
    assert loaded.codebook_sizes == quantizer.codebook_sizes and loaded.seed == quantizer.seed
    for a, b in zip(loaded.centroids_, quantizer.centroids_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.encode(x), quantizer.encode(x))
    assert isinstance(load_quantizer(tmp_path), RQKMeans)


def test_collision_level_options(data):
    x, _, item_ids = data
    # 2 levels x 2 codes cannot tell 480 items apart
    with pytest.raises(ValueError, match="add_collision_level=True"):
        RQKMeans(n_levels=2, codebook_size=2, add_collision_level=False).fit(x, item_ids)
    auto = RQKMeans(n_levels=2, codebook_size=2, add_collision_level="auto").fit(x, item_ids)
    assert auto.has_collision_level and auto.n_levels == 3
    # 480 distinct points, 2 levels x 256 codes: unique tuples, no collision level needed
    many = RQKMeans(n_levels=2, codebook_size=[8, 64], add_collision_level=None).fit(x, item_ids)
    assert many.has_collision_level == (many.diagnostics["collision_rate_before"] > 0)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda x, ids: (np.where(np.arange(x.size).reshape(x.shape) == 5, np.nan, x), ids), "NaN/inf"),
        (lambda x, ids: (np.where(np.arange(x.size).reshape(x.shape) == 7, np.inf, x), ids), "NaN/inf"),
        (lambda x, ids: (x[:, 0], ids), "2-D"),
        (lambda x, ids: (x[:, :, None], ids), "2-D"),
        (lambda x, ids: (x[:-1], ids), "rows but item_ids has"),
        (lambda x, ids: (x, ids[:-1] + ids[:1]), "duplicated"),
        (lambda x, ids: (x[:5], ids[:5]), "smaller codebook_size"),
        (lambda x, ids: (x.astype(str), ids), "numeric"),
    ],
)
def test_fit_rejects_bad_input(data, mutate, message):
    x, _, item_ids = data
    bad_x, bad_ids = mutate(x, list(item_ids))
    with pytest.raises(ValueError, match=message):
        RQKMeans(n_levels=2, codebook_size=8).fit(bad_x, bad_ids)


def test_bad_configuration_and_encode_errors(data, fitted):
    x, _, _ = data
    with pytest.raises(ValueError, match="codebook_size"):
        RQKMeans(codebook_size=1)
    with pytest.raises(ValueError, match="one per level"):
        RQKMeans(n_levels=3, codebook_size=[4, 4])
    with pytest.raises(ValueError, match="not fitted"):
        RQKMeans().encode(x)
    with pytest.raises(ValueError, match="dim"):
        fitted[0].encode(x[:, :4])


def test_large_catalogue_path_matches_the_exact_one(monkeypatch):
    """Above SVD_MAX_VALUES the PCA comes from a chunked covariance and the distinct-row check from projections
    (bounded memory for 1M x 768 catalogues): same axes (up to sign), same projections, same codes."""
    from hf_genrec.semantic_ids import _validation, rqkmeans

    x, _ = clustered(n_clusters=16, per_cluster=40, dim=24, noise=0.3)
    item_ids = [f"i{i}" for i in range(len(x))]
    mean, axes = rqkmeans.fit_pca(x, 6)
    exact = RQKMeans(n_levels=2, codebook_size=16, pca_dim=6, seed=0).fit(x, item_ids)
    monkeypatch.setattr(rqkmeans, "SVD_MAX_VALUES", 0)
    monkeypatch.setattr(rqkmeans, "CHUNK_ROWS", 100)
    monkeypatch.setattr(_validation, "CHUNK_ROWS", 100)
    mean_c, axes_c = rqkmeans.fit_pca(x, 6)
    np.testing.assert_allclose(mean_c, mean)
    np.testing.assert_allclose(np.abs((axes_c * axes).sum(axis=1)), 1.0, atol=1e-4)
    chunked = RQKMeans(n_levels=2, codebook_size=16, pca_dim=6, seed=0).fit(x, item_ids)
    np.testing.assert_array_equal(chunked.codes, exact.codes)
    # the distinct-row check still counts exactly when the projection bound is not enough
    assert rqkmeans.count_distinct_rows(np.repeat(x[:5], 3, axis=0), at_least=10) == 5
    assert rqkmeans.count_distinct_rows(x, at_least=10) >= 10
    with pytest.raises(ValueError, match="only 5 distinct rows"):
        RQKMeans(n_levels=1, codebook_size=8).fit(np.repeat(x[:5], 4, axis=0), [f"d{i}" for i in range(20)])
    bad = x.copy()
    bad[250, 3] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN/inf values in 1 rows \(first rows: \[250\]\)"):
        RQKMeans(n_levels=1, codebook_size=8).fit(bad, item_ids)
