import json
import math

import numpy as np
import pytest

from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.baselines import MostPopular
from hf_genrec.evaluation.metrics import (
    invalid_rate,
    load_evaluate_metric,
    mrr_at_k,
    ndcg_at_k,
    ranking_metrics,
    recall_at_k,
)

PREDS = np.array([[3, 1, 2], [0, 1, 2], [5, -1, 4]])
TARGETS = np.array([1, 2, 9])


def test_recall_ndcg_mrr_by_hand():
    assert recall_at_k(PREDS, TARGETS, 1) == 0.0
    assert recall_at_k(PREDS, TARGETS, 2) == pytest.approx(1 / 3)
    assert recall_at_k(PREDS, TARGETS, 3) == pytest.approx(2 / 3)
    assert ndcg_at_k(PREDS, TARGETS, 3) == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / 3)
    assert mrr_at_k(PREDS, TARGETS, 3) == pytest.approx((1 / 2 + 1 / 3) / 3)
    assert invalid_rate(PREDS) == pytest.approx(1 / 9)


def test_ranking_metrics_keys_and_errors():
    out = ranking_metrics(PREDS, TARGETS, ks=(1, 3))
    assert set(out) == {"recall@1", "ndcg@1", "recall@3", "ndcg@3", "mrr@3", "invalid_rate"}
    with pytest.raises(ValueError, match="num_beams >= K"):
        ranking_metrics(PREDS, TARGETS, ks=(5,))
    with pytest.raises(ValueError, match="match one to one"):
        ranking_metrics(PREDS, TARGETS[:2])


def test_evaluate_module_agrees_with_plain_functions():
    metric = load_evaluate_metric(ks=(1, 3))
    metric.add_batch(predictions=PREDS[:2].tolist(), references=TARGETS[:2].tolist())
    metric.add_batch(predictions=PREDS[2:].tolist(), references=TARGETS[2:].tolist())
    assert metric.compute() == pytest.approx(ranking_metrics(PREDS, TARGETS, ks=(1, 3)))


def test_most_popular_ranks_by_training_count():
    sequences = [["a", "b", "c", "x", "y"], ["b", "c", "b", "x", "y"], ["c", "z", "z"]]
    # The last two items of every user are held out (validation, test) and must not be counted.
    assert training_part(sequences) == [["a", "b", "c"], ["b", "c", "b"], ["c"]]
    index = {k: i for i, k in enumerate(["a", "b", "c", "x", "y", "z"])}
    model = MostPopular(index).fit(training_part(sequences))
    assert model.predict(2, 3).tolist() == [[1, 2, 0], [1, 2, 0]]
    with pytest.raises(ValueError, match="not in the catalogue"):
        MostPopular(index).fit([["q"]])


def test_per_user_metrics_average_to_the_ranking_metrics():
    from hf_genrec.evaluation.metrics import per_user_metrics, ranking_metrics, target_ranks

    predictions = np.array([[3, 1, 2], [0, 2, 1], [5, 6, 7]])
    targets = np.array([1, 0, 4])
    per = per_user_metrics(target_ranks(predictions, targets), ks=[1, 3])
    assert per["recall@1"].tolist() == [0.0, 1.0, 0.0] and per["recall@3"].tolist() == [1.0, 1.0, 0.0]
    overall = ranking_metrics(predictions, targets, [1, 3])
    for metric, values in per.items():
        assert values.mean() == pytest.approx(overall[metric])


def test_paired_difference_is_the_mean_difference_with_its_standard_error():
    from hf_genrec.evaluation.metrics import paired_difference

    first = {"recall@10": np.array([1.0, 1.0, 0.0, 1.0]), "ndcg@10": np.array([1.0, 0.5, 0.0, 0.5])}
    other = {"recall@10": np.array([0.0, 1.0, 0.0, 0.0]), "ndcg@10": np.array([0.0, 1.0, 0.0, 0.5])}
    diff = paired_difference(first, other)
    # differences 1, 0, 0, 1: mean 0.5, sample standard deviation sqrt(1/3), error sqrt(1/3) / 2
    assert diff["recall@10"]["mean"] == pytest.approx(0.5)
    assert diff["recall@10"]["standard_error"] == pytest.approx(math.sqrt(1 / 3) / 2)
    assert diff["ndcg@10"]["mean"] == pytest.approx(0.125)
    # the same users in both, or it is not a paired comparison
    with pytest.raises(ValueError, match="same users in the same order"):
        paired_difference(first, {m: v[:3] for m, v in other.items()})
    with pytest.raises(KeyError, match="'ndcg@10' is in the first"):
        paired_difference(first, {"recall@10": other["recall@10"]})


def test_test_per_user_file_needs_one_rank_per_user(tmp_path):
    from hf_genrec.recipes.results import save_test_per_user

    with pytest.raises(ValueError, match="3 test users but 2 target ranks"):
        save_test_per_user(tmp_path, ["a", "b", "c"], np.array([0, 1]), [10])
    save_test_per_user(tmp_path, ["a", "b"], np.array([0, 10]), [10])
    assert json.loads((tmp_path / "test_per_user.json").read_text()) == {
        "users": ["a", "b"],
        "recall@10": [1.0, 0.0],
        "ndcg@10": [1.0, 0.0],
    }
