"""Every ID scheme behind the one interface: fit, encode, save/load, tokenizer, and constrained decoding."""

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_genrec.decoding.generate import build_trie, generate_items
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import (
    RQVAE,
    SCHEMES,
    AtomicIDs,
    HierarchicalKMeans,
    RandomIDs,
    RQKMeans,
    SemanticIDs,
    TitleIDs,
    balanced_assignment,
    from_codes,
    load_quantizer,
    train_title_tokenizer,
)
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5, random_codes

WORDS = "red blue green matte gloss nail polish lipstick cream serum mask brush oil soap gel".split()


def clustered_features(n_items: int, dim: int = 16, n_clusters: int = 6, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_clusters, dim)) * 4
    return (centers[rng.integers(n_clusters, size=n_items)] + rng.normal(size=(n_items, dim))).astype(np.float32)


def random_titles(n_items: int, seed: int = 0, repeats: int = 3) -> list[str]:
    rng = np.random.default_rng(seed)
    titles = [" ".join(rng.choice(WORDS, size=rng.integers(1, 6))) for _ in range(n_items - repeats)]
    return titles + titles[:repeats]  # some titles repeat: they need the suffix


def make_scheme(name: str, n_items: int):
    """A small instance of each scheme and the input it fits on."""
    ids = [f"item{i}" for i in range(n_items)]
    features = clustered_features(n_items)
    if name == "rqvae":
        return RQVAE(n_levels=2, codebook_size=4, hidden_dims=[16], latent_dim=8, epochs=3, batch_size=32), features
    if name == "rqkmeans":
        return RQKMeans(n_levels=2, codebook_size=4, pca_dim=8), features
    if name == "rqkmeans-balanced":
        return RQKMeans(n_levels=2, codebook_size=4, balanced=True, pca_dim=None), features
    if name == "hierarchical":
        return HierarchicalKMeans(n_levels=2, codebook_size=3, pca_dim=None), features
    if name == "title":
        titles = random_titles(n_items)
        return TitleIDs(train_title_tokenizer(titles, vocab_size=60), max_tokens=4), titles
    if name == "random":
        return RandomIDs(n_levels=2, codebook_size=3), None
    if name == "atomic":
        return AtomicIDs(), features
    raise AssertionError(name, ids)


ALL = ["rqvae", "rqkmeans", "rqkmeans-balanced", "hierarchical", "title", "random", "atomic"]


def base_tokenizer(scheme):
    return scheme.tokenizer if isinstance(scheme, TitleIDs) else minimal_t5_tokenizer()


# ------------------------------------------------------------------ one interface
def test_every_scheme_is_registered():
    assert set(SCHEMES) == {"rqvae", "rqkmeans", "hierarchical", "title", "random", "atomic"}


@pytest.mark.parametrize("name", ALL)
def test_fit_gives_unique_ids_and_diagnostics(name):
    scheme, features = make_scheme(name, 48)
    item_ids = [f"item{i}" for i in range(48)]
    ids = scheme.fit(features, item_ids)
    assert isinstance(ids, SemanticIDs) and ids.item_ids == item_ids and ids.scheme == name.split("-")[0]
    rows = {tuple(row) for row in ids.codes.tolist()}
    assert len(rows) == 48  # unique per item
    diag = ids.diagnostics
    assert diag["collision_rate_after"] == 0.0
    assert 0.0 <= diag["collision_rate_before"] <= 1.0
    assert len(diag["levels"]) == ids.n_levels
    for level in diag["levels"]:
        assert 0 < level["usage"] <= 1 and 1 <= level["perplexity"] <= level["codebook_size"]
        assert level["items_per_prefix_max"] >= level["items_per_prefix_mean"] >= 1
    assert "fit_seconds" in diag and name.split("-")[0] in ids.summary()


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip_and_encode(name, tmp_path):
    scheme, features = make_scheme(name, 48)
    ids = scheme.fit(features, [f"item{i}" for i in range(48)])
    scheme.save_pretrained(tmp_path)
    assert (tmp_path / "quantizer_config.json").is_file() and (tmp_path / "quantizer.safetensors").is_file()
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.bin"))
    loaded = load_quantizer(tmp_path)
    assert type(loaded) is type(scheme)
    if name in ("random", "atomic"):
        np.testing.assert_array_equal(loaded.encode([None] * 3), scheme.encode([None] * 3))
        return
    new = features[:5]
    if name == "title":
        pieces = scheme.encode(new)
        assert loaded.encode(new) == pieces
        for row, spelled in zip(ids.codes[:5], pieces):
            assert [ids.vocabulary[c] for c in row if c >= 0][: len(spelled)] == spelled  # a suffix may follow
        return
    np.testing.assert_array_equal(loaded.encode(new), scheme.encode(new))
    if name != "rqkmeans-balanced":  # balanced assignment moves some items off their nearest centroid
        # training items get back the codes they were fitted with
        base_levels = ids.n_levels - int(ids.has_collision_level)
        np.testing.assert_array_equal(scheme.encode(features), ids.codes[:, :base_levels])


