"""Successor counts of the training sequences and their shallow fusion into the constrained beam search."""

import numpy as np
import pytest
import torch

from hf_genrec.decoding.fusion import TransitionFusionLogitsProcessor, best_fusion_weight
from hf_genrec.decoding.generate import build_trie_index, generate_items, item_spellings
from hf_genrec.models.prior import ItemTransitions

from .conftest import encode_histories


def test_fit_counts_each_items_successors(tmp_path):
    transitions = ItemTransitions.fit([[0, 1, 2, 1, 2], [1, 2], [3], [2, 0]], num_items=5)
    rows, probs = transitions.probabilities(1)
    assert rows.tolist() == [2] and probs.tolist() == [1.0]  # 1 -> 2 three times
    rows, probs = transitions.probabilities(2)
    assert dict(zip(rows.tolist(), probs.tolist())) == {0: 0.5, 1: 0.5}
    assert transitions.probabilities(4)[0].size == 0 and transitions.probabilities(-1)[0].size == 0
    transitions.save_pretrained(tmp_path)
    loaded = ItemTransitions.from_pretrained(tmp_path)
    assert np.array_equal(loaded.indptr, transitions.indptr) and np.array_equal(loaded.counts, transitions.counts)
    with pytest.raises(ValueError, match="outside"):
        ItemTransitions.fit([[0, 7]], num_items=5)
    with pytest.raises(ValueError, match="CSR"):
        ItemTransitions(np.array([0, 2]), np.array([1]), np.array([1.0]))
    with pytest.raises(FileNotFoundError, match="no item transitions"):
        ItemTransitions.from_pretrained(tmp_path / "missing")


@pytest.mark.parametrize("renormalize", [False, True])
@pytest.mark.parametrize("method", ["fast", "vectorised", "reference"])
def test_fused_exact_search_adds_the_prior_to_each_items_log_probability(
    tiny_model, item_tokenizer, method, renormalize
):
    """With as many beams as items the search is exact: every item's fused score is its log-probability under the
    model plus ``weight * log(1 + P(item | last item) / smoothing)``, and the ranking follows those scores."""
    tiny_model.generation_config.renormalize_logits = renormalize
    n = item_tokenizer.num_items
    rng = np.random.default_rng(0)
    sequences = [rng.choice(n, size=8).tolist() for _ in range(30)] + [[5, 9], [5, 9], [5, 12]]
    transitions = ItemTransitions.fit(sequences, n)
    histories = [["item1", "item5"], ["item7", "item3"], ["item39"]]
    last = item_tokenizer.index_of([h[-1] for h in histories]).tolist()
    input_ids, mask = encode_histories(item_tokenizer, histories)
    full_items, full_scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=n, method=method
    )
    index = build_trie_index(item_tokenizer)
    spellings = torch.from_numpy(item_spellings(item_tokenizer))
    priors = [transitions.prior([item]) for item in last]
    fusion = TransitionFusionLogitsProcessor(index, spellings, priors, weight=1.5, smoothing=0.05)
    items, scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=n, method=method, index=index, fusion=fusion
    )
    for row, item in enumerate(last):
        prior = dict(zip(*transitions.probabilities(item)))
        expected = {
            int(i): float(s) + 1.5 * np.log1p(prior.get(int(i), 0.0) / 0.05)
            for i, s in zip(full_items[row], full_scores[row])
        }
        got = dict(zip(items[row].tolist(), scores[row].tolist()))
        assert got.keys() == expected.keys()
        for i in got:
            assert got[i] == pytest.approx(expected[i], abs=1e-4)
        assert (scores[row][:-1] >= scores[row][1:] - 1e-6).all()
    # item 5 was followed by item 9 twice: the fusion moves it up for the first history
    assert items[0].tolist().index(9) <= full_items[0].tolist().index(9)


