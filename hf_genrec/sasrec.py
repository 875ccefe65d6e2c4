"""SASRec (Kang & McAuley, ICDM 2018) with full-softmax cross-entropy: the strong sequential baseline.

The model a practitioner would pick instead of a generative recommender, so hf_genrec trains it under the same
split and protocol. It follows the original architecture (pre-norm causal self-attention blocks over item and
position embeddings, item embeddings shared with the output layer) and trains with cross-entropy over the whole
catalogue at every position, which studies found much stronger than the original sampled binary loss
(Klenitskiy & Vasilev, RecSys 2023). A `PreTrainedModel`, so `Trainer`, `save_pretrained` and the Hub work as usual.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from transformers import PretrainedConfig, PreTrainedModel, TrainerCallback
from transformers.modeling_outputs import MaskedLMOutput

from .dropout import use_bits_dropout

logger = logging.getLogger(__name__)


class SASRecConfig(PretrainedConfig):
    """Size of a SASRec model.

    Args:
        num_items: catalogue size; item ``i`` (0-based row of the item table) is token ``i + 1``, 0 is padding.
        max_positions: positions the model reads (the most recent items of a history).
        hidden_size, num_layers, num_heads, dropout: as in the paper (Beauty: 50, 2, 1, 0.5).
        training_summary (`dict`, *optional*): how the weights were trained (``epochs``, ``steps``,
            ``train_minutes``; `train_sasrec` fills it), so a saved scorer says what its training cost.
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_items = int(num_items)
        self.max_positions = int(max_positions)
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.num_heads = int(num_heads)
        self.dropout = float(dropout)
        self.initializer_range = float(initializer_range)
        self.training_summary = dict(training_summary) if training_summary else None


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
        use_bits_dropout(self)  # cheaper CPU masks, as the generative model's (see hf_genrec.dropout)
        self.post_init()

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
        logits = hidden[keep] @ self.item_embeddings.weight.T  # full softmax over every item
        loss = F.cross_entropy(logits, labels[keep])
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
        prior of `hf_genrec.transitions.ItemTransitions.dense_bonus`."""
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


def sasrec_training_rows(sequences: Sequence[Sequence[int]], max_length: int) -> dict[str, np.ndarray]:
    """One row per user: ``input_ids`` (items 0-based + 1, left-padded) and ``labels`` (the next item at each
    position, 0 where padded). Every position of a user's sequence is a target, learnt in one causal pass."""
    inputs = np.zeros((len(sequences), max_length), dtype=np.int64)
    labels = np.zeros((len(sequences), max_length), dtype=np.int64)
    for row, sequence in enumerate(sequences):
        tokens = np.asarray(sequence, dtype=np.int64)[-(max_length + 1) :] + 1
        if len(tokens) < 2:
            continue
        inputs[row, -(len(tokens) - 1) :] = tokens[:-1]
        labels[row, -(len(tokens) - 1) :] = tokens[1:]
    return {"input_ids": inputs, "labels": labels}


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