def test_loading_the_wrong_class_says_which_to_use(tmp_path):
    scheme, features = make_scheme("rqkmeans", 32)
    scheme.fit(features, [f"i{i}" for i in range(32)])
    scheme.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="load_quantizer"):
        HierarchicalKMeans.from_pretrained(tmp_path)


# ------------------------------------------------------------------ scheme specifics
def test_balanced_assignment_fills_equal_clusters_nearest_first():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(90, 2)), rng.normal(size=(10, 2)) + 20]).astype(np.float32)
    centroids = np.array([[0, 0], [20, 20], [0.5, 0.5], [-0.5, 0]], dtype=np.float32)
    assignment = balanced_assignment(x, centroids)
    assert (assignment >= 0).all() and np.bincount(assignment, minlength=4).max() <= 25
    assert (assignment[90:] == 1).all()  # the far group keeps its own centroid
    with pytest.raises(ValueError, match="cannot hold"):
        balanced_assignment(x, centroids, capacity=10)


def test_balanced_rqkmeans_spreads_items_and_cuts_collisions():
    features = clustered_features(400, n_clusters=3, seed=1)  # 3 blobs, 16 codes: plain k-means is uneven
    kwargs = dict(n_levels=2, codebook_size=16, pca_dim=None, add_collision_level=None)
    plain = RQKMeans(**kwargs).fit(features, [f"i{i}" for i in range(400)])
    balanced = RQKMeans(balanced=True, **kwargs).fit(features, [f"i{i}" for i in range(400)])
    assert np.bincount(balanced.codes[:, 0]).max() <= 25  # ceil(400 / 16)
    assert balanced.diagnostics["levels"][0]["perplexity"] > plain.diagnostics["levels"][0]["perplexity"]
    assert balanced.diagnostics["collision_rate_before"] <= plain.diagnostics["collision_rate_before"]


def test_hierarchical_children_live_under_their_parent():
    features = clustered_features(120, n_clusters=4, seed=2)
    ids = HierarchicalKMeans(n_levels=2, codebook_size=4, pca_dim=None).fit(features, [f"i{i}" for i in range(120)])
    assert ids.has_collision_level and ids.n_levels == 3
    # the last level numbers the items inside each leaf: 0..size-1
    for leaf in {tuple(r) for r in ids.codes[:, :2].tolist()}:
        members = (ids.codes[:, :2] == leaf).all(axis=1)
        assert sorted(ids.codes[members, 2].tolist()) == list(range(members.sum()))


@pytest.mark.parametrize("pca_dim", [None, 3])
def test_hierarchical_decode_is_the_deepest_centroid_on_the_path(pca_dim):
    features = clustered_features(120, n_clusters=4, seed=2)
    scheme = HierarchicalKMeans(n_levels=2, codebook_size=4, pca_dim=pca_dim)
    ids = scheme.fit(features, [f"i{i}" for i in range(120)])
    decoded = scheme.decode(ids.codes[:, :2])
    assert decoded.shape == features.shape and decoded.dtype == np.float32
    leaves = np.stack([scheme.nodes_[(a,)][b] for a, b in ids.codes[:, :2].tolist()])
    np.testing.assert_allclose(scheme._project(decoded), leaves, rtol=1e-4, atol=1e-4)
    # a leaf centroid is its items' neighbourhood: each item is nearer its own leaf's decoded point than the mean is
    error = ((decoded - features) ** 2).sum(axis=1)
    assert error.mean() < 0.5 * ((features - features.mean(axis=0)) ** 2).sum(axis=1).mean()
    # new items encoded then decoded land on the centroid they were routed to
    np.testing.assert_array_equal(scheme.encode(decoded[:10]), ids.codes[:10, :2])
    children = len(scheme.nodes_[(int(ids.codes[0, 0]),)])
    if children < 4:
        with pytest.raises(ValueError, match="not a path of the tree"):
            scheme.decode([[int(ids.codes[0, 0]), children]])
    with pytest.raises(ValueError, match="outside its codebook of 4"):
        scheme.decode([[4, 0]])
    with pytest.raises(ValueError, match="n_levels=2"):
        scheme.decode(ids.codes)