def test_fusion_composes_with_excluded_items_and_spares_histories_without_successors(tiny_model, item_tokenizer):
    n = item_tokenizer.num_items
    transitions = ItemTransitions.fit([[1, 2], [1, 3], [1, 3]], n)
    histories = [["item0", "item1"], ["item4"]]  # item 4 was never followed by anything
    input_ids, mask = encode_histories(item_tokenizer, histories)
    index = build_trie_index(item_tokenizer)
    spellings = torch.from_numpy(item_spellings(item_tokenizer))
    priors = [transitions.prior([0, 1]), transitions.prior([4])]
    fusion = TransitionFusionLogitsProcessor(index, spellings, priors, weight=20.0, smoothing=0.01)
    plain, plain_scores = generate_items(tiny_model, item_tokenizer, input_ids, mask, num_beams=10, k=10)
    items, scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=10, k=10, index=index, fusion=fusion,
        exclude_items=[[0, 1, 3], [4]],
    )  # fmt: skip
    assert items[0, 0] == 2  # the one successor left after excluding 3 (and the history) comes first
    assert not {0, 1, 3} & set(items[0].tolist())
    expected = [i for i in plain[1].tolist() if i != 4][:10]
    assert items[1].tolist()[: len(expected) - 1] == expected[: len(expected) - 1]
    with pytest.raises(ValueError, match="smoothing"):
        TransitionFusionLogitsProcessor(index, spellings, priors[:1], weight=1.0, smoothing=0.0)


def test_trainer_and_recommender_fuse_the_prior_and_bundles_keep_it(tmp_path, tiny_model, item_tokenizer):
    import datasets

    from hf_genrec import GenerativeRecommender
    from hf_genrec.bundle.config import GenRecConfig
    from hf_genrec.decoding.fusion import FusionConfig
    from hf_genrec.training.examples import tokenize_examples
    from hf_genrec.training.trainer import GenRecTrainer

    from .conftest import tiny_training_args

    n = item_tokenizer.num_items
    # after item 3 always came item 17: a strong prior sends 17 to the top for every history ending in 3
    transitions = ItemTransitions.fit([[3, 17]] * 5 + [[4, 8]], n)
    histories = [["item1", "item3"], ["item9", "item3"], ["item4"], ["item22"]]
    rows = datasets.Dataset.from_dict({"history": histories, "target": ["item17"] * len(histories)})
    with pytest.raises(ValueError, match="pass `transitions=`"):
        GenRecTrainer(
            model=tiny_model, args=tiny_training_args(tmp_path, transition_weight=5.0), item_tokenizer=item_tokenizer
        )
    args = tiny_training_args(tmp_path, transition_weight=5.0, num_beams=10, eval_ks=[1, 10])
    trainer = GenRecTrainer(model=tiny_model, args=args, item_tokenizer=item_tokenizer, transitions=transitions)
    predictions = trainer.predict(tokenize_examples(rows, item_tokenizer)).predictions
    assert predictions[:2, 0].tolist() == [17, 17] and predictions[2, 0] == 8

    config = GenRecConfig(fusion=FusionConfig(transition_weight=5.0))
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, config=config, transitions=transitions)
    fused = recommender.recommend(histories, k=10, num_beams=10)
    assert [row[0][0] for row in fused[:3]] == ["item17", "item17", "item8"]
    plain = recommender.recommend(histories, k=10, num_beams=10, transition_weight=0)
    assert fused[3] == plain[3]  # item 22 was never followed by anything: the model alone ranks it
    recommender.save_pretrained(tmp_path / "bundle")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "bundle")
    assert loaded.config.fusion.transition_weight == 5.0
    assert loaded.recommend(histories, k=10, num_beams=10) == fused
    # the spelling table the fusion uses is cached, and rebuilt when the catalogue grows
    assert loaded.spellings is loaded.spellings and len(loaded.spellings) == n
    loaded.add_items(["new0"], codes=[[0, 1, 2]])
    assert len(loaded.spellings) == n + 1
    grown = loaded.recommend(histories, k=10, num_beams=10)
    assert [row[0][0] for row in grown[:3]] == ["item17", "item17", "item8"]
    loaded.transitions = None
    with pytest.raises(ValueError, match="needs the item transitions"):
        loaded.recommend(histories, k=10, num_beams=10)
    with pytest.raises(ValueError, match=">= 0"):
        recommender.recommend(histories, k=10, num_beams=10, transition_weight=-1)


def test_sasrec_ranks_with_the_same_dense_bonus():
    from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad

    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(num_items=30, max_positions=8, hidden_size=16, num_layers=1, num_heads=1))
    transitions = ItemTransitions.fit([[3, 17], [3, 17], [3, 5]], 30)
    histories = [[0, 1, 3], [7, 8]]
    tokens = left_pad(histories, 8)
    plain_items, plain_scores = model.recommend(tokens, k=30)
    bonus = transitions.dense_bonus(histories, weight=2.0, smoothing=0.1)
    assert bonus[0, 17] == pytest.approx(2.0 * np.log1p((2 / 3) / 0.1)) and (bonus[1] == 0).all()
    items, scores = model.recommend(tokens, k=30, item_bonus=bonus)
    for row in range(2):
        expected = {int(i): float(s) + float(bonus[row, i]) for i, s in zip(plain_items[row], plain_scores[row])}
        assert dict(zip(items[row].tolist(), scores[row].tolist())) == pytest.approx(expected)
    with pytest.raises(ValueError, match="item_bonus must be"):
        model.recommend(tokens, k=5, item_bonus=bonus[:, :5])


