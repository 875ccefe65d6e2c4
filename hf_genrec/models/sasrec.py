"""SASRec (Kang & McAuley, ICDM 2018) with full-softmax cross-entropy: the strong sequential baseline; or with
sampled softmax (popularity-drawn negatives, logQ-corrected), the loss of catalogues too large to score whole.

The model a practitioner would pick instead of a generative recommender, so hf_genrec trains it under the same
split and protocol. It follows the original architecture (pre-norm causal self-attention blocks over item and
position embeddings, item embeddings shared with the output layer) and trains with cross-entropy over the whole
catalogue at every position, which studies found much stronger than the original sampled binary loss
(Klenitskiy & Vasilev, RecSys 2023). A `PreTrainedModel`, so `Trainer`, `save_pretrained` and the Hub work as usual;
`hf_genrec.training.sasrec.train_sasrec` trains one.

With ``loss="sampled_softmax"`` each step scores every target against ``num_negatives`` items drawn (shared by the
batch) from a popularity law set with `SASRecModel.set_negative_sampler`, and subtracts from every logit the log of
its expected count among the draws (``log(num_negatives * q(item))``, the logQ correction of Bengio & Senecal 2008,
as TensorFlow's ``sampled_softmax_loss`` does): without it popular items, drawn far more often, are pushed down
far more than the full softmax would push them. Serving is unchanged (the item table's inner products), so the
item embeddings can go into an approximate-nearest-neighbour index (FAISS, HNSW) with an inner-product metric.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .dropout import use_bits_dropout

#: the training losses of `SASRecConfig.loss`
LOSSES = ("full_softmax", "sampled_softmax")


class SASRecConfig(PretrainedConfig):
    """Size of a SASRec model.

    Args:
        num_items: catalogue size; item ``i`` (0-based row of the item table) is token ``i + 1``, 0 is padding.
        max_positions: positions the model reads (the most recent items of a history).
        hidden_size, num_layers, num_heads, dropout: as in the paper (Beauty: 50, 2, 1, 0.5).
        training_summary (`dict`, *optional*): how the weights were trained (``epochs``, ``steps``,
            ``train_minutes``; `train_sasrec` fills it), so a saved scorer says what its training cost.
        loss (`str`): ``"full_softmax"`` (cross-entropy over every item) or ``"sampled_softmax"`` (over the target
            and ``num_negatives`` popularity-drawn items; `SASRecModel.set_negative_sampler` sets the law).
        num_negatives (`int`): items drawn per step for the sampled softmax (shared by every target of the batch).
        logq_correction (`bool`): subtract ``log(num_negatives * q(item))`` from each sampled-softmax logit.
    """

    model_type = "hf_genrec_sasrec"

    def __init__(
        self,
        num_items: int = 1,
        max_positions: int = 50,
        hidden_size: int = 64,
        num_layers: int = 2,
        num_heads: int = 1,
        dropout: float = 0.2,
        initializer_range: float = 0.02,
        training_summary: dict | None = None,
        loss: str = "full_softmax",
        num_negatives: int = 256,
        logq_correction: bool = True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}.")
        if int(num_negatives) < 1:
            raise ValueError(f"num_negatives must be at least 1, got {num_negatives}.")
        self.num_items = int(num_items)
        self.max_positions = int(max_positions)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.initializer_range = float(initializer_range)
        self.training_summary = dict(training_summary) if training_summary else None
        self.loss = loss
        self.num_negatives = int(num_negatives)
        self.logq_correction = bool(logq_correction)


class SASRecBlock(nn.Module):
    """Pre-norm causal self-attention (the query is normalised, keys/values are not, as in the original code) and
    a point-wise feed-forward network, each with a residual connection."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        d = config.hidden_size
        self.attention_norm = nn.LayerNorm(d, eps=1e-8)
        self.attention = nn.MultiheadAttention(d, config.num_heads, dropout=config.dropout, batch_first=True)
        self.ffn_norm = nn.LayerNorm(d, eps=1e-8)
        self.ffn = nn.Sequential(
            nn.Linear(d, d), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(d, d), nn.Dropout(config.dropout)
        )

    def forward(self, hidden: torch.Tensor, causal: torch.Tensor, padding: torch.Tensor) -> torch.Tensor:
        query = self.attention_norm(hidden)
        attended, _ = self.attention(query, hidden, hidden, attn_mask=causal, need_weights=False)
        hidden = query + attended
        normed = self.ffn_norm(hidden)
        hidden = normed + self.ffn(normed)
        return hidden * (~padding)[..., None]


