"""Training the hybrid's scorer: `train_sasrec`, `ScorerArguments` / `fit_scorer`, and `GenRecTrainer(scorer=...)`."""

import pytest
import torch

from hf_genrec.hybrid import ScorerArguments, fit_scorer, scorer_minutes, scorer_ranking
from hf_genrec.sasrec import SASRecConfig, SASRecModel, train_sasrec
from hf_genrec.trainer import GenRecTrainer

from .conftest import tiny_training_args

WALKS = [[(s + t) % 12 for t in range(6)] for s in range(12)] * 3  # item i is followed by i + 1


def small_config(**overrides) -> SASRecConfig:
    return SASRecConfig(**{"num_items": 12, "max_positions": 8, "hidden_size": 16, "dropout": 0.0, **overrides})


def test_train_sasrec_learns_the_walk_records_its_cost_and_saves_it(tmp_path):
    model, info = train_sasrec(WALKS, small_config(), epochs=30, learning_rate=0.01, seed=0)
    assert info["epochs"] == 30.0 and info["steps"] == 30 and info["train_minutes"] > 0
    ranked = scorer_ranking(model, [[3, 4, 5], [10, 11]], k=1, exclude_history=False)
    assert ranked.tolist() == [[6], [0]]
    assert not model.training
    model.save_pretrained(tmp_path)
    loaded = SASRecModel.from_pretrained(tmp_path)
    assert loaded.config.training_summary == info and scorer_minutes(loaded) == info["train_minutes"]
    # the same seed trains the same weights
    again, _ = train_sasrec(WALKS, small_config(), epochs=30, learning_rate=0.01, seed=0)
    assert torch.equal(again.item_embeddings.weight, model.item_embeddings.weight)


def test_train_sasrec_stops_at_its_time_budget():
    _, info = train_sasrec(WALKS * 20, small_config(), epochs=10_000, batch_size=4, max_minutes=0.05)
    assert 0.05 <= info["train_minutes"] < 0.5 and info["epochs"] < 10_000


@pytest.mark.parametrize(
    ("sequences", "kwargs", "message"),
    [
        ([[0, 12]], {}, "outside 0..11"),
        ([[0, -1]], {}, "outside 0..11"),
        ([[0], [3]], {}, "no next item"),
        (WALKS, {"epochs": 0}, "epochs must be at least 1"),
        (WALKS, {"max_minutes": 0}, "max_minutes must be positive"),
    ],
)
def test_train_sasrec_refuses_bad_input(sequences, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train_sasrec(sequences, small_config(), **kwargs)


def test_scorer_arguments_are_checked():
    with pytest.raises(ValueError, match="scorer must be one of"):
        ScorerArguments(scorer="bert4rec")
    with pytest.raises(ValueError, match="scorer_max_minutes must be positive"):
        ScorerArguments(scorer="sasrec", scorer_max_minutes=-1)
    with pytest.raises(ValueError, match="at least 1"):
        ScorerArguments(scorer="sasrec", scorer_max_history=0)
    with pytest.raises(ValueError, match="scorer_budget_share must be between 0 and 1"):
        ScorerArguments(scorer="sasrec", scorer_budget_share=1.0)


def test_scorer_budget_share_limits_its_training_to_a_share_of_the_run_budget():
    args = ScorerArguments(scorer="sasrec", scorer_epochs=10_000, scorer_batch_size=4, scorer_budget_share=0.25)
    with pytest.raises(ValueError, match="max_train_minutes, which is not set"):
        fit_scorer(args, WALKS * 20, 12)
    scorer = fit_scorer(args, WALKS * 20, 12, budget_minutes=0.2)  # a quarter: 3 seconds
    assert 0.05 <= scorer_minutes(scorer) < 0.5 and scorer.config.training_summary["epochs"] < 10_000


def test_fit_scorer_trains_or_reads_back_and_refuses_a_mismatched_checkpoint(tmp_path):
    assert fit_scorer(ScorerArguments(), WALKS, 12) is None
    args = ScorerArguments(scorer="sasrec", scorer_epochs=2, scorer_max_history=8, scorer_hidden_size=16)
    scorer = fit_scorer(args, WALKS, 12, seed=0)
    assert scorer.config.num_items == 12 and scorer.config.max_positions == 8
    assert scorer.config.training_summary["epochs"] == 2.0
    checkpoint = tmp_path / "checkpoint-5"
    scorer.save_pretrained(checkpoint / "scorer")
    read = fit_scorer(args, WALKS, 12, checkpoint=checkpoint)
    assert torch.equal(read.item_embeddings.weight, scorer.item_embeddings.weight)
    with pytest.raises(ValueError, match="was trained with a scorer"):
        fit_scorer(ScorerArguments(), WALKS, 12, checkpoint=checkpoint)
    with pytest.raises(ValueError, match="holds no scorer/ folder"):
        fit_scorer(args, WALKS, 12, checkpoint=tmp_path / "checkpoint-9")


def test_trainer_checks_its_scorer(tiny_model, item_tokenizer, tmp_path):
    with pytest.raises(ValueError, match="pass `scorer=`"):
        GenRecTrainer(
            model=tiny_model, args=tiny_training_args(tmp_path, scorer_weight=1.0), item_tokenizer=item_tokenizer
        )
    with pytest.raises(ValueError, match="must number items as the recommender's item map"):
        GenRecTrainer(
            model=tiny_model,
            args=tiny_training_args(tmp_path),
            item_tokenizer=item_tokenizer,
            scorer=SASRecModel(small_config()),
        )
    with pytest.raises(ValueError, match="scorer_weight must be >= 0"):
        tiny_training_args(tmp_path, scorer_weight=-1.0)
    with pytest.raises(ValueError, match="scorer_weights must be"):
        tiny_training_args(tmp_path, scorer_weights=[])


def test_trainer_fuses_the_scorer_after_the_prior(tiny_model, item_tokenizer, tmp_path):
    from hf_genrec.item_scorer import fusion_processors
    from hf_genrec.transitions import ItemTransitions

    n = item_tokenizer.num_items
    scorer = SASRecModel(small_config(num_items=n)).eval()
    transitions = ItemTransitions.fit([list(range(n))], n)
    args = tiny_training_args(tmp_path, transition_weight=1.0, scorer_weight=2.0, scorer_top_k=3)
    trainer = GenRecTrainer(
        model=tiny_model, args=args, item_tokenizer=item_tokenizer, transitions=transitions, scorer=scorer
    )
    histories = [[0, 1], [5]]
    prior, fused = trainer._fusion(histories)
    (expected,) = fusion_processors(
        histories,
        trainer.trie_index,
        trainer._spellings,
        trainer._item_paths,
        scorer=scorer,
        scorer_weight=2.0,
        scorer_top_k=3,
    )
    torch.testing.assert_close(fused.node_bonus, expected.node_bonus)
    assert not torch.equal(prior.node_bonus, fused.node_bonus)
    trainer.args.transition_weight = 0.0
    (only,) = trainer._fusion(histories)
    torch.testing.assert_close(only.node_bonus, expected.node_bonus)
