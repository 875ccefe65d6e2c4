"""GenRecTrainer trains history → next item and evaluates by constrained ranking; the bundle round-trips."""

import json

import datasets
import pytest
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from hf_genrec.bundle.config import CONFIG_NAME, GenRecConfig
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.training.arguments import GenRecTrainingArguments
from hf_genrec.training.collator import GenRecCollator
from hf_genrec.training.examples import tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, assert_plain_tokenizer_spells_items, cyclic_sequences, tiny_training_args


def _rows(sequences, start, stop):
    return {
        "history": [seq[:t] for seq in sequences for t in range(start, stop)],
        "target": [seq[t] for seq in sequences for t in range(start, stop)],
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny T5 trained for a few seconds on users that walk the catalogue in order."""
    from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

    from .conftest import make_semantic_ids

    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids())
    sequences = cyclic_sequences(40, 60, 6)
    # Held-out users, seen only at test time, with histories as long as the longest in training.
    train = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences[:48], 1, 6)), item_tokenizer)
    test = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences[48:], 5, 6)), item_tokenizer)
    out = tmp_path_factory.mktemp("run")
    args = tiny_training_args(out, logging_steps=1000)
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=train)
    untrained = trainer.evaluate(test)
    trainer.train()
    metrics = trainer.evaluate(test)
    trainer.save_model(str(out))
    return trainer, untrained, metrics, out, sequences


def test_training_learns_the_pattern(trained):
    _, untrained, metrics, _, _ = trained
    assert metrics["eval_invalid_rate"] == 0.0
    assert metrics["eval_recall@5"] >= 0.8, metrics
    assert metrics["eval_recall@5"] > untrained["eval_recall@5"] + 0.3
    assert metrics["eval_loss"] < untrained["eval_loss"]
    assert set(metrics) >= {"eval_recall@1", "eval_ndcg@1", "eval_recall@5", "eval_ndcg@5", "eval_mrr@5"}


def test_saved_bundle_files_and_plain_loading(trained):
    trainer, _, _, out, _ = trained
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "config.json", "tokenizer.json", CONFIG_NAME, "semantic_ids"} <= names
    assert not list(out.rglob("*.pkl")) and not list(out.rglob("*.bin"))
    assert "training_args.json" in names
    # A plain T5 + tokenizer, loadable without hf_genrec code.
    model = AutoModelForSeq2SeqLM.from_pretrained(out)
    assert type(model).__name__ == "T5ForConditionalGeneration"
    assert_plain_tokenizer_spells_items(AutoTokenizer.from_pretrained(out), trainer.item_tokenizer)
    assert json.loads((out / CONFIG_NAME).read_text())["library_version"]


def test_round_trip_gives_the_same_recommendations(trained):
    trainer, _, _, out, sequences = trained
    histories = [seq[:5] for seq in sequences[48:54]]
    before = GenerativeRecommender(trainer.model, trainer.item_tokenizer, GenRecConfig(num_beams=10, top_k=5))
    expected = before.recommend(histories)
    loaded = GenerativeRecommender.from_pretrained(out)
    got = loaded.recommend(histories, k=5, num_beams=10)
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    for row_a, row_b in zip(got, expected):
        torch.testing.assert_close(torch.tensor([s for _, s in row_a]), torch.tensor([s for _, s in row_b]))
    # It learnt the walk: the next item is in the top 5 for most users.
    hits = [seq[5] in [i for i, _ in row] for row, seq in zip(got, sequences[48:54])]
    assert sum(hits) >= 5


def test_recommend_bad_input(trained):
    _, _, _, out, _ = trained
    rec = GenerativeRecommender.from_pretrained(out)
    with pytest.raises(ValueError, match="History 1: Unknown item id 'ghost'"):
        rec.recommend([["item1"], ["item2", "ghost"]])
    with pytest.raises(ValueError, match="Empty history"):
        rec.recommend([[]])
    with pytest.raises(TypeError, match="list of histories"):
        rec.recommend(["item1", "item2"])


def test_plain_t5_checkpoint_is_rejected_clearly(tmp_path, tiny_model, item_tokenizer):
    tiny_model.save_pretrained(tmp_path)
    item_tokenizer.tokenizer.save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an hf_genrec checkpoint"):
        GenerativeRecommender.from_pretrained(tmp_path)


def test_collator_pads_dynamically():
    collator = GenRecCollator(pad_token_id=0)
    batch = collator([{"input_ids": [5, 6, 1], "labels": [7, 1]}, {"input_ids": [5, 1], "labels": [7, 8, 1]}])
    assert batch["input_ids"].tolist() == [[5, 6, 1], [5, 1, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 1, 0]]
    assert batch["labels"].tolist() == [[7, 1, -100], [7, 8, 1]]


def test_training_arguments_reject_too_few_beams(tmp_path):
    with pytest.raises(ValueError, match="num_beams=5 is smaller"):
        GenRecTrainingArguments(output_dir=str(tmp_path), num_beams=5, eval_ks=[10])


def test_time_budget_stops_training_after_evaluating(item_tokenizer, tmp_path):
    sequences = cyclic_sequences(40, 20, 6)
    data = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences, 1, 5)), item_tokenizer)
    args = GenRecTrainingArguments(
        output_dir=str(tmp_path),
        num_train_epochs=50,
        per_device_train_batch_size=8,
        max_train_minutes=1e-6,
        eval_strategy="epoch",
        save_strategy="epoch",
        num_beams=10,
        use_cpu=True,
    )
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    trainer = GenRecTrainer(
        model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=data, eval_dataset=data.select(range(8))
    )
    output = trainer.train()
    assert output.global_step == 1
    assert any("eval_ndcg@10" in entry for entry in trainer.state.log_history)


def test_resumed_run_continues_the_training_clock(item_tokenizer, tmp_path):
    from hf_genrec.training.callbacks import CLOCK_FILE, read_spent_seconds

    sequences = cyclic_sequences(40, 20, 6)
    data = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences, 1, 5)), item_tokenizer)

    def trainer_for(epochs):
        args = tiny_training_args(
            tmp_path, num_train_epochs=epochs, learning_rate=1e-3, max_train_minutes=60, eval_strategy="epoch",
            save_strategy="epoch", save_total_limit=None, eval_ks=[5, 10], seed=42,
        )  # fmt: skip
        model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
        return GenRecTrainer(
            model=model,
            args=args,
            item_tokenizer=item_tokenizer,
            train_dataset=data,
            eval_dataset=data.select(range(8)),
        )

    first = trainer_for(2)
    first.train()
    assert isinstance(first.lr_scheduler, torch.optim.lr_scheduler.LambdaLR)  # annealed over the budget
    checkpoint = tmp_path / f"checkpoint-{first.state.global_step}"
    spent = read_spent_seconds(checkpoint)
    assert (checkpoint / CLOCK_FILE).exists() and spent > 0

    second = trainer_for(3)
    second.train(resume_from_checkpoint=True)
    # the clock resumed from the checkpoint's minutes, ran through the third epoch and stopped with train()
    assert second.clock.spent_seconds > spent and second.clock.start is None
    minutes = [e["train_minutes"] for e in second.state.log_history if "eval_ndcg@10" in e]
    assert len(minutes) == 3 and minutes == sorted(minutes)  # the curve continues across the restart
    assert minutes[-1] >= spent / 60


def test_evaluation_runs_longest_first_and_predict_keeps_the_rows_order(trained):
    """The evaluation sampler sorts a dataset that has its length column by length (longest first, stable);
    `predict` returns one row per example in the dataset's order, although the default train_sampling_strategy
    (group_by_length) would have Trainer shuffle groups of similar length; `evaluate` gives the same metrics."""
    from hf_genrec.training.sampler import eval_sampler

    trainer, _, _, _, sequences = trained
    # histories of mixed lengths, so that the length order and the dataset order differ
    rows = {"history": [], "target": []}
    for i, seq in enumerate(sequences[48:56]):
        length = 1 + (3 * i) % 5
        rows["history"].append(seq[:length])
        rows["target"].append(seq[length])
    data = tokenize_examples(datasets.Dataset.from_dict(rows), trainer.item_tokenizer)
    lengths = data["length"]
    by_length = list(eval_sampler(data, "length", keep_order=False))
    assert [lengths[i] for i in by_length] == sorted(lengths, reverse=True)
    # stable: equal lengths keep their order
    assert all(a < b for a, b in zip(by_length, by_length[1:]) if lengths[a] == lengths[b])
    assert list(eval_sampler(data, "length", keep_order=True)) == list(range(len(data)))
    assert list(eval_sampler(data.remove_columns("length"), "length", keep_order=False)) == list(range(len(data)))
    assert eval_sampler(None, "length", keep_order=False) is None

    prediction = trainer.predict(data)
    expected = trainer.item_tokenizer.index_of([str(t) for t in rows["target"]]).tolist()
    assert prediction.label_ids.tolist() == expected
    assert prediction.predictions.shape == (len(data), max(trainer.args.eval_ks))
    metrics = trainer.evaluate(data)
    assert metrics["eval_recall@5"] == pytest.approx(prediction.metrics["test_recall@5"])
    assert metrics["eval_ndcg@5"] == pytest.approx(prediction.metrics["test_ndcg@5"])


@pytest.mark.parametrize("transition_weight", [0.0, 2.0])
def test_constrained_loss_is_the_trainers_loss_and_needs_no_precomputed_paths(
    tmp_path, item_tokenizer, transition_weight
):
    """`hf_genrec.training.losses.ConstrainedLoss` is what `compute_loss` returns with ``constrained_loss``; the
    trainer hands it the trie paths only for the prior, and the prior's fusion walks the trie alike without them."""
    from hf_genrec.models.prior import ItemTransitions
    from hf_genrec.training.losses import ConstrainedLoss

    sequences = cyclic_sequences(40, 12, 6)
    transitions = ItemTransitions.fit(
        [item_tokenizer.index_of([str(i) for i in seq]).tolist() for seq in sequences], item_tokenizer.num_items
    )
    data = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences, 1, 5)), item_tokenizer)
    args = tiny_training_args(tmp_path, constrained_loss=True, transition_weight_in_loss=transition_weight)
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=item_tokenizer, transitions=transitions)
    batch = trainer.data_collator([data[i] for i in range(16)])
    model.train()
    loss = trainer.compute_loss(model, batch)
    settings = dict(transitions=transitions, transition_weight=transition_weight)
    with_paths = ConstrainedLoss(
        item_tokenizer, trainer.trie_index, trainer._spellings, trainer._item_paths, **settings
    )
    without = ConstrainedLoss(item_tokenizer, trainer.trie_index, trainer._spellings, None, **settings)
    torch.testing.assert_close(with_paths(model, batch), loss)
    torch.testing.assert_close(without(model, batch), loss)
    plain = ConstrainedLoss(item_tokenizer, trainer.trie_index, trainer._spellings)(model, batch)
    assert torch.isclose(plain, loss) == (transition_weight == 0)
    with pytest.raises(ValueError, match="transitions=ItemTransitions.fit"):
        ConstrainedLoss(item_tokenizer, trainer.trie_index, trainer._spellings, transition_weight=1.0)(model, batch)


