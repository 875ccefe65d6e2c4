"""Weight averaging (``ema_decay``): the average is exact, validation and checkpoints use it, resuming restores it."""

import datasets
import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainerCallback

from hf_genrec.bundle.layout import TRAINING_WEIGHTS_NAME
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.training.averaging import WeightAverage, ema_decay_schedule
from hf_genrec.training.examples import tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, cyclic_sequences, tiny_training_args


def test_decay_warms_up_then_holds():
    assert ema_decay_schedule(0.999, 0) == pytest.approx(0.1)
    assert ema_decay_schedule(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay_schedule(0.999, 10**6) == 0.999


def test_average_matches_a_hand_computed_one_and_swapping_restores():
    model = torch.nn.Linear(3, 2)
    average = WeightAverage(model, decay=0.5)
    expected = [p.detach().clone() for p in model.parameters()]
    for step in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(float(step + 1))
        average.update(model)
        if step == 0:  # the first update copies the weights
            expected = [p.detach().clone() for p in model.parameters()]
        else:
            decay = ema_decay_schedule(0.5, step)
            expected = [decay * e + (1 - decay) * p.detach() for e, p in zip(expected, model.parameters())]
    raw = [p.detach().clone() for p in model.parameters()]
    with average.swapped_in(model):
        for p, e in zip(model.parameters(), expected):
            torch.testing.assert_close(p.detach(), e)
    for p, r in zip(model.parameters(), raw):
        assert torch.equal(p.detach(), r)


@pytest.mark.parametrize("decay", [0.0 - 1e-3, 1.0])
def test_bad_decay_is_refused(tmp_path, decay):
    with pytest.raises(ValueError, match="ema_decay must be in"):
        tiny_training_args(tmp_path, ema_decay=decay)


class _RecordRawWeights(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, model=None, **kwargs):
        self.steps.append([p.detach().clone() for p in model.parameters()])


def _data(item_tokenizer):
    sequences = cyclic_sequences(40, 24, 6)
    rows = {
        "history": [s[:t] for s in sequences for t in range(1, 5)],
        "target": [s[t] for s in sequences for t in range(1, 5)],
    }
    return tokenize_examples(datasets.Dataset.from_dict(rows), item_tokenizer)


def _trainer(item_tokenizer, tmp_path, data, **overrides):
    args = tiny_training_args(tmp_path, **{"learning_rate": 3e-3, "ema_decay": 0.9, "seed": 0, **overrides})
    model = build_t5_model(item_tokenizer, seed=0, **{**TINY_T5, "dropout_rate": 0.0})
    return GenRecTrainer(
        model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=data, eval_dataset=data.select(range(8))
    )


def test_trained_model_is_the_average_of_its_steps(item_tokenizer, tmp_path):
    data = _data(item_tokenizer)
    trainer = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=3)
    record = _RecordRawWeights()
    trainer.add_callback(record)
    trainer.train()
    assert len(record.steps) == trainer.state.global_step > 3
    expected = record.steps[0]
    for n, weights in enumerate(record.steps[1:], start=1):
        decay = ema_decay_schedule(0.9, n)
        expected = [decay * e + (1 - decay) * w for e, w in zip(expected, weights)]
    final = list(trainer.model.parameters())
    for p, e in zip(final, expected):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    # and not the raw weights of the last step
    assert any(not torch.allclose(p.detach(), w) for p, w in zip(final, record.steps[-1]))
    assert trainer.weight_average is None  # a later evaluate ranks the model as it is


def test_checkpoints_hold_the_average_validation_ranks_it_and_resuming_restores_both(item_tokenizer, tmp_path):
    data = _data(item_tokenizer)
    first = _trainer(
        item_tokenizer, tmp_path, data, num_train_epochs=2, eval_strategy="epoch", save_strategy="epoch",
        save_total_limit=None, eval_ks=[5, 10],
    )  # fmt: skip
    record = _RecordRawWeights()
    first.add_callback(record)
    first.train()
    steps_per_epoch = first.state.global_step // 2
    checkpoint = tmp_path / f"checkpoint-{steps_per_epoch}"
    averaged = load_file(str(checkpoint / "model.safetensors"))
    raw = load_file(str(checkpoint / TRAINING_WEIGHTS_NAME))
    names = [n for n, _ in first.model.named_parameters()]
    # the raw file holds the weights of the checkpoint's step; the model file differs from them (the average)
    for name, weight in zip(names, record.steps[steps_per_epoch - 1]):
        assert torch.equal(raw[name], weight)
    assert any(not torch.equal(averaged[n], raw[n]) for n in names if n in averaged)

    # validation after epoch 1 ranked the checkpoint's (averaged) weights: the same loss, evaluated again from it
    logged = [e["eval_loss"] for e in first.state.log_history if "eval_loss" in e][0]
    fresh = _trainer(item_tokenizer, tmp_path / "fresh", data, ema_decay=0.0)
    fresh.model.load_state_dict(averaged, strict=False)
    assert fresh.evaluate()["eval_loss"] == pytest.approx(logged, rel=1e-5)

    # resuming: the model trains on from the raw weights, the average continues from the checkpoint's
    second = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=2)
    second._load_from_checkpoint(str(checkpoint))
    for name, p in second.model.named_parameters():
        assert torch.equal(p.detach(), raw[name])
    for name, p in zip(names, second.weight_average.averaged.module.parameters()):
        if name in averaged:
            assert torch.equal(p.detach(), averaged[name])
    assert second.weight_average.num_updates == steps_per_epoch


def test_resuming_a_checkpoint_without_raw_weights_says_how(item_tokenizer, tmp_path):
    data = _data(item_tokenizer)
    plain = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=1, save_strategy="epoch", ema_decay=0.0)
    plain.train()
    checkpoint = tmp_path / f"checkpoint-{plain.state.global_step}"
    averaging = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=2)
    with pytest.raises(FileNotFoundError, match="ema_decay=0"):
        averaging.train(resume_from_checkpoint=str(checkpoint))


def test_resuming_without_averaging_continues_from_the_raw_weights(item_tokenizer, tmp_path, caplog):
    data = _data(item_tokenizer)
    first = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=1, save_strategy="epoch")
    first.train()
    checkpoint = tmp_path / f"checkpoint-{first.state.global_step}"
    raw = load_file(str(checkpoint / TRAINING_WEIGHTS_NAME))
    plain = _trainer(item_tokenizer, tmp_path, data, num_train_epochs=2, ema_decay=0.0)
    with caplog.at_level("WARNING", logger="hf_genrec.training.averaging"):
        plain._load_from_checkpoint(str(checkpoint))
    assert "stops averaging" in caplog.text
    for name, p in plain.model.named_parameters():
        assert torch.equal(p.detach(), raw[name])
    assert plain.weight_average is None
