"""Every reader of a bundle serves what its writer saved: the pipeline and `from_pretrained` from a (loopback) Hub
repo return the recommender's own top 10 for a default-recipe bundle (causal-encoder T5, successor prior, history
exclusion), a hybrid bundle (+ a SASRec scorer) and a bundle grown by ``hf-genrec catalog add``; the manifest lists
each bundle's parts, and a download that lost one fails loudly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from transformers import pipeline

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.bundle.layout import MANIFEST_NAME, check_bundle, read_manifest
from hf_genrec.bundle.model_card import GenRecCardData
from hf_genrec.cli.main import main
from hf_genrec.decoding.fusion import FusionConfig
from hf_genrec.models.prior import ItemTransitions
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5

N_ITEMS, K = 60, 10
#: the default recipe's model: a causal encoder over one position per item, recency embeddings, last-state start
RECIPE_MODEL = dict(causal_encoder=True, item_positions=True, recency_embeddings=True, start_from_last_state=True)


def _sequences(rng) -> list[list[int]]:
    """Walks with strong item-to-item transitions (each item mostly followed by item + 1), as item rows."""
    walks = []
    for _ in range(40):
        start, length = int(rng.integers(N_ITEMS)), int(rng.integers(4, 9))
        walks.append([(start + t + int(rng.random() < 0.2)) % N_ITEMS for t in range(length)])
    return walks


def _recommender(kind: str) -> tuple[GenerativeRecommender, list[list[str]]]:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(N_ITEMS, 8)).astype("float32")
    quantizer = RQKMeans(n_levels=2, codebook_size=8, pca_dim=None)
    ids = quantizer.fit(features, [f"i{n}" for n in range(N_ITEMS)])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5, **RECIPE_MODEL)
    rows = _sequences(rng)
    fusion = FusionConfig(exclude_history=True, transition_weight=4.0)
    scorer = None
    if kind == "hybrid":
        scorer = SASRecModel(SASRecConfig(num_items=N_ITEMS, max_positions=8, hidden_size=16, dropout=0.0)).eval()
        fusion = fusion.replace(scorer_weight=4.0, scorer_top_k=20)
    config = GenRecConfig(num_beams=K, top_k=K, max_history=20, fusion=fusion, new_item_slots=3 * (kind == "grown"))
    recommender = GenerativeRecommender(
        model,
        item_tokenizer,
        config,
        quantizer=quantizer,
        transitions=ItemTransitions.fit(rows, N_ITEMS, window=3),
        scorer=scorer,
        card_data=GenRecCardData(test_metrics={"recall@10": 0.4321, "ndcg@10": 0.1234}, protocol="A tiny protocol."),
    )
    histories = [[item_tokenizer.item_ids[i] for i in row[:-1]] for row in rows[:12]]
    return recommender, histories


def _top(ranked) -> list[list[str]]:
    return [[item for item, _ in row] for row in ranked]


@pytest.fixture(scope="module", params=["default", "hybrid", "grown"])
def saved(request, tmp_path_factory):
    """(kind, bundle folder, histories, the recommender's own top 10 for them)."""
    kind = request.param
    folder = tmp_path_factory.mktemp(kind) / "bundle"
    recommender, histories = _recommender(kind)
    recommender.save_pretrained(folder)
    if kind == "grown":  # three items join through the CLI, placed by the quantiser
        new = np.random.default_rng(1).normal(size=(3, 8)).round(4).tolist()
        items = folder.parent / "new.jsonl"
        items.write_text("".join(json.dumps({"item_id": f"new{i}", "features": f}) + "\n" for i, f in enumerate(new)))
        assert main(["catalog", "add", str(folder), str(items)]) == 0
        recommender = GenerativeRecommender.from_pretrained(folder)
    return kind, folder, histories, _top(recommender.recommend(histories, k=K)), recommender


def test_each_fused_part_changes_the_ranking(saved):
    """So the equalities below would catch a reader that dropped a part."""
    kind, _, histories, expected, recommender = saved
    assert _top(recommender.recommend(histories, k=K, transition_weight=0.0)) != expected
    if kind == "hybrid":
        assert _top(recommender.recommend(histories, k=K, scorer_weight=0.0)) != expected
    if kind == "grown":
        assert any(item.startswith("new") for row in expected for item in row)
        assert _top(recommender.recommend(histories, k=K, new_item_slots=0)) != expected


def test_pipeline_serves_the_whole_bundle(saved):
    _, folder, histories, expected, _ = saved
    recommend = pipeline("generative-recommendation", model=str(folder))
    got = recommend(histories, top_k=K)
    assert [[entry["item_id"] for entry in row] for row in got] == expected


def test_from_pretrained_after_a_hub_round_trip(saved, monkeypatch, tmp_path):
    from .hub_server import use_loopback_hub

    kind, folder, histories, expected, _ = saved
    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        assert main(["push", str(folder), f"someone/{kind}"]) == 0
        assert MANIFEST_NAME in hub.files(f"someone/{kind}")
        loaded = GenerativeRecommender.from_pretrained(f"someone/{kind}", cache_dir=tmp_path / "cache")
        assert _top(loaded.recommend(histories, k=K)) == expected
        remote = pipeline("generative-recommendation", model=f"someone/{kind}")
        assert [[e["item_id"] for e in row] for row in remote(histories, top_k=K)] == expected


def test_manifest_lists_the_parts_and_a_lost_part_fails_loudly(saved, tmp_path):
    kind, folder, _, _, _ = saved
    parts = read_manifest(folder)
    assert {"model", "item_tokenizer", "config", "quantizer", "transitions", "card"} <= set(parts)
    assert ("scorer" in parts) == (kind == "hybrid") and ("catalog" in parts) == (kind == "grown")
    card = (folder / "README.md").read_text().split("---\n", 2)[2]  # after the metadata block
    first_lines = "\n".join(card.strip().splitlines()[:5])
    assert "How to load it" in first_lines and "import hf_genrec" in first_lines and "from_pretrained" in first_lines
    # the card's facts are a part of their own: a bundle saved again (catalog add) keeps its evaluation, and says
    # that the catalogue changed after it was measured
    assert "card_data" in parts and "0.4321" in card and "A tiny protocol." in card
    assert ("3 items were added to the catalogue" in card) == (kind == "grown")
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    shutil.rmtree(damaged / "quantizer")
    with pytest.raises(FileNotFoundError, match="missing quantizer/"):
        check_bundle(damaged)
    with pytest.raises(FileNotFoundError, match="missing quantizer/"):
        GenerativeRecommender.from_pretrained(damaged)


def test_a_second_save_into_the_folder_leaves_no_part_of_the_first(tmp_path):
    recommender, histories = _recommender("hybrid")
    recommender.save_pretrained(tmp_path)
    recommender.scorer, recommender.transitions = None, None
    recommender.config.fusion = FusionConfig(exclude_history=True)
    recommender.save_pretrained(tmp_path)
    assert not (tmp_path / "scorer").exists() and not (tmp_path / "transitions.safetensors").exists()
    assert GenerativeRecommender.from_pretrained(tmp_path).recommend(histories, k=K) == recommender.recommend(
        histories, k=K
    )
