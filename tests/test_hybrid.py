"""Training the hybrid's scorer: `train_sasrec`, `ScorerArguments` / `fit_scorer`, and `GenRecTrainer(scorer=...)`."""

import pytest
import torch

from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, rank_histories
from hf_genrec.recipes.scorer import ScorerArguments, fit_scorer, scorer_minutes, scorer_settings_for
from hf_genrec.training.sasrec import BestValidationState, train_sasrec
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import tiny_training_args

WALKS = [[(s + t) % 12 for t in range(6)] for s in range(12)] * 3  # item i is followed by i + 1


def small_config(**overrides) -> SASRecConfig:
    return SASRecConfig(**{"num_items": 12, "max_positions": 8, "hidden_size": 16, "dropout": 0.0, **overrides})


def test_train_sasrec_learns_the_walk_records_its_cost_and_saves_it(tmp_path):
    model, info = train_sasrec(WALKS, small_config(), epochs=30, learning_rate=0.01, seed=0)
    assert info["epochs"] == 30.0 and info["steps"] == 30 and info["train_minutes"] > 0
    ranked = rank_histories(model, [[3, 4, 5], [10, 11]], k=1, exclude_history=False)
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


# held-out users of the walk: the next item of each history is the one after its last
WALK_VALIDATION = ([[s, (s + 1) % 12] for s in range(12)], [(s + 2) % 12 for s in range(12)])


def test_rank_histories_batches_adds_a_bonus_and_averages_models():
    model, _ = train_sasrec(WALKS, small_config(), epochs=30, learning_rate=0.01, seed=0)
    histories = [[s, (s + 1) % 12] for s in range(12)]
    whole = rank_histories(model, histories, k=3)
    assert whole[:, 0].tolist() == [(s + 2) % 12 for s in range(12)]
    assert torch.equal(torch.from_numpy(rank_histories(model, histories, k=3, batch_size=5)), torch.from_numpy(whole))
    # a bonus large enough puts item 7 first for every history
    bonus = lambda chunk: torch.nn.functional.one_hot(torch.full((len(chunk),), 7), 12).float() * 100  # noqa: E731
    assert set(rank_histories(model, histories, k=1, item_bonus=bonus)[:, 0].tolist()) == {7}
    # an ensemble of a model with itself ranks as the model does
    assert (rank_histories([model, model], histories, k=3) == whole).all()
    assert rank_histories(model, [], k=3).shape == (0, 3)
    with pytest.raises(ValueError, match="at least one SASRecModel"):
        rank_histories([], histories, k=3)


def test_best_validation_state_keeps_the_best_weights_and_stops_on_patience():
    from transformers import TrainerControl, TrainerState

    good, _ = train_sasrec(WALKS, small_config(), epochs=30, learning_rate=0.01, seed=0)
    keeper = BestValidationState(*WALK_VALIDATION, every_epochs=2, patience=1)
    state, control = TrainerState(), TrainerControl()
    state.epoch, state.global_step = 1.0, 1
    keeper.on_epoch_end(None, state, control, model=good)  # not a ranking epoch
    assert keeper.curve == []
    state.epoch, state.global_step = 2.0, 2
    keeper.on_epoch_end(None, state, control, model=good)
    assert keeper.best["ndcg@10"] == 1.0 and keeper.best["epoch"] == 2.0 and not control.should_training_stop
    trained = {key: value.clone() for key, value in good.state_dict().items()}
    with torch.no_grad():  # the weights go bad: ranked worse, so the kept state stays the trained one
        good.item_embeddings.weight.normal_()
    state.epoch, state.global_step = 4.0, 4
    keeper.on_epoch_end(None, state, control, model=good)
    assert keeper.curve[-1]["ndcg@10"] < 1.0 and control.should_training_stop
    assert all(torch.equal(keeper.best_state[key], trained[key]) for key in trained)
    assert good.training  # ranking leaves the model training
    with pytest.raises(ValueError, match="one target per history"):
        BestValidationState([[0]], [1, 2])
    with pytest.raises(ValueError, match="must be at least 1"):
        BestValidationState([[0]], [1], patience=0)


def test_train_sasrec_keeps_its_best_validation_state_and_stops_without_progress():
    model, info = train_sasrec(
        WALKS, small_config(), epochs=500, learning_rate=0.01, seed=0, validation=WALK_VALIDATION, patience=3
    )
    # the walk is learnt perfectly long before 500 epochs; three rankings later training stops
    assert info["validation_ndcg@10"] == 1.0 and info["epochs"] == info["best_epoch"] + 3 < 500
    assert [point["epoch"] for point in info["validation_curve"]] == [
        float(e) for e in range(1, 1 + int(info["epochs"]))
    ]
    assert rank_histories(model, WALK_VALIDATION[0], k=1)[:, 0].tolist() == WALK_VALIDATION[1]
    assert model.config.training_summary["best_epoch"] == info["best_epoch"]
    with pytest.raises(ValueError, match="outside 0..11"):
        train_sasrec(WALKS, small_config(), epochs=1, validation=([[0]], [12]))
    with pytest.raises(ValueError, match="Validation history 0 holds item rows outside 0..11"):
        train_sasrec(WALKS, small_config(), epochs=1, validation=([[12]], [0]))


