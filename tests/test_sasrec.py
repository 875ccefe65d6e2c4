"""SASRec: learns a sequential pattern with Trainer, round-trips through save_pretrained, and refuses bad input."""

import datasets
import numpy as np
import pytest
import torch
from transformers import Trainer, TrainingArguments

from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad
from hf_genrec.training.sasrec import sasrec_training_rows


def walks(n_items, n_users, length, seed=0):
    rng = np.random.default_rng(seed)
    return [[(s + t) % n_items for t in range(length)] for s in rng.integers(0, n_items, size=n_users)]


def test_training_rows_mark_every_position_as_a_target():
    rows = sasrec_training_rows([[4, 5, 6], [7]], max_length=4)
    assert rows["input_ids"].tolist() == [[0, 0, 5, 6], [0, 0, 0, 0]]
    assert rows["labels"].tolist() == [[0, 0, 6, 7], [0, 0, 0, 0]]  # a one-item user has nothing to predict
    assert left_pad([[1, 2, 3]], 2).tolist() == [[3, 4]]


def test_sasrec_learns_the_walk_and_round_trips(tmp_path):
    torch.manual_seed(0)
    train = walks(30, 200, 8)
    config = SASRecConfig(num_items=30, max_positions=8, hidden_size=32, num_layers=2, num_heads=2, dropout=0.1)
    model = SASRecModel(config)
    rows = datasets.Dataset.from_dict({k: v.tolist() for k, v in sasrec_training_rows(train, 8).items()})
    args = TrainingArguments(
        output_dir=str(tmp_path / "run"), num_train_epochs=15, per_device_train_batch_size=64, learning_rate=5e-3,
        report_to="none", save_strategy="no", use_cpu=True, logging_steps=1000,
    )  # fmt: skip
    Trainer(model=model, args=args, train_dataset=rows).train()
    test = walks(30, 50, 8, seed=1)
    histories, targets = [seq[:-1] for seq in test], np.asarray([seq[-1] for seq in test])
    items, scores = model.recommend(left_pad(histories, 8), k=5)
    metrics = ranking_metrics(items.numpy(), targets, [1, 5])
    assert metrics["recall@1"] >= 0.9, metrics
    assert (scores[:, :-1] >= scores[:, 1:]).all() and (items >= 0).all()

    model.save_pretrained(tmp_path / "saved")
    assert not list((tmp_path / "saved").glob("*.bin"))
    loaded = SASRecModel.from_pretrained(tmp_path / "saved")
    again, _ = loaded.recommend(left_pad(histories, 8), k=5)
    assert torch.equal(again, items)


def test_longer_input_than_the_model_reads_is_refused():
    model = SASRecModel(SASRecConfig(num_items=5, max_positions=4, hidden_size=8))
    with pytest.raises(ValueError, match="reads at most 4"):
        model(input_ids=torch.ones(1, 6, dtype=torch.long))


def test_ensemble_ranks_by_the_mean_probability():
    from hf_genrec.models.sasrec import ensemble_recommend

    config = SASRecConfig(num_items=25, max_positions=6, hidden_size=16, num_layers=1, num_heads=1, dropout=0.0)
    models = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        models.append(SASRecModel(config).eval())
    histories = left_pad([[1, 2, 3], [7], [4, 9, 11, 20]], 6)
    bonus = torch.rand(3, 25)
    items, scores = ensemble_recommend(models, histories, k=15, exclude_history=True, item_bonus=bonus)
    probs = []
    with torch.no_grad():
        for m in models:
            logits = m(input_ids=histories).logits.clone()
            for row, tokens in enumerate(histories.tolist()):
                logits[row, tokens] = float("-inf")  # the history's items, and padding (token 0)
            logits[:, 0] = float("-inf")
            probs.append(torch.softmax(logits, dim=-1)[:, 1:])
    mixed = torch.log((probs[0] + probs[1]) / 2) + bonus
    for row in range(3):
        # every returned item carries its mixture score, and nothing outside the history scores higher
        assert torch.allclose(scores[row], mixed[row, items[row]], atol=1e-5)
        history = set((histories[row][histories[row] > 0] - 1).tolist())
        assert not history & set(items[row].tolist())
        best_left = max(mixed[row, i].item() for i in range(25) if i not in history and i not in items[row].tolist())
        assert scores[row, -1].item() >= best_left - 1e-6
    one = ensemble_recommend(models[:1], histories, k=5, exclude_history=True)
    alone = models[0].recommend(histories, k=5, exclude_history=True)
    assert torch.equal(one[0], alone[0]) and torch.allclose(one[1], alone[1])
    with pytest.raises(ValueError, match="same items"):
        ensemble_recommend([models[0], SASRecModel(SASRecConfig(num_items=26, max_positions=6, hidden_size=16))],
                           histories)  # fmt: skip
