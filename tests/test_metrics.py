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
