"""RQVAE: TIGER's residual-quantised autoencoder, with the fixes against codebook collapse."""

import json

import numpy as np
import pytest
import torch

from hf_genrec.semantic_ids import RQVAE, SemanticIDs, add_collision_level, load_quantizer

SMALL = dict(n_levels=3, codebook_size=32, latent_dim=16, hidden_dims=(64, 32), epochs=15, batch_size=128, lr=2e-3)


def clustered(n=1024, n_clusters=64, dim=32, seed=0):
    """Items around 64 cluster centres: more clusters than codes, so a healthy codebook uses all its codes."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 2
    labels = rng.integers(0, n_clusters, n)
    x = centers[labels] + 0.5 * rng.normal(size=(n, dim))
    return x.astype(np.float32), [f"item{i}" for i in range(n)]


@pytest.fixture(scope="module")
def data():
    return clustered()


@pytest.fixture(scope="module")
def fitted(data):
    x, item_ids = data
    quantizer = RQVAE(**SMALL, seed=0, device="cpu")
    return quantizer, quantizer.fit(x, item_ids)


def test_fit_codes_shape_range_uniqueness(data, fitted):
    x, item_ids = data
    _, ids = fitted
    assert isinstance(ids, SemanticIDs) and ids.scheme == "rqvae" and ids.item_ids == item_ids
    assert ids.codes.shape == (len(x), 4) and ids.codes.dtype == np.int64
    assert ids.codebook_sizes[:3] == [32, 32, 32]
    assert (ids.codes >= 0).all() and (ids.codes < np.asarray(ids.codebook_sizes)).all()
    assert len(np.unique(ids.codes, axis=0)) == len(x)
    np.testing.assert_array_equal(ids.codes, add_collision_level(ids.codes[:, :3]))
    quantizer_diag = ids.diagnostics["quantizer"]
    assert quantizer_diag["steps"] == 15 * 8 and quantizer_diag["device"] == "cpu"
    assert np.isfinite(quantizer_diag["final_recon_loss"])
    json.dumps(ids.diagnostics)  # JSON-serialisable


def test_codebooks_do_not_collapse_on_clustered_data(data, fitted):
    x, item_ids = data
    _, ids = fitted
    usage = np.mean([level["usage"] for level in ids.diagnostics["levels"][:3]])
    assert usage >= 0.9
    # the same model without standardisation, k-means init and dead-code resets leaves more codes unused
    plain = RQVAE(**SMALL, seed=0, device="cpu", standardize=False, kmeans_init=False, reset_dead_codes_every=0)
    plain_usage = np.mean([level["usage"] for level in plain.fit(x, item_ids).diagnostics["levels"][:3]])
    assert plain_usage < usage - 0.05, (plain_usage, usage)


def test_encode_reproduces_fit_codes_and_fit_is_deterministic(data, fitted):
    x, item_ids = data
    quantizer, ids = fitted
    np.testing.assert_array_equal(quantizer.encode(x), ids.codes[:, :3])
    np.testing.assert_array_equal(quantizer.encode(x[5:9]), ids.codes[5:9, :3])
    again = RQVAE(**SMALL, seed=0, device="cpu").fit(x, item_ids)
    np.testing.assert_array_equal(again.codes, ids.codes)


def test_training_is_reproducible_with_several_threads():
    # with >1 thread, the backward of `codebook[index]` accumulates in a varying order; RQVAE must not depend on it
    x, item_ids = clustered(n=2048)
    config = dict(n_levels=2, codebook_size=256, latent_dim=32, hidden_dims=(64,), epochs=3, batch_size=1024)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        first, second = (RQVAE(**config, seed=0, device="cpu", kmeans_init=False) for _ in range(2))
        first.fit(x, item_ids)
        second.fit(x, item_ids)
    finally:
        torch.set_num_threads(threads)
    for key, value in first.model_.state_dict().items():
        assert torch.equal(value, second.model_.state_dict()[key]), key


def test_save_pretrained_round_trip(tmp_path, data, fitted):
    x, _ = data
    quantizer, _ = fitted
    quantizer.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quantizer.safetensors", "quantizer_config.json"]
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))
    loaded = RQVAE.from_pretrained(tmp_path, device="cpu")
    assert loaded.hidden_dims == [64, 32] and loaded.latent_dim == 16 and loaded.codebook_sizes == [32, 32, 32]
    for key, value in quantizer.model_.state_dict().items():
        np.testing.assert_array_equal(loaded.model_.state_dict()[key].numpy(), value.numpy())
    np.testing.assert_array_equal(loaded.encode(x), quantizer.encode(x))
    assert isinstance(load_quantizer(tmp_path), RQVAE)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda x, ids: (np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), ids), "NaN/inf"),
        (lambda x, ids: (x.ravel(), ids), "2-D"),
        (lambda x, ids: (x, ids[:-2]), "rows but item_ids has"),
        (lambda x, ids: (x, ids[:-1] + ids[:1]), "duplicated"),
        (lambda x, ids: (x[:6], ids[:6]), "smaller codebook_size"),
    ],
)
def test_fit_rejects_bad_input(data, mutate, message):
    x, item_ids = data
    bad_x, bad_ids = mutate(x, list(item_ids))
    with pytest.raises(ValueError, match=message):
        RQVAE(**SMALL).fit(bad_x, bad_ids)


def test_bad_configuration_and_encode_errors(data, fitted):
    x, _ = data
    with pytest.raises(ValueError, match="positive"):
        RQVAE(epochs=0)
    with pytest.raises(ValueError, match="not fitted"):
        RQVAE().encode(x)
    with pytest.raises(ValueError, match="dim"):
        fitted[0].encode(x[:, :5])


def test_decode_is_the_decoder_of_the_summed_code_vectors(data, fitted):
    x, _ = data
    quantizer, ids = fitted
    model = quantizer.model_
    decoded = quantizer.decode(ids.codes[:, :3])
    assert decoded.shape == x.shape and decoded.dtype == np.float32
    with torch.no_grad():  # the definition written out: code vectors summed, decoded, standardisation undone
        latent = sum(model.codebooks[level][torch.from_numpy(ids.codes[:, level])] for level in range(3))
        expected = (model.decoder(latent) * model.feature_std + model.feature_mean).numpy()
    np.testing.assert_allclose(decoded, expected, rtol=1e-5, atol=1e-5)
    # what the autoencoder reconstructs from each item's own features, since an item's codes are its quantised latent
    with torch.no_grad():
        standardized = model.decoder(model.quantize(model.encoder(model.standardize(torch.from_numpy(x))))[0])
    np.testing.assert_allclose(decoded, (standardized * model.feature_std + model.feature_mean).numpy(), atol=1e-4)
    # so the codes carry the items: 98% of decoded points sit nearer their own item than another item's point does
    own = ((decoded - x) ** 2).sum(axis=1)
    other = ((decoded[np.random.default_rng(0).permutation(len(x))] - x) ** 2).sum(axis=1)
    assert (own < other).mean() > 0.9
    with pytest.raises(ValueError, match="outside its codebook of 32"):
        quantizer.decode([[32, 0, 0]])
    with pytest.raises(ValueError, match="n_levels=3"):
        quantizer.decode(ids.codes)  # with the collision level
    with pytest.raises(ValueError, match="not fitted"):
        RQVAE().decode([[0, 0, 0]])