def test_shrinkage_discounts_rarely_seen_items_and_is_saved(tmp_path):
    # item 0 was followed by 1 once; item 2 by 3 nine times and by 4 once
    transitions = ItemTransitions.fit([[0, 1]] + [[2, 3]] * 9 + [[2, 4]], num_items=5, shrinkage=3.0)
    assert transitions.probabilities(0)[1].tolist() == [0.25]  # 1 / (1 + 3), not certainty
    assert np.allclose(transitions.probabilities(2)[1], [9 / 13, 1 / 13])
    # mixing the last two items: the well-observed one now outweighs the once-seen one's single successor
    items, probs = transitions.prior([2, 0], recent=2)
    prior = dict(zip(items.tolist(), probs.tolist()))
    assert prior[3] > prior[1]
    items, probs = ItemTransitions.fit([[0, 1]] + [[2, 3]] * 9 + [[2, 4]], num_items=5).prior([2, 0], recent=2)
    plain = dict(zip(items.tolist(), probs.tolist()))
    assert plain[1] > plain[3]  # without shrinkage the single observation wins
    transitions.save_pretrained(tmp_path)
    assert ItemTransitions.from_pretrained(tmp_path).shrinkage == 3.0
    with pytest.raises(ValueError, match="shrinkage must be >= 0"):
        ItemTransitions.fit([[0, 1]], num_items=2, shrinkage=-1.0)
    with pytest.raises(ValueError, match="shrinkage must be >= 0"):
        ItemTransitions(np.array([0, 1, 1]), np.array([1]), np.array([1.0]), shrinkage=float("nan"))


def test_a_wider_window_counts_later_items_at_one_over_their_distance():
    transitions = ItemTransitions.fit([[0, 1, 2, 3], [0, 2]], num_items=4, window=3)
    rows, probs = transitions.probabilities(0)
    counts = {1: 1.0, 2: 1 / 2 + 1.0, 3: 1 / 3}
    total = sum(counts.values())
    assert dict(zip(rows.tolist(), probs.tolist())) == pytest.approx({k: v / total for k, v in counts.items()})
    assert ItemTransitions.fit([[0, 1, 2, 3]], 4).probabilities(0)[0].tolist() == [1]
    with pytest.raises(ValueError, match="window"):
        ItemTransitions.fit([[0, 1]], 4, window=0)


def test_the_prior_mixes_the_recent_items_successors_most_recent_first():
    transitions = ItemTransitions.fit([[0, 5], [1, 6], [2, 7], [2, 8]], num_items=10)
    items, probs = transitions.prior([0, 1, 2], recent=2)  # 2 (weight 1) then 1 (weight 1/2)
    assert dict(zip(items.tolist(), probs.tolist())) == pytest.approx({7: 1 / 3, 8: 1 / 3, 6: 1 / 3})
    items, probs = transitions.prior([0, 1, 2, 9], recent=2)  # 9 has no successors: 2 alone
    assert dict(zip(items.tolist(), probs.tolist())) == pytest.approx({7: 0.5, 8: 0.5})
    assert transitions.prior([9], recent=3)[0].size == 0 and transitions.prior([], recent=3)[0].size == 0
    assert transitions.prior([0, 1, 2], recent=1)[0].tolist() == [7, 8]
    with pytest.raises(ValueError, match="recent"):
        transitions.prior([0], recent=0)


def test_the_prior_alone_ranks_successors_then_the_fallback():
    transitions = ItemTransitions.fit([[0, 5], [0, 5], [0, 6], [1, 7]], num_items=10)
    ranked = transitions.predict([[0], [3], [1, 0]], k=4, fallback=[9, 5, 8, 2], exclude=[[], [9], [6]])
    assert ranked.tolist() == [[5, 6, 9, 8], [5, 8, 2, -1], [5, 9, 8, 2]]
    with pytest.raises(ValueError, match="one per history"):
        transitions.predict([[0]], k=2, exclude=[[], []])