def test_title_ids_are_variable_length_with_suffixes_only_on_repeats():
    titles = ["red nail polish", "blue nail polish", "red nail polish", "serum", "matte lipstick cream"]
    tokenizer = train_title_tokenizer(titles * 5, vocab_size=40)
    scheme = TitleIDs(tokenizer, max_tokens=8)
    ids = scheme.fit(titles, ["a", "b", "c", "d", "e"])
    assert ids.is_variable_length and ids.vocabulary is not None
    assert ids.added_tokens == ["<dup_0>", "<dup_1>"]
    spell = {item: [ids.vocabulary[c] for c in ids.codes[i] if c >= 0] for i, item in enumerate(ids.item_ids)}
    assert spell["a"][-1] == "<dup_0>" and spell["c"][-1] == "<dup_1>" and spell["a"][:-1] == spell["c"][:-1]
    assert "<dup_0>" not in spell["b"] and spell["d"] == tokenizer.tokenize("serum")
    assert ids.diagnostics["collision_rate_before"] == pytest.approx(2 / 5)

    item_tokenizer = ItemTokenizer(tokenizer, ids)
    assert item_tokenizer.is_variable_length
    assert item_tokenizer.encode_target("d") == tokenizer.convert_tokens_to_ids(spell["d"]) + [tokenizer.eos_token_id]
    history = item_tokenizer.encode_history(["d", "a"])
    assert history == item_tokenizer.encode_target("d") + item_tokenizer.encode_target("a")  # EOS between items
    assert item_tokenizer.decode_index([item_tokenizer.encode_target(x) for x in "abcde"]) == [0, 1, 2, 3, 4]
    assert item_tokenizer.decode_index([item_tokenizer.encode_target("a")[:-2] + [tokenizer.eos_token_id]]) == [-1]


def test_title_ids_missing_titles():
    tokenizer = train_title_tokenizer(["red nail polish"] * 3, vocab_size=30)
    with pytest.raises(ValueError, match="no title.*missing_titles='item_id'"):
        TitleIDs(tokenizer).fit(["red nail", None, ""], ["a", "b", "c"])
    ids = TitleIDs(tokenizer, missing_titles="item_id").fit(["red nail", None], ["a", "b"])
    assert ids.n_items == 2


def test_title_ids_learn_a_tokenizer_when_none_is_given(tmp_path):
    titles = random_titles(30, seed=3)
    scheme = TitleIDs(max_tokens=5, vocab_size=50)
    ids = scheme.fit(titles, [f"i{i}" for i in range(30)])
    assert scheme.tokenizer is not None and ids.diagnostics["id_length_max"] <= 6  # 5 pieces + suffix
    item_tokenizer = ItemTokenizer(scheme.tokenizer, ids)
    item_tokenizer.save_pretrained(tmp_path)
    loaded = ItemTokenizer.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded.item_token_ids, item_tokenizer.item_token_ids)
    assert loaded.spellings() == item_tokenizer.spellings()


def test_random_and_atomic_ids():
    a = RandomIDs(n_levels=2, codebook_size=8, seed=5).fit(None, [f"i{i}" for i in range(50)])
    b = RandomIDs(n_levels=2, codebook_size=8, seed=5).fit(None, [f"i{i}" for i in range(50)])
    np.testing.assert_array_equal(a.codes, b.codes)
    assert a.has_collision_level
    atomic = AtomicIDs().fit(None, ["x", "y", "z"])
    np.testing.assert_array_equal(atomic.codes, [[0], [1], [2]])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), atomic)
    assert item_tokenizer.id_length == 2 and len(item_tokenizer) == 4 + 3


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("scheme", [RQKMeans(n_levels=2, codebook_size=4), RQVAE(n_levels=2, codebook_size=4)])
def test_nan_and_inf_features_are_refused(scheme):
    features = clustered_features(20)
    features[3, 1] = np.nan
    features[7, 0] = np.inf
    with pytest.raises(ValueError, match="NaN/inf values in 2 rows"):
        scheme.fit(features, [f"i{i}" for i in range(20)])


@pytest.mark.parametrize(
    "scheme",
    [RQKMeans(n_levels=2, codebook_size=16), RQVAE(n_levels=2, codebook_size=16), HierarchicalKMeans(2, 16)],
)
def test_fewer_items_than_codes(scheme):
    with pytest.raises(ValueError, match="Cannot learn a codebook of 16 codes from 10 items"):
        scheme.fit(clustered_features(10), [f"i{i}" for i in range(10)])