def test_train_sasrec_ranks_the_last_weights_when_the_budget_stops_it_between_rankings():
    _, info = train_sasrec(
        WALKS * 20, small_config(), epochs=10_000, batch_size=4, max_minutes=0.03, validation=WALK_VALIDATION,
        eval_every_epochs=10_000,
    )  # fmt: skip
    assert len(info["validation_curve"]) == 1 and info["validation_curve"][0]["epoch"] == info["epochs"] < 10_000
    assert info["best_epoch"] == info["epochs"]


def walk_training(output_dir, **kwargs):
    return train_sasrec(
        WALKS, small_config(), epochs=12, learning_rate=0.01, seed=0, validation=WALK_VALIDATION, batch_size=8,
        output_dir=output_dir, **kwargs,
    )  # fmt: skip


def test_train_sasrec_resumes_a_stopped_training_where_it_stopped(tmp_path, monkeypatch):
    whole, whole_info = walk_training(tmp_path / "whole")
    # the finished model replaced the checkpoints, and a resume reads it back without training
    assert not list((tmp_path / "whole").glob("checkpoint-*"))
    again, again_info = walk_training(tmp_path / "whole", resume=True)
    assert again_info == whole_info and torch.equal(again.item_embeddings.weight, whole.item_embeddings.weight)

    rank = BestValidationState._rank

    def stop_at_epoch_7(self, state, control, model):  # as a killed run: after epoch 6's checkpoint was saved
        if state.epoch >= 7:
            raise KeyboardInterrupt
        rank(self, state, control, model)

    monkeypatch.setattr(BestValidationState, "_rank", stop_at_epoch_7)
    with pytest.raises(KeyboardInterrupt):
        walk_training(tmp_path / "stopped")
    assert [p.name for p in (tmp_path / "stopped").glob("checkpoint-*")] == ["checkpoint-30"]  # 5 steps an epoch
    monkeypatch.setattr(BestValidationState, "_rank", rank)
    with pytest.raises(ValueError, match="already holds a SASRec training"):
        walk_training(tmp_path / "stopped")
    with pytest.raises(ValueError, match=r"learning_rate: 0.01 then, 0.02 now"):
        train_sasrec(
            WALKS, small_config(), epochs=12, learning_rate=0.02, seed=0, validation=WALK_VALIDATION, batch_size=8,
            output_dir=tmp_path / "stopped", resume=True,
        )  # fmt: skip
    with pytest.raises(ValueError, match="sequences: '36 sequences"):
        train_sasrec(
            WALKS[:-1], small_config(), epochs=12, learning_rate=0.01, seed=0, validation=WALK_VALIDATION,
            batch_size=8, output_dir=tmp_path / "stopped", resume=True,
        )  # fmt: skip
    resumed, info = walk_training(tmp_path / "stopped", resume=True)
    # the same epochs, validation curve and kept weights as the training that was never stopped
    assert info["steps"] == whole_info["steps"] and info["best_epoch"] == whole_info["best_epoch"]
    drop_minutes = lambda curve: [{k: v for k, v in p.items() if k != "minutes"} for p in curve]  # noqa: E731
    assert drop_minutes(info["validation_curve"]) == drop_minutes(whole_info["validation_curve"])
    assert all(p["minutes"] > 0 for p in info["validation_curve"])
    assert torch.allclose(resumed.item_embeddings.weight, whole.item_embeddings.weight, atol=1e-6)
    with pytest.raises(ValueError, match="pass output_dir too"):
        train_sasrec(WALKS, small_config(), epochs=1, resume=True)
    (tmp_path / "foreign" / "checkpoint-3").mkdir(parents=True)  # not train_sasrec's: neither resumed nor overwritten
    for resume in (False, True):
        with pytest.raises(ValueError, match="holds checkpoints but no sasrec_training.json"):
            walk_training(tmp_path / "foreign", resume=resume)


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
    with pytest.raises(ValueError, match="scorer_patience must be at least 1"):
        ScorerArguments(scorer="sasrec", scorer_patience=0)
    with pytest.raises(ValueError, match="scorer_budget_share must be between 0 and 1"):
        ScorerArguments(scorer="sasrec", scorer_budget_share=1.0)
    with pytest.raises(ValueError, match=r"scorer_dropout must be in \[0, 1\)"):
        ScorerArguments(scorer="sasrec", scorer_dropout=1.0)