class _GridTrainer:
    """The two things `pick_fusion_weights` uses of a trainer: its arguments and `evaluate`."""

    def __init__(self, weights, ndcg_of_weight, scorer_weights=None):
        from types import SimpleNamespace

        self.args = SimpleNamespace(
            transition_weights=weights,
            transition_weight=0.0,
            scorer_weights=scorer_weights,
            scorer_weight=0.0,
            metric_for_best_model=None,
        )
        self.ndcg_of_weight = ndcg_of_weight

    def evaluate(self, dataset, metric_key_prefix):
        if self.args.scorer_weights is None:
            return {f"{metric_key_prefix}_ndcg@10": self.ndcg_of_weight(self.args.transition_weight)}
        return {
            f"{metric_key_prefix}_ndcg@10": self.ndcg_of_weight(self.args.transition_weight, self.args.scorer_weight)
        }


@pytest.mark.parametrize(
    ("ndcg_of_weight", "best", "warns"),
    [
        (lambda w: 1 - (w - 2) ** 2, 2.0, False),  # an interior best: the grid brackets it
        (lambda w: w, 8.0, True),  # still rising at the largest weight
        (lambda w: -w, 0.0, False),  # the model alone: nothing to widen
    ],
)
def test_pick_fusion_weights_keeps_the_best_and_warns_at_the_grid_edge(ndcg_of_weight, best, warns, caplog):
    import logging

    from hf_genrec.recipes.fusion_search import fusion_records, pick_fusion_weights

    trainer = _GridTrainer([0.0, 1.0, 2.0, 4.0, 8.0], ndcg_of_weight)
    with caplog.at_level(logging.WARNING, logger="hf_genrec.recipes.fusion_search"):
        grid = pick_fusion_weights(trainer, validation=None)
    assert trainer.args.transition_weight == best and trainer.args.scorer_weight == 0.0
    assert set(grid) == {(w, 0.0) for w in (0.0, 1.0, 2.0, 4.0, 8.0)}
    assert grid[best, 0.0]["ndcg@10"] == max(m["ndcg@10"] for m in grid.values())
    assert ("a larger weight may do better" in caplog.text) is warns
    if warns:
        assert "e.g. 16.0" in caplog.text
    # without a scorer, results.json keeps its one-dimensional record
    assert fusion_records(grid, trainer.args) == {
        "transition_weight_validation": {str(w): grid[w, 0.0] for w, _ in grid}
    }


def test_pick_fusion_weights_searches_both_weights_when_a_scorer_grid_is_given(caplog):
    import logging

    from hf_genrec.recipes.fusion_search import fusion_records, pick_fusion_weights

    # best at the scorer's largest weight, 4, where prior weights 1 and 2 tie: the smaller is taken
    def ndcg(prior, scorer):
        return 1 - (prior - 2) ** 2 / 10 + scorer / 100 + (prior == 1) * 0.1

    trainer = _GridTrainer([0.0, 1.0, 2.0], ndcg, scorer_weights=[0.0, 1.0, 4.0])
    with caplog.at_level(logging.WARNING, logger="hf_genrec.recipes.fusion_search"):
        grid = pick_fusion_weights(trainer, validation=None)
    assert len(grid) == 9
    assert (trainer.args.transition_weight, trainer.args.scorer_weight) == (1.0, 4.0)
    assert "scorer_weight 4.0, the largest of scorer_weights" in caplog.text
    assert "transition_weight" not in caplog.text  # the prior's best is inside its grid
    records = fusion_records(grid, trainer.args)
    assert records["scorer_weight"] == 4.0 and set(records["fusion_validation"]) == {
        f"{t}/{s}" for t in (0.0, 1.0, 2.0) for s in (0.0, 1.0, 4.0)
    }
    assert records["transition_weight_validation"] == {str(t): grid[t, 4.0] for t in (0.0, 1.0, 2.0)}


def test_best_fusion_weight_takes_the_best_metric_and_the_smaller_weight_on_ties():
    grid = {"0.0": {"ndcg@10": 0.04}, "8.0": {"ndcg@10": 0.07}, "2.0": {"ndcg@10": 0.07}, "16.0": {"ndcg@10": 0.06}}
    assert best_fusion_weight(grid) == "2.0"
    assert best_fusion_weight({"1.0": {"recall@10": 0.2}, "4.0": {"recall@10": 0.3}}, "recall@10") == "4.0"
