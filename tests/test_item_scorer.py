"""The hybrid recommender: a dense next-item scorer (SASRec) fused into the constrained beam search."""

import math

import numpy as np
import pytest
import torch

from hf_genrec import GenerativeRecommender
from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.decoding.fusion import FusionConfig, reindex_items, scorer_priors
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad


def fixed_scorer(n_items: int, logits: dict[int, float]) -> SASRecModel:
    """A SASRec whose next-item logits are ``logits`` (item row → logit, 0 for the rest) whatever the history:
    its final norm outputs a constant vector ``v``, and item ``i``'s embedding is ``logit_i * v / |v|^2``."""
    torch.manual_seed(0)
    config = SASRecConfig(num_items=n_items, max_positions=8, hidden_size=8, num_layers=1, num_heads=1, dropout=0.0)
    model = SASRecModel(config).eval()
    v = torch.linspace(0.5, 1.5, 8)
    with torch.no_grad():
        model.final_norm.weight.zero_()
        model.final_norm.bias.copy_(v)
        model.item_embeddings.weight.zero_()
        for item, logit in logits.items():
            model.item_embeddings.weight[item + 1] = logit * v / v.dot(v)
    return model


HISTORIES = [["item1", "item3"], ["item9", "item5"], ["item22"]]


def test_fused_exact_search_adds_the_scorers_bonus_to_each_items_log_probability(tiny_model, item_tokenizer):
    """With as many beams as items the search is exact: each item's score is the model's log-probability plus
    ``weight * log(1 + P_scorer / smoothing)`` for the scorer's top-k items, and nothing for the rest."""
    n = item_tokenizer.num_items
    scorer = fixed_scorer(n, {17: 6.0, 5: 4.0})
    config = GenRecConfig(fusion=FusionConfig(scorer_weight=1.5, scorer_top_k=2, scorer_smoothing=0.05))
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, config=config, scorer=scorer)
    plain = recommender.recommend(HISTORIES, k=n - 2, num_beams=n, scorer_weight=0)
    fused = recommender.recommend(HISTORIES, k=n - 2, num_beams=n)
    rows = [item_tokenizer.index_of(h).tolist() for h in HISTORIES]
    items, probs = scorer_priors(scorer, rows, top_k=2)
    for row in range(len(HISTORIES)):
        prior = dict(zip([item_tokenizer.item_ids[i] for i in items[row]], probs[row].tolist()))
        assert set(prior) == {"item17", "item5"}  # the top 2 only
        base = dict(plain[row])
        for item, score in fused[row]:
            if item in base:
                bonus = 1.5 * math.log1p(prior[item] / 0.05) if item in prior else 0.0
                assert score == pytest.approx(base[item] + bonus, abs=1e-4)
        # the scorer's favourite moves up
        assert [i for i, _ in fused[row]].index("item17") < [i for i, _ in plain[row]].index("item17")


def test_the_scorer_and_the_successor_prior_add_up(tiny_model, item_tokenizer):
    """Both fused at once: each item gains the prior's bonus and the scorer's, on top of the model's score."""
    from hf_genrec.models.prior import ItemTransitions

    n = item_tokenizer.num_items
    scorer = fixed_scorer(n, {17: 6.0, 5: 4.0})
    transitions = ItemTransitions.fit([[3, 9], [3, 9], [3, 17], [5, 12]], n)
    config = GenRecConfig(
        fusion=FusionConfig(transition_weight=2.0, transition_recent_items=1, scorer_weight=1.5, scorer_top_k=2)
    )
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, config, transitions=transitions, scorer=scorer)
    plain = recommender.recommend(HISTORIES, k=n - 2, num_beams=n, transition_weight=0, scorer_weight=0)
    fused = recommender.recommend(HISTORIES, k=n - 2, num_beams=n)
    rows = [item_tokenizer.index_of(h).tolist() for h in HISTORIES]
    items, probs = scorer_priors(scorer, rows, top_k=2)
    for row, history in enumerate(rows):
        scored = {item_tokenizer.item_ids[i]: p for i, p in zip(items[row], probs[row].tolist())}
        successors = dict(zip(*transitions.probabilities(history[-1])))
        followed = {item_tokenizer.item_ids[int(i)]: float(p) for i, p in successors.items()}
        base = dict(plain[row])
        for item, score in fused[row]:
            if item in base:
                bonus = 2.0 * math.log1p(followed.get(item, 0.0) / 0.01)
                bonus += 1.5 * math.log1p(scored.get(item, 0.0) / 0.01)
                assert score == pytest.approx(base[item] + bonus, abs=1e-4)
    assert fused[0][0][0] in {"item9", "item17"}  # history 0 ends in item 3: followed by 9, and 17 is the scorer's