class BestValidationState(TrainerCallback):
    """Ranks held-out next items every ``every_epochs`` epochs, keeps the weights with the best NDCG@10 (in memory:
    SASRec is small) and stops training after ``patience`` rankings without a better one.

    With a constant learning rate SASRec overfits once it has learnt what it can: on Beauty its validation NDCG@10
    peaked at epoch 25 (0.0674) and fell to 0.0617 by epoch 125, so the last state is not the one to keep.
    """

    def __init__(
        self,
        histories: Sequence[Sequence[int]],
        targets: Sequence[int],
        exclude_history: bool = False,
        every_epochs: int = 1,
        patience: int | None = None,
    ):
        if len(histories) != len(targets) or not len(targets):
            raise ValueError(
                f"Validation needs one target per history and at least one user; got {len(histories)} histories "
                f"and {len(targets)} targets."
            )
        if every_epochs < 1 or (patience is not None and patience < 1):
            raise ValueError(
                f"every_epochs and patience must be at least 1, got every_epochs={every_epochs}, patience={patience}."
            )
        self.histories, self.targets = list(histories), np.asarray(targets, dtype=np.int64)
        self.exclude_history, self.every, self.patience = exclude_history, every_epochs, patience
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best: dict[str, float] = {"ndcg@10": -1.0}
        self.curve: list[dict[str, float]] = []
        self.stale = 0

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if round(state.epoch) % self.every == 0:
            self._rank(state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # a time budget stops between rankings: the last weights are ranked too, so they can be kept
        if state.global_step and (not self.curve or self.curve[-1]["step"] != state.global_step):
            self._rank(state, control, model)

    def _rank(self, state, control, model) -> None:
        from .metrics import ndcg_at_k

        model.eval()
        ndcg = ndcg_at_k(rank_histories(model, self.histories, 10, self.exclude_history), self.targets, 10)
        model.train()
        self.curve.append({"epoch": float(state.epoch), "step": state.global_step, "ndcg@10": ndcg})
        logger.info("SASRec epoch %.1f: validation NDCG@10 %.4f", state.epoch, ndcg)  # a long run's progress
        if ndcg > self.best["ndcg@10"]:
            self.best = {"ndcg@10": ndcg, "epoch": float(state.epoch), "step": state.global_step}
            self.best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            self.stale = 0
            return
        self.stale += 1
        if self.patience is not None and self.stale >= self.patience:
            logger.info(
                "SASRec: no better validation NDCG@10 for %d rankings (best %.4f at epoch %.1f); stopping.",
                self.stale,
                self.best["ndcg@10"],
                self.best["epoch"],
            )
            control.should_training_stop = True


def check_item_rows(sequences: Sequence[Sequence[int]], num_items: int, what: str) -> list[np.ndarray]:
    """``sequences`` as arrays, after checking every item row lies in ``0..num_items - 1``; ``what`` names a
    sequence in the error."""
    rows = [np.asarray(sequence, dtype=np.int64) for sequence in sequences]
    bad = next((n for n, r in enumerate(rows) if len(r) and (r.min() < 0 or r.max() >= num_items)), None)
    if bad is not None:
        raise ValueError(
            f"{what} {bad} holds item rows outside 0..{num_items - 1} (config.num_items = {num_items}): number "
            "items as the item table's rows and size the config to the catalogue."
        )
    return rows


def train_sasrec(
    sequences: Sequence[Sequence[int]],
    config: SASRecConfig,
    epochs: int = 50,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    max_minutes: float | None = None,
    seed: int = 0,
    validation: tuple[Sequence[Sequence[int]], Sequence[int]] | None = None,
    exclude_history: bool = False,
    eval_every_epochs: int = 1,
    patience: int | None = None,
) -> tuple[SASRecModel, dict]:
    """Train a `SASRecModel` on item sequences with the stock `Trainer` (full-softmax cross-entropy at every
    position, AdamW at a constant learning rate, no weight decay: the harness's SASRec baseline). With
    ``validation``, the weights with the best validation NDCG@10 are the ones returned (`BestValidationState`).

    Args:
        sequences (`Sequence[Sequence[int]]`): each user's 0-based item rows in time order, **only the part a model
            may train on** (no validation or test items); each trains on its ``config.max_positions + 1`` most
            recent items.
        config (`SASRecConfig`): the model's size; ``num_items`` must cover every row of ``sequences``.
        epochs (`int`): passes over the sequences (an upper bound when ``max_minutes`` is set).
        batch_size, learning_rate: of the optimiser.
        max_minutes (`float`, *optional*): stop after this many minutes of training.
        seed (`int`): seeds the initialisation, dropout and batch order.
        validation (`tuple`, *optional*): ``(histories, targets)``, held-out users' item rows and the next item of
            each, ranked every ``eval_every_epochs`` epochs (e.g. the validation split's users; never the test's).
        exclude_history (`bool`): rank those users' next items without the items of their history.
        eval_every_epochs (`int`): epochs between two validation rankings.
        patience (`int`, *optional*): stop after this many validation rankings without a better NDCG@10.

    Returns:
        The trained model (in eval mode) and ``{"epochs", "steps", "train_minutes"}``, with validation also
        ``"best_epoch"``, ``"validation_ndcg@10"`` (of the returned weights) and ``"validation_curve"``.
    """
    import datasets
    from transformers import Trainer, TrainingArguments

    from .callbacks import TimeBudgetCallback
    from .progress import are_progress_bars_disabled

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be positive (or None for no time limit), got {max_minutes}.")
    rows = check_item_rows(sequences, config.num_items, "Sequence")
    if not any(len(r) >= 2 for r in rows):
        raise ValueError("No sequence has two items, so SASRec has no next item to learn from.")
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(seed)
        model = SASRecModel(config)
    train = datasets.Dataset.from_dict(
        {key: value.tolist() for key, value in sasrec_training_rows(rows, config.max_positions).items()}
    )
    clock = TimeBudgetCallback(max_minutes)
    keeper = None
    if validation is not None:
        check_item_rows(validation[0], config.num_items, "Validation history")
        check_item_rows([validation[1]], config.num_items, "The validation targets (one sequence)")
        keeper = BestValidationState(*validation, exclude_history, eval_every_epochs, patience)
    with tempfile.TemporaryDirectory() as scratch:  # nothing is saved: save_strategy="no"
        args = TrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            save_strategy="no",
            logging_strategy="no",
            report_to="none",
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=are_progress_bars_disabled(),
        )
        trainer = Trainer(
            model=model, args=args, train_dataset=train, callbacks=[clock, keeper] if keeper else [clock]
        )
        output = trainer.train()
    info = {
        "epochs": float(output.metrics.get("epoch", epochs)),
        "steps": int(output.global_step),
        "train_minutes": clock.elapsed_seconds() / 60,
    }
    logger.info(
        "SASRec: %.1f epochs (%d steps) in %.1f min%s.",
        info["epochs"],
        info["steps"],
        info["train_minutes"],
        " (time budget reached)" if clock.stopped_early else "",
    )
    if keeper is not None:  # it ranked the last weights too, so it holds a best state
        model.load_state_dict(keeper.best_state)
        info.update(
            {
                "best_epoch": keeper.best["epoch"],
                "validation_ndcg@10": keeper.best["ndcg@10"],
                "validation_curve": keeper.curve,
            }
        )
        logger.info(
            "SASRec: keeping epoch %.1f (validation NDCG@10 %.4f).", keeper.best["epoch"], keeper.best["ndcg@10"]
        )
    model.config.training_summary = info
    return model.eval(), info
