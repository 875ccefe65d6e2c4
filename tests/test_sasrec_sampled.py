"""SASRec with sampled softmax: popularity-drawn negatives with the logQ correction, trained by `train_sasrec`."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad
from hf_genrec.training.sasrec import train_sasrec


def walks(n_items, n_users, length, seed=0):
    rng = np.random.default_rng(seed)
    return [[(s + t) % n_items for t in range(length)] for s in rng.integers(0, n_items, size=n_users)]


def _gradient_cosine(logq_correction: bool) -> float:
    """Cosine between the item table's gradient under the sampled softmax (many draws) and under the full one."""
    torch.manual_seed(0)
    config = SASRecConfig(num_items=40, max_positions=4, hidden_size=16, num_layers=1, loss="sampled_softmax",
                          num_negatives=100_000, logq_correction=logq_correction)  # fmt: skip
    model = SASRecModel(config)
    with torch.no_grad():
        model.item_embeddings.weight.normal_(0, 0.5)
    model.set_negative_sampler(1000 / np.arange(1, 41) ** 1.5)  # a steep popularity law
    hidden, targets = torch.randn(64, 16), torch.randint(1, 41, (64,))
    sampled = model._sampled_softmax(hidden, targets)
    grad_sampled = torch.autograd.grad(sampled.loss, model.item_embeddings.weight)[0][1:].flatten()
    full = F.cross_entropy(hidden @ model.item_embeddings.weight[1:].T, targets - 1)
    grad_full = torch.autograd.grad(full, model.item_embeddings.weight)[0][1:].flatten()
    return float(F.cosine_similarity(grad_sampled, grad_full, dim=0))


def test_logq_correction_makes_the_sampled_gradient_the_full_softmax_gradient():
    """With many popularity-drawn negatives the corrected loss's gradient is the full softmax's; without the
    correction popular items are pushed down far too hard, and the gradient points elsewhere."""
    corrected, uncorrected = _gradient_cosine(True), _gradient_cosine(False)
    assert corrected > 0.99, corrected
    assert uncorrected < 0.9, uncorrected


def test_sampled_softmax_draws_by_popularity_and_never_padding():
    model = SASRecModel(SASRecConfig(num_items=5, hidden_size=8, num_layers=1, loss="sampled_softmax"))
    model.set_negative_sampler([0, 1, 0, 3, 0])
    torch.manual_seed(0)
    draws = model.sample_negatives(4000)
    assert set(draws.tolist()) == {2, 4}  # tokens of items 1 and 3; item rows with count 0 are never drawn
    assert abs(float((draws == 4).float().mean()) - 0.75) < 0.03
    with pytest.raises(ValueError, match="5 non-negative counts"):
        model.set_negative_sampler([1, 2])
    with pytest.raises(ValueError, match="set_negative_sampler"):
        SASRecModel(SASRecConfig(num_items=5, hidden_size=8, num_layers=1, loss="sampled_softmax")).sample_negatives(3)
    with pytest.raises(ValueError, match="loss must be one of"):
        SASRecConfig(loss="bpr")


def test_train_sasrec_with_sampled_softmax_learns_the_walk():
    """train_sasrec sets the popularity law from the training targets itself; 15 negatives of 60 items suffice."""
    config = SASRecConfig(num_items=60, max_positions=8, hidden_size=32, num_layers=1, num_heads=1, dropout=0.1,
                          loss="sampled_softmax", num_negatives=15)  # fmt: skip
    model, info = train_sasrec(walks(60, 300, 9), config, epochs=12, batch_size=64, learning_rate=5e-3)
    assert model.negative_cdf is not None and info["steps"] > 0
    test = walks(60, 100, 9, seed=1)
    items, _ = model.recommend(left_pad([s[:-1] for s in test], 8), k=5)
    metrics = ranking_metrics(items.numpy(), np.asarray([s[-1] for s in test]), [5])
    assert metrics["recall@5"] > 0.8, metrics