def test_scorer_priors_leave_out_the_history_and_unknown_rows():
    scorer = fixed_scorer(10, {3: 5.0, 4: 4.0})
    items, probs = scorer_priors(scorer, [[3], [1, 2], [12]], top_k=2, exclude_history=True)
    assert items[0, 0] == 4 and 3 not in items[0].tolist()  # item 3 is the history: excluded
    assert items[1].tolist() == [3, 4] and items[2].tolist() == [3, 4]  # row 12 is unknown: read as nothing
    assert probs[0, 0] == pytest.approx(math.exp(4) / (math.exp(4) + 8), rel=1e-4)
    with pytest.raises(ValueError, match="top_k"):
        scorer_priors(scorer, [[1]], top_k=0)


def test_reindex_items_keeps_each_items_score():
    scorer = fixed_scorer(4, {0: 1.0, 2: 3.0})
    scorer.item_embeddings.weight.data[1:] += torch.randn(4, 8) * 0.1  # so the history matters too
    ids = ["a", "b", "c", "d"]
    order = ["c", "a", "d", "b"]
    moved = reindex_items(scorer, ids, order)
    history = [["a", "c"]]
    before = scorer.item_log_probs(left_pad([[ids.index(i) for i in h] for h in history], 8))[0, 1:]
    after = moved.item_log_probs(left_pad([[order.index(i) for i in h] for h in history], 8))[0, 1:]
    for row, item in enumerate(order):
        assert after[row].item() == pytest.approx(before[ids.index(item)].item(), abs=1e-5)
    with pytest.raises(ValueError, match="unknown to the scorer"):
        reindex_items(scorer, ids, ["a", "z"])
    with pytest.raises(ValueError, match="order the scorer was trained with"):
        reindex_items(scorer, ids[:3], order)


def test_bundles_keep_the_scorer_and_the_catalogue_can_change(tmp_path, tiny_model, item_tokenizer):
    n = item_tokenizer.num_items
    config = GenRecConfig(fusion=FusionConfig(scorer_weight=30.0))
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, config=config, scorer=fixed_scorer(n, {17: 12.0}))
    fused = recommender.recommend(HISTORIES, k=5, num_beams=10)
    assert [row[0][0] for row in fused] == ["item17"] * 3  # the scorer is sure, and weighs much
    recommender.save_pretrained(tmp_path / "bundle")
    assert (tmp_path / "bundle" / "scorer" / "model.safetensors").is_file()
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "bundle")
    assert loaded.config.fusion.scorer_weight == 30.0 and loaded.scorer.config.num_items == n
    assert loaded.recommend(HISTORIES, k=5, num_beams=10) == fused
    # removing an item before item 17 closes up the catalogue's rows, and the scorer's with them
    loaded.remove_items(["item2"])
    assert loaded.scorer.config.num_items == n - 1
    assert [row[0][0] for row in loaded.recommend(HISTORIES, k=5, num_beams=10)] == ["item17"] * 3
    # an item added since training gets no bonus, but the scorer still fits the catalogue
    loaded.add_items(["new0"], codes=[[0, 1, 2]])
    assert [row[0][0] for row in loaded.recommend(HISTORIES, k=5, num_beams=10)] == ["item17"] * 3
    loaded.scorer = loaded.scorer  # n - 1 items: the catalogue without the one added since training


def test_bad_scorer_input_fails_clearly(tiny_model, item_tokenizer):
    n = item_tokenizer.num_items
    recommender = GenerativeRecommender(tiny_model, item_tokenizer)
    with pytest.raises(ValueError, match="has none"):
        recommender.recommend(HISTORIES, k=5, scorer_weight=1.0)
    with pytest.raises(ValueError, match="must number items as the recommender's item map"):
        recommender.scorer = fixed_scorer(n + 3, {1: 1.0})
    with pytest.raises(TypeError, match="SASRecModel"):
        recommender.scorer = tiny_model
    recommender.scorer = fixed_scorer(n, {1: 1.0})
    with pytest.raises(ValueError, match=">= 0"):
        recommender.recommend(HISTORIES, k=5, scorer_weight=-1.0)
    assert np.isfinite([s for row in recommender.recommend(HISTORIES, k=5, scorer_weight=1.0) for _, s in row]).all()