def test_codebook_that_cannot_be_reached():
    features = np.repeat(clustered_features(4), 10, axis=0)  # 40 items but only 4 distinct rows
    with pytest.raises(ValueError, match="only 4 distinct rows.*codebook_size <= 4"):
        RQKMeans(n_levels=2, codebook_size=8).fit(features, [f"i{i}" for i in range(40)])
    with pytest.raises(ValueError, match="fewer than the 100 items"):
        RandomIDs(n_levels=2, codebook_size=4, add_collision_level=False).fit(None, [f"i{i}" for i in range(100)])


def test_codes_that_do_not_fit_the_vocabulary():
    tokenizer = train_title_tokenizer(["red nail polish"] * 3, vocab_size=30)
    ids = TitleIDs(tokenizer).fit(["red nail polish", "red nail"], ["a", "b"])
    with pytest.raises(ValueError, match="not in the tokenizer's vocabulary.*do not fit"):
        ItemTokenizer(minimal_t5_tokenizer(), ids)
    with pytest.raises(ValueError, match="out of range of the vocabulary"):
        SemanticIDs(codes=np.array([[0], [5]]), codebook_sizes=[6], item_ids=["a", "b"], vocabulary=["x", "y"])
    with pytest.raises(ValueError, match="-1 padding"):
        from_codes(np.array([[0, -1, 2]]), ["a"])


def test_variable_length_codes_must_be_unique():
    with pytest.raises(ValueError, match="variable-length IDs are shared"):
        from_codes(np.array([[0, 1, -1], [0, 1, -1], [0, 1, 2]]), ["a", "b", "c"])
    ok = from_codes(np.array([[0, 1, -1], [0, 1, 2]]), ["a", "b"])
    assert ok.is_variable_length and ok.lengths.tolist() == [2, 3]


# ------------------------------------------------------------------ constrained decoding never leaves the catalogue
@pytest.mark.parametrize("name", ALL)
def test_every_scheme_decodes_only_catalogue_items(name):
    scheme, features = make_scheme(name, 40)
    ids = scheme.fit(features, [f"item{i}" for i in range(40)])
    item_tokenizer = ItemTokenizer(base_tokenizer(scheme), ids)
    model = build_t5_model(item_tokenizer, seed=1, **TINY_T5).eval()
    histories = [item_tokenizer.encode_history([f"item{i}", f"item{(i + 3) % 40}"]) for i in range(4)]
    width = max(map(len, histories))
    input_ids = torch.tensor([h + [item_tokenizer.pad_token_id] * (width - len(h)) for h in histories])
    indices, scores = generate_items(model, item_tokenizer, input_ids, (input_ids != 0).long(), num_beams=12, k=10)
    assert (indices >= 0).all() and (indices < 40).all()
    assert all(len(set(row)) == 10 for row in indices.tolist())
    assert torch.isfinite(scores).all() and (scores[:, :-1] >= scores[:, 1:] - 1e-5).all()


def _spelling_log_probs(model, item_tokenizer, input_ids):
    """Exact log-probability of every (variable-length) spelling, by teacher forcing with padded labels ignored."""
    spellings = item_tokenizer.spellings()
    width = max(map(len, spellings))
    labels = torch.tensor([s + [-100] * (width - len(s)) for s in spellings])
    with torch.no_grad():
        logits = model(input_ids=input_ids.expand(len(labels), -1), labels=labels).logits
    logp = torch.log_softmax(logits, -1).gather(-1, labels.clamp_min(0)[..., None]).squeeze(-1)
    return (logp * (labels >= 0)).sum(-1)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_items=st.integers(12, 40),
    max_len=st.integers(1, 4),
    vocab=st.integers(3, 6),
    seed=st.integers(0, 10_000),
)
def test_variable_length_catalogues_decode_exactly(n_items, max_len, vocab, seed):
    """Random variable-length catalogues: beam search returns only real items, and the top item is the exact best."""
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, n_items, max_len, vocab)
    ids = from_codes(codes, [f"i{i}" for i in range(len(codes))], codebook_sizes=[vocab] * codes.shape[1])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    model = build_t5_model(item_tokenizer, seed=seed % 7, **TINY_T5).eval()
    input_ids = torch.tensor([item_tokenizer.encode_history(["i0", f"i{len(codes) - 1}"])])
    k = min(5, len(codes))
    indices, scores = generate_items(
        model, item_tokenizer, input_ids, num_beams=len(codes), k=k, trie=build_trie(item_tokenizer)
    )
    assert (indices >= 0).all() and len(set(indices[0].tolist())) == k
    exact = _spelling_log_probs(model, item_tokenizer, input_ids)
    # with as many beams as items, beam search is exhaustive: the top-k are the exact top-k
    top = torch.topk(exact, k)
    torch.testing.assert_close(scores[0], top.values, atol=1e-4, rtol=1e-4)