class SASRecModel(PreTrainedModel):
    """SASRec for next-item prediction; ``forward(input_ids, labels)`` returns the full-softmax loss and logits."""

    config_class = SASRecConfig
    base_model_prefix = "sasrec"

    def __init__(self, config: SASRecConfig):
        super().__init__(config)
        d = config.hidden_size
        self.item_embeddings = nn.Embedding(config.num_items + 1, d, padding_idx=0)
        self.position_embeddings = nn.Embedding(config.max_positions, d)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([SASRecBlock(config) for _ in range(config.num_layers)])
        self.final_norm = nn.LayerNorm(d, eps=1e-8)
        use_bits_dropout(self)  # cheaper CPU masks, as the generative model's (see hf_genrec.models.dropout)
        # the sampled softmax's law over item tokens (not saved: serving never samples)
        self.register_buffer("negative_cdf", None, persistent=False)
        self.register_buffer("negative_log_q", None, persistent=False)
        self.post_init()

    def set_negative_sampler(self, item_counts: np.ndarray | torch.Tensor) -> None:
        """Draw the sampled softmax's negatives in proportion to ``item_counts`` ``[num_items]`` (e.g. how often
        each item is a training target: the popularity law). Items with count 0 are never drawn."""
        counts = torch.as_tensor(np.asarray(item_counts), dtype=torch.float64).flatten()
        if counts.shape[0] != self.config.num_items or bool((counts < 0).any()) or not counts.sum() > 0:
            raise ValueError(
                f"item_counts must hold {self.config.num_items} non-negative counts (one per item row), not all zero; "
                f"got {counts.shape[0]} values summing to {float(counts.sum())}."
            )
        q = torch.cat([counts.new_zeros(1), counts / counts.sum()])  # token 0 is padding, never drawn
        device = self.item_embeddings.weight.device
        self.negative_cdf = torch.cumsum(q, 0).to(device)
        # an item never drawn gets the rarest drawn item's q, so a target with count 0 still has a finite logit
        self.negative_log_q = q.clamp(min=float(q[q > 0].min())).log().float().to(device)

    def sample_negatives(self, n: int) -> torch.Tensor:
        """``n`` item tokens drawn from the law of `set_negative_sampler` (with replacement, torch's generator)."""
        if self.negative_cdf is None:
            raise ValueError(
                'loss="sampled_softmax" draws negatives from a popularity law: call '
                "model.set_negative_sampler(item_counts) first (train_sasrec does, from the training targets)."
            )
        draws = torch.rand(n, dtype=torch.float64, device=self.negative_cdf.device) * self.negative_cdf[-1]
        return torch.searchsorted(self.negative_cdf, draws, right=True).clamp(1, self.config.num_items)

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=self.config.initializer_range)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    def encode(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states ``[batch, length, hidden]`` of left-padded item sequences (0 = padding)."""
        length = input_ids.shape[1]
        if length > self.config.max_positions:
            raise ValueError(f"input has {length} positions; this SASRec reads at most {self.config.max_positions}.")
        padding = input_ids == 0
        positions = torch.arange(length, device=input_ids.device)[None, :]
        hidden = self.item_embeddings(input_ids) * math.sqrt(self.config.hidden_size)
        hidden = self.dropout(hidden + self.position_embeddings(positions)) * (~padding)[..., None]
        causal = torch.ones(length, length, dtype=torch.bool, device=input_ids.device).triu(1)
        for block in self.blocks:
            hidden = block(hidden, causal, padding)
        return self.final_norm(hidden)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor | None = None, **kwargs) -> MaskedLMOutput:
        hidden = self.encode(input_ids)
        if labels is None:  # serving: only the last position matters
            return MaskedLMOutput(logits=hidden[:, -1] @ self.item_embeddings.weight.T)
        keep = labels > 0
        if self.config.loss == "sampled_softmax":
            return self._sampled_softmax(hidden[keep], labels[keep])
        logits = hidden[keep] @ self.item_embeddings.weight.T  # full softmax over every item
        loss = F.cross_entropy(logits, labels[keep])
        return MaskedLMOutput(loss=loss, logits=logits)

    def _sampled_softmax(self, hidden: torch.Tensor, targets: torch.Tensor) -> MaskedLMOutput:
        """Cross-entropy of each target against ``num_negatives`` drawn items; ``logits`` ``[targets, 1 + K]`` hold
        the target's logit first."""
        negatives = self.sample_negatives(self.config.num_negatives)
        positive = (hidden * self.item_embeddings(targets)).sum(-1, keepdim=True)
        negative = hidden @ self.item_embeddings(negatives).T
        if self.config.logq_correction:
            log_expected = self.negative_log_q + math.log(self.config.num_negatives)
            positive = positive - log_expected[targets][:, None]
            negative = negative - log_expected[negatives][None, :]
        # a draw of the target itself is not a negative (an "accidental hit")
        negative = negative.masked_fill(negatives[None, :] == targets[:, None], float("-inf"))
        logits = torch.cat([positive, negative], dim=1)
        loss = F.cross_entropy(logits, torch.zeros_like(targets))
        return MaskedLMOutput(loss=loss, logits=logits)

    @torch.no_grad()
    def item_log_probs(self, histories: torch.Tensor, exclude_history: bool = False) -> torch.Tensor:
        """Log-probabilities ``[batch, num_items + 1]`` of the next item after each left-padded token history
        (column 0, padding, is ``-inf``); with ``exclude_history`` the items of the history the model reads (its
        last ``max_positions``) get ``-inf`` and the rest share their probability."""
        was_training = self.training
        self.eval()
        window = histories[:, -self.config.max_positions :]
        logits = self(input_ids=window).logits
        if exclude_history:
            logits = logits.scatter(1, window, float("-inf"))
        logits[:, 0] = float("-inf")  # padding is not an item
        self.train(was_training)
        return torch.log_softmax(logits, dim=-1)

    @torch.no_grad()
    def recommend(
        self,
        histories: torch.Tensor,
        k: int = 10,
        exclude_history: bool = False,
        item_bonus: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-``k`` 0-based item rows and their log-probabilities for left-padded token histories; with
        ``exclude_history``, never an item of the history the model reads (its last ``max_positions`` items).
        ``item_bonus`` (``[batch, num_items]``) is added to the log-probabilities before ranking, e.g. the successor
        prior of `hf_genrec.models.prior.ItemTransitions.dense_bonus`."""
        return top_items(self.item_log_probs(histories, exclude_history), k, item_bonus)


def top_items(
    log_probs: torch.Tensor, k: int, item_bonus: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` best 0-based item rows of ``[batch, num_items + 1]`` log-probabilities (column 0: padding), after
    adding ``item_bonus`` ``[batch, num_items]`` when given."""
    if item_bonus is not None:
        if item_bonus.shape != (log_probs.shape[0], log_probs.shape[1] - 1):
            raise ValueError(
                f"item_bonus must be [batch, num_items] = {(log_probs.shape[0], log_probs.shape[1] - 1)}, got "
                f"{tuple(item_bonus.shape)}."
            )
        log_probs = log_probs + F.pad(item_bonus.to(log_probs), (1, 0))
    scores, tokens = log_probs.topk(k, dim=-1)
    return tokens - 1, scores


@torch.no_grad()
def ensemble_recommend(
    models: Sequence[SASRecModel],
    histories: torch.Tensor,
    k: int = 10,
    exclude_history: bool = False,
    item_bonus: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`SASRecModel.recommend` for several models over the same items (e.g. seeds): items are ranked by the log of
    the mean of the models' next-item probabilities, then ``item_bonus`` is added."""
    if not models:
        raise ValueError("ensemble_recommend needs at least one SASRecModel.")
    sizes = {m.config.num_items for m in models}
    if len(sizes) > 1:
        raise ValueError(f"The models must score the same items; they have num_items {sorted(sizes)}.")
    per_model = torch.stack([m.item_log_probs(histories, exclude_history) for m in models])
    mixed = torch.logsumexp(per_model, dim=0) - math.log(len(models))
    return top_items(mixed, k, item_bonus)


def left_pad(histories: Sequence[Sequence[int]], max_length: int) -> torch.Tensor:
    """0-based item rows → left-padded token ids ``[batch, max_length]`` (the most recent items kept)."""
    out = torch.zeros(len(histories), max_length, dtype=torch.long)
    for row, history in enumerate(histories):
        tokens = torch.as_tensor(list(history)[-max_length:], dtype=torch.long) + 1
        if len(tokens):
            out[row, -len(tokens) :] = tokens
    return out


@torch.no_grad()
def rank_histories(
    models: SASRecModel | Sequence[SASRecModel],
    histories: Sequence[Sequence[int]],
    k: int,
    exclude_history: bool = False,
    batch_size: int = 1024,
    item_bonus: Callable[[Sequence[Sequence[int]]], torch.Tensor] | None = None,
) -> np.ndarray:
    """``[len(histories), k]`` the top ``k`` 0-based item rows for each history (item rows, oldest first), in
    batches: one model's ranking, or several models' by the mean of their next-item probabilities
    (`ensemble_recommend`). ``item_bonus`` maps a batch of histories to ``[batch, num_items]`` scores added before
    ranking, e.g. ``lambda h: transitions.dense_bonus(h, weight, smoothing, recent)`` for the successor prior."""
    models = [models] if isinstance(models, SASRecModel) else list(models)
    if not models:
        raise ValueError("rank_histories needs at least one SASRecModel.")
    ranked = []
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        tokens = left_pad(chunk, models[0].config.max_positions).to(models[0].device)
        bonus = item_bonus(chunk) if item_bonus is not None else None
        ranked.append(ensemble_recommend(models, tokens, k, exclude_history, bonus)[0].cpu().numpy())
    return np.concatenate(ranked) if ranked else np.zeros((0, k), dtype=np.int64)