def test_training_arguments_live_beside_the_trainer_not_in_it():
    """The public name resolves to `hf_genrec.training.arguments`, which the trainer and the recipes import."""
    import hf_genrec
    from hf_genrec.training import arguments, trainer

    assert hf_genrec.GenRecTrainingArguments is arguments.GenRecTrainingArguments
    assert GenRecTrainingArguments.__module__ == "hf_genrec.training.arguments"
    assert trainer.GenRecTrainingArguments is arguments.GenRecTrainingArguments


def test_loading_the_best_checkpoint_ties_weights_without_a_missing_keys_warning(item_tokenizer, tmp_path, caplog):
    """`save_pretrained` leaves out tied weights; loading the best checkpoint back must not call them missing (a new
    user took that warning for a broken checkpoint), while a key that is really missing is still reported."""
    import logging

    sequences = cyclic_sequences(item_tokenizer.num_items, 16, 6)
    rows = tokenize_examples(datasets.Dataset.from_dict(_rows(sequences, 1, 6)), item_tokenizer)
    args = tiny_training_args(
        tmp_path, num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
        metric_for_best_model="ndcg@5", save_total_limit=1,
    )  # fmt: skip
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    trainer = GenRecTrainer(
        model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=rows, eval_dataset=rows.select(range(8))
    )
    caplog.set_level(logging.WARNING)
    trainer.train()
    assert not [r for r in caplog.records if "missing keys" in r.getMessage()]
    assert trainer.model.lm_head.weight.data_ptr() == trainer.model.shared.weight.data_ptr()  # tied again
    # a key that is not a tied weight is still reported
    from types import SimpleNamespace

    caplog.clear()
    trainer._issue_warnings_after_load(
        SimpleNamespace(missing_keys=["encoder.final_layer_norm.weight"], unexpected_keys=[])
    )
    assert any("missing keys" in r.getMessage() for r in caplog.records)