def test_scorer_settings_follow_the_sequence_lengths_unless_set():
    short, long = [[0, 1, 2]] * 3, [list(range(60))] * 2 + [[0, 1, 2]]  # means 3 and 41: both short
    assert scorer_settings_for(short)["max_history"] == 50 and scorer_settings_for(short)["dropout"] == 0.5
    assert scorer_settings_for(long)["max_history"] == 50
    longer = [list(range(60))] * 3  # mean 60
    assert scorer_settings_for(longer) == {"max_history": 200, "dropout": 0.2, "mean_length": 60.0}
    with pytest.raises(ValueError, match="at least one training sequence"):
        scorer_settings_for([])
    walks = [[i % 12 for i in range(start, start + 60)] for start in range(4)]
    from_data = fit_scorer(ScorerArguments(scorer="sasrec", scorer_epochs=1, scorer_hidden_size=8), walks, 12)
    assert (from_data.config.max_positions, from_data.config.dropout) == (200, 0.2)
    chosen = ScorerArguments(
        scorer="sasrec", scorer_epochs=1, scorer_hidden_size=8, scorer_max_history=30, scorer_dropout=0.0
    )
    set_by_user = fit_scorer(chosen, walks, 12)
    assert (set_by_user.config.max_positions, set_by_user.config.dropout) == (30, 0.0)


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
    # with the run's validation users it keeps its best ranking state and says which
    validated = fit_scorer(args, WALKS, 12, seed=0, validation=WALK_VALIDATION)
    assert validated.config.training_summary["best_epoch"] in (1.0, 2.0)
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
    from hf_genrec.decoding.fusion import FusionConfig, fusion_processors
    from hf_genrec.models.prior import ItemTransitions

    n = item_tokenizer.num_items
    scorer = SASRecModel(small_config(num_items=n)).eval()
    transitions = ItemTransitions.fit([list(range(n))], n)
    args = tiny_training_args(tmp_path, transition_weight=1.0, scorer_weight=2.0, scorer_top_k=3)
    trainer = GenRecTrainer(
        model=tiny_model, args=args, item_tokenizer=item_tokenizer, transitions=transitions, scorer=scorer
    )
    histories = [[0, 1], [5]]

    def scorer_alone(scorer_histories=None):
        (processor,) = fusion_processors(
            histories,
            trainer.trie_index,
            trainer._spellings,
            trainer._item_paths,
            FusionConfig(scorer_weight=2.0, scorer_top_k=3),
            scorer=scorer,
            scorer_histories=scorer_histories,
        )
        return processor

    prior, fused = trainer._fusion(histories)
    expected = scorer_alone()
    torch.testing.assert_close(fused.node_bonus, expected.node_bonus)
    assert not torch.equal(prior.node_bonus, fused.node_bonus)
    trainer.args.transition_weight = 0.0
    (only,) = trainer._fusion(histories)
    torch.testing.assert_close(only.node_bonus, expected.node_bonus)
    # the scorer reads the examples' longer histories (SCORER_HISTORY) where they carry them
    longer = [[4, 3, 0, 1], [2, 5]]
    (reads_longer,) = trainer._fusion(histories, longer)
    expected_longer = scorer_alone(longer)
    torch.testing.assert_close(reads_longer.node_bonus, expected_longer.node_bonus)
    assert not torch.equal(reads_longer.node_bonus, only.node_bonus)
    with pytest.raises(ValueError, match="scorer_histories has 1 entries for 2 histories"):
        trainer._fusion(histories, longer[:1])


def test_add_scorer_history_reads_further_back_and_refuses_rows_that_do_not_match(item_tokenizer):
    import datasets

    from hf_genrec import GenRecCollator
    from hf_genrec.training.examples import add_scorer_history

    items = item_tokenizer.item_ids
    sequences = {"a": items[:6], "b": items[2:5]}
    validation = datasets.Dataset.from_dict(
        {"user_id": ["a", "b"], "history": [items[2:4], items[2:3]], "target": [items[4], items[3]]}
    )
    rows = add_scorer_history(validation, sequences, item_tokenizer, window=3, held_out=2)
    assert rows["scorer_history"] == [[1, 2, 3], [2]]
    with pytest.raises(ValueError, match="pass held_out=2 for validation rows"):
        add_scorer_history(validation, sequences, item_tokenizer, window=3, held_out=1)
    with pytest.raises(ValueError, match="User 'b' of the examples has no sequence"):
        add_scorer_history(validation, {"a": items[:6]}, item_tokenizer, window=3, held_out=2)
    with pytest.raises(ValueError, match="needs a `user_id` column"):
        add_scorer_history(validation.remove_columns("user_id"), sequences, item_tokenizer, window=3, held_out=2)
    # the collator hands the column on as item-row lists, unpadded
    batch = GenRecCollator(pad_token_id=0)(
        [{"input_ids": [5, 6], "scorer_history": [1, 2, 3]}, {"input_ids": [7], "scorer_history": [2]}]
    )
    assert batch["scorer_history"] == [[1, 2, 3], [2]] and batch["input_ids"].shape == (2, 2)
