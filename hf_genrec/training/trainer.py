"""`GenRecTrainer`: a `Seq2SeqTrainer` whose evaluation ranks items by constrained beam search."""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Sampler, SequentialSampler
from transformers import LogitsProcessorList, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint

from ..bundle.config import GenRecConfig
from ..bundle.hub import PUSH_IGNORE_PATTERNS
from ..bundle.io import BundleContents, save_bundle
from ..bundle.layout import CARD_NAME, TRAINING_WEIGHTS_NAME
from ..bundle.model_card import GenRecCardData, ModelCardCallback, build_model_card, non_default_arguments
from ..decoding.exclude_history import history_excluded_tokens
from ..decoding.fusion import (
    FusionConfig,
    TransitionFusionLogitsProcessor,
    check_scorer_items,
    fusion_processors,
)
from ..decoding.generate import build_trie_index, generate_items, item_spellings
from ..decoding.trie import TrieIndex, trie_cross_entropy
from ..evaluation.metrics import make_compute_metrics
from ..models.dropout import use_bits_dropout
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel
from ..semantic_ids import ItemIDScheme
from ..tokenization import ItemTokenizer
from ..utils.progress import are_progress_bars_disabled
from ..utils.saving import CheckpointError, check_checkpoint, last_complete_checkpoint, staged_directory
from .averaging import WeightAverage, load_training_weights
from .callbacks import TimeBudgetCallback, read_spent_seconds
from .collator import SCORER_HISTORY, GenRecCollator
from .schedules import BUDGET_SCHEDULES, time_budget_schedule

logger = logging.getLogger(__name__)


@dataclass
class GenRecTrainingArguments(Seq2SeqTrainingArguments, FusionConfig):
    """`Seq2SeqTrainingArguments` plus the ranking-evaluation settings; the fields of `FusionConfig` (what the
    validation ranking bans and fuses, and what the saved bundle ranks with) are its own, and ``args.fusion`` gives
    them as one object.

    Args:
        num_beams (`int`, defaults to 20): beams of the constrained beam search run at evaluation.
        eval_ks (`list[int]`, defaults to `[5, 10]`): the K of Recall@K / NDCG@K; beams must be >= max(K).
    """

    # Defaults differ from `Seq2SeqTrainingArguments` where a small T5 trained from scratch on item IDs needs it
    # (as TRL's configs do for their trainers): a larger learning rate and batch, epoch-wise ranking evaluation that
    # keeps the best checkpoint, length-grouped batches, and no logging integrations unless asked for.
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate."})
    per_device_train_batch_size: int = field(default=256, metadata={"help": "Training batch size per device."})
    per_device_eval_batch_size: int = field(default=128, metadata={"help": "Evaluation batch size per device."})
    num_train_epochs: float = field(default=10.0, metadata={"help": "Training epochs."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Learning-rate schedule."})
    warmup_steps: float = field(default=0.05, metadata={"help": "Warm-up steps (a float < 1 is a share of all)."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    eval_strategy: str = field(default="epoch", metadata={"help": "When to rank the validation users."})
    save_strategy: str = field(default="epoch", metadata={"help": "When to save a checkpoint."})
    save_total_limit: int | None = field(default=1, metadata={"help": "Checkpoints kept besides the best."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best validation checkpoint."})
    metric_for_best_model: str | None = field(default="ndcg@10", metadata={"help": "Metric choosing the best."})
    train_sampling_strategy: str = field(
        default="group_by_length", metadata={"help": "Group histories of similar length into batches."}
    )
    logging_steps: float = field(default=50, metadata={"help": "Log the training loss every N steps."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Logging integrations."})
    num_beams: int = field(default=20, metadata={"help": "Beams for constrained beam search at evaluation."})
    eval_ks: list[int] = field(default_factory=lambda: [5, 10], metadata={"help": "K values for Recall/NDCG@K."})
    decoding_method: str = field(
        default="auto",
        metadata={
            "help": "Constrained beam search at evaluation: auto (fast for T5), fast, vectorised or reference; all "
            "rank the same items.",
            "choices": ["auto", "fast", "vectorised", "reference"],
        },
    )
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "Stop training after this many minutes (evaluating and saving first)."}
    )
    anneal_over_budget: bool = field(
        default=True,
        metadata={
            "help": "With max_train_minutes and a linear or cosine schedule, decay the learning rate over the time "
            "budget (or the epochs, if they end first), so a budget-cut run still ends annealed."
        },
    )
    constrained_loss: bool = field(
        default=False,
        metadata={
            "help": "Normalise the training softmax of each decoding step over the tokens the item trie allows there "
            "(and rank with renormalised scores, generation_config.renormalize_logits), so the model never spends "
            "capacity on IDs that do not exist."
        },
    )
    exclude_history_in_loss: bool = field(
        default=False,
        metadata={
            "help": "With constrained_loss: leave the items of each target's history out of its training softmax too, "
            "as exclude_history leaves them out of the ranking, so the model is trained on the distribution it is "
            "ranked with."
        },
    )
    transition_weight_in_loss: float = field(
        default=0.0,
        metadata={
            "help": "With constrained_loss: fuse the successor prior into the training softmax as well, with this "
            "weight (each step's softmax over log p_model + the prior's bonus, a product of experts), so the model "
            "learns what the prior does not already say. Each target's prior leaves its own user's sequence out of "
            "the counts. 0 turns it off; rank such a model with the prior fused."
        },
    )
    transition_window: int = field(
        default=3, metadata={"help": "Successor prior: items at most this many steps after an item count (1 / steps)."}
    )
    transition_shrinkage: float = field(
        default=0.0,
        metadata={
            "help": "Successor prior: pseudo-count added to each item's total, P(b | a) = count(a, b) / (total(a) + "
            "transition_shrinkage), so successors of rarely seen items count less (0: plain frequencies)."
        },
    )
    transition_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "After training, rank the validation users with each of these transition weights and keep the "
            "best (by metric_for_best_model) for the test and the saved bundle; transition_weight is the one used "
            "while training. Picks the fusion's weight on each dataset's own validation split."
        },
    )
    scorer_weights: list[float] | None = field(
        default=None,
        metadata={
            "help": "After training, rank the validation users with each of these scorer weights (crossed with "
            "transition_weights, if given) and keep the best pair for the test and the saved bundle."
        },
    )
    ema_decay: float = field(
        default=0.0,
        metadata={
            "help": "Keep an exponential moving average of the weights with this per-step decay (warmed up as "
            "min(decay, (1 + n) / (10 + n))): validation ranks the averaged weights, checkpoints and the final model "
            "hold them, and training goes on from the raw ones. 0 turns it off."
        },
    )
    predict_with_generate: bool = field(
        default=True, metadata={"help": "Rank items with constrained beam search at evaluation (else loss only)."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.decoding_method not in ("auto", "fast", "vectorised", "reference"):
            raise ValueError(
                f"decoding_method must be auto, fast, vectorised or reference, got {self.decoding_method!r}."
            )
        if self.exclude_history_in_loss and not self.constrained_loss:
            raise ValueError(
                "exclude_history_in_loss masks history items in the trie-normalised loss: it needs constrained_loss=True."
            )
        if self.transition_weight_in_loss and not self.constrained_loss:
            raise ValueError(
                "transition_weight_in_loss fuses the prior into the trie-normalised loss: it needs constrained_loss=True."
            )
        if self.transition_weight_in_loss < 0:
            raise ValueError(f"transition_weight_in_loss must be >= 0, got {self.transition_weight_in_loss}.")
        self.check_fusion()
        if self.scorer_weights is not None and (not self.scorer_weights or min(self.scorer_weights) < 0):
            raise ValueError(f"scorer_weights must be a non-empty list of weights >= 0, got {self.scorer_weights}.")
        if self.transition_weights is not None and (not self.transition_weights or min(self.transition_weights) < 0):
            raise ValueError(
                f"transition_weights must be a non-empty list of weights >= 0, got {self.transition_weights}."
            )
        if not self.transition_shrinkage >= 0:
            raise ValueError(f"transition_shrinkage must be >= 0, got {self.transition_shrinkage}.")
        if self.transition_window < 1:
            raise ValueError(f"transition_window must be >= 1, got {self.transition_window}.")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(
                f"ema_decay must be in [0, 1) (0 turns weight averaging off; 0.999 averages over about 1,000 steps), "
                f"got {self.ema_decay}."
            )
        if self.num_beams < max(self.eval_ks):
            raise ValueError(
                f"num_beams={self.num_beams} is smaller than the largest K in eval_ks={self.eval_ks}; beam search "
                "returns at most num_beams items. Raise num_beams or lower eval_ks."
            )

    @property
    def fusion(self) -> FusionConfig:
        """The ranking's `FusionConfig`; a model trained with the prior in its loss ranks with renormalised steps."""
        fusion = FusionConfig.fusion.fget(self)
        return fusion.replace(transition_normalize=fusion.transition_normalize or self.transition_weight_in_loss > 0)


class GenRecTrainer(Seq2SeqTrainer):
    """Trains history → next-item seq2seq and evaluates by ranking the whole catalogue.

    Evaluation runs trie-constrained beam search; its predictions are ranked item indices ``[n, max(K)]`` and its
    labels the target item indices, so ``compute_metrics`` receives ranking inputs (the default computes Recall@K,
    NDCG@K, MRR and the invalid-ID rate). Saving writes the item map and ``genrec_config.json`` beside the model.

    Args:
        item_tokenizer (`ItemTokenizer`): the catalogue and its spellings.
        genrec_config (`GenRecConfig`, *optional*): written into every saved folder.
        quantizer (`ItemIDScheme`, *optional*): the fitted ID scheme, saved as ``quantizer/`` in every bundle so new
            items can be encoded later.
        card_data (`GenRecCardData`, *optional*): model-card facts; test metrics and the log are added as they come.
        transitions (`ItemTransitions`, *optional*): successor counts of the training sequences, fused into the
            ranking with ``args.transition_weight`` and saved in every bundle (``transitions.safetensors``).
        scorer (`SASRecModel`, *optional*): a dense next-item scorer over the same item rows, fused into the ranking
            with ``args.scorer_weight`` (the hybrid, `hf_genrec.decoding.fusion`) and saved in every bundle (``scorer/``).
        Other arguments are those of `Seq2SeqTrainer`. Every saved folder (checkpoints included) is a complete
        bundle with a model card; ``push_to_hub=True`` pushes it, never Trainer's pickled states.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: GenRecTrainingArguments | None = None,
        item_tokenizer: ItemTokenizer | None = None,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = None,
        genrec_config: GenRecConfig | None = None,
        quantizer: ItemIDScheme | None = None,
        card_data: GenRecCardData | None = None,
        transitions: ItemTransitions | None = None,
        scorer: SASRecModel | None = None,
        **kwargs: Any,
    ):
        if item_tokenizer is None:
            raise ValueError("GenRecTrainer needs `item_tokenizer=` (an ItemTokenizer) to decode and rank items.")
        if args is None:
            raise ValueError("GenRecTrainer needs `args=GenRecTrainingArguments(output_dir=...)`.")
        if (
            getattr(args, "transition_weight", 0.0) or getattr(args, "transition_weights", None)
        ) and transitions is None:
            raise ValueError(
                "transition_weight > 0 fuses the successor prior into the ranking: pass `transitions=` (an "
                "ItemTransitions fitted on the training part of the sequences, as run_experiment does)."
            )
        if (getattr(args, "scorer_weight", 0.0) or getattr(args, "scorer_weights", None)) and scorer is None:
            raise ValueError(
                "scorer_weight > 0 fuses a dense scorer into the ranking: pass `scorer=` (a SASRecModel trained on the "
                "item map's rows, e.g. by hf_genrec.training.sasrec.train_sasrec), or set scorer_weight=0."
            )
        if scorer is not None:
            check_scorer_items(scorer, item_tokenizer.num_items)
        self.item_tokenizer = item_tokenizer
        self.transitions = transitions
        self.scorer = scorer
        self.genrec_config = genrec_config or GenRecConfig(num_beams=getattr(args, "num_beams", 20))
        self.quantizer = quantizer
        self.card_data = card_data or GenRecCardData(dataset=self.genrec_config.dataset)
        if data_collator is None:
            data_collator = GenRecCollator(pad_token_id=item_tokenizer.pad_token_id)
        if compute_metrics is None:
            compute_metrics = make_compute_metrics(getattr(args, "eval_ks", (5, 10)))
        kwargs.setdefault("processing_class", item_tokenizer.tokenizer)
        train_dataset = kwargs.get("train_dataset")
        packed = train_dataset is not None and "target_ends" in getattr(train_dataset, "column_names", ())
        if packed and model is not None and "target_ends" not in inspect.signature(model.forward).parameters:
            raise ValueError(
                f"The training rows are packed (a `target_ends` column, from tokenize_sequences), which needs a model "
                f"with a causal encoder, but {type(model).__name__} reads histories bidirectionally. Build the model "
                "with build_t5_model(..., causal_encoder=True), or train on tokenize_examples rows."
            )
        if model is not None:
            # a plain T5 too: on a CPU, drawing torch's dropout masks was a fifth of the recipe's training step
            use_bits_dropout(model)
        quiet = are_progress_bars_disabled()
        if quiet:  # hf_genrec's one switch (``--quiet``) silences Trainer's bars too
            args.disable_tqdm = True
        super().__init__(
            model=model, args=args, data_collator=data_collator, compute_metrics=compute_metrics, **kwargs
        )
        # T5's loss is a mean over the batch's tokens that ignores `num_items_in_batch`, although its forward takes
        # **kwargs; Trainer (transformers 5.x) reads that as "sums over num_items_in_batch" and multiplies the loss by
        # the number of processes (and skips dividing by gradient-accumulation steps): under `accelerate launch` with
        # 2 processes the training and evaluation losses came out doubled. Treat the loss as the mean it is.
        self.model_accepts_loss_kwargs = False
        if quiet:  # without bars Trainer prints every log dict instead; quiet means neither
            self.remove_callback(PrinterCallback)
        self._trie_index: TrieIndex | None = None
        self.add_callback(ModelCardCallback(self.card_data))
        if getattr(args, "constrained_loss", False) and model is not None:
            # ranking must use the distribution the model was trained on: renormalised over the allowed tokens
            model.generation_config.renormalize_logits = True
        if scorer is not None:
            scorer.to(self.args.device).eval()
        #: the training clock (and budget, with ``max_train_minutes``); it survives resuming from a checkpoint
        self.clock = TimeBudgetCallback(getattr(args, "max_train_minutes", None))
        self.add_callback(self.clock)
        #: the moving average of the weights while `train` runs with ``ema_decay`` (else `None`)
        self.weight_average: WeightAverage | None = None
        if getattr(args, "ema_decay", 0.0):
            self.add_callback(_WeightAverageCallback(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not getattr(self.args, "constrained_loss", False) or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        # packed rows hold one spelling per block of `width` tokens; plain rows hold one spelling
        width = labels.shape[1] // inputs["target_ends"].shape[1] if "target_ends" in inputs else labels.shape[1]
        blocks = labels.reshape(-1, width)
        spelled = blocks  # whole spellings, EOS included, whatever the loss skips below
        scale = 1.0
        if self._eos_is_forced(blocks):
            # Fixed-length IDs end in EOS, the one token the trie allows after a complete ID: its loss and gradient
            # are exactly zero, so the decoder skips that position (a fifth of its work with 4-token IDs). The
            # loss stays the same number: the mean still counts the EOS tokens.
            full = (blocks != -100).sum()
            blocks = blocks[:, :-1].contiguous()
            scale = (blocks != -100).sum() / full.clamp(min=1)
            width -= 1
            inputs = {**inputs, "labels": blocks.reshape(labels.shape[0], -1)}
        outputs = model(**inputs)
        logits = outputs.logits.reshape(-1, width, outputs.logits.shape[-1])
        banned = None
        if getattr(self.args, "exclude_history_in_loss", False):
            excluded = self._target_histories(inputs["input_ids"], inputs.get("target_ends"), len(blocks))
            banned = history_excluded_tokens(self.trie_index, self._spellings, excluded, blocks)
        if getattr(self.args, "transition_weight_in_loss", 0.0):
            logits = logits.float() + self._prior_bonus(
                inputs, spelled, blocks.shape[1], logits.shape[-1], model.training
            )
        loss = trie_cross_entropy(logits, blocks, self.trie_index, banned=banned) * scale
        return (loss, outputs) if return_outputs else loss

    def _prior_bonus(
        self, inputs: dict[str, torch.Tensor], blocks: torch.Tensor, width: int, vocab: int, training: bool
    ) -> torch.Tensor:
        """``[N, width, vocab]`` the fused prior's bonus for the first ``width`` steps of each label spelling
        ``blocks`` (whole spellings, EOS included), as the beam search adds it (`TransitionFusionLogitsProcessor`),
        for ``transition_weight_in_loss``. While training, each target's prior leaves out its own row's items (the
        window and its last target), which the counts were fitted on."""
        if self.transitions is None:
            raise ValueError(
                "transition_weight_in_loss needs the successor counts of the training sequences: pass "
                "transitions=ItemTransitions.fit(...) to the trainer."
            )
        target_ends = inputs.get("target_ends")
        histories = self._target_histories(inputs["input_ids"], target_ends, len(blocks))
        targets = self.item_tokenizer.decode_index(blocks.tolist())
        per_row = 1 if target_ends is None else target_ends.shape[1]
        own = []
        for row in range(len(blocks) // per_row):
            found = [t for t in targets[row * per_row : (row + 1) * per_row] if t >= 0]
            # the row's whole sequence: the longest history of its targets, then the last target
            longest = max(histories[row * per_row : (row + 1) * per_row], key=len)
            own.extend([longest + found[-1:]] * per_row)
        # evaluation rows end at held-out targets, which the counts never saw: their prior is the ranking's
        leave_out = own if training else None
        # a padding target (no label) gets no prior
        histories = [h if t >= 0 else [] for h, t in zip(histories, targets)]
        priors = self.transitions.batch_prior(histories, self.args.transition_recent_items, leave_out)
        fusion = TransitionFusionLogitsProcessor(
            self.trie_index,
            self._spellings,
            priors,
            weight=self.args.transition_weight_in_loss,
            smoothing=self.args.transition_smoothing,
            paths=self._item_paths,
        )
        device = blocks.device
        start = torch.full((len(blocks), 1), self.item_tokenizer.pad_token_id, dtype=torch.long, device=device)
        zeros = torch.zeros(len(blocks), vocab, device=device)
        steps = []
        for step in range(width):
            prefix = torch.cat([start, blocks[:, :step].clamp(min=0)], dim=1)
            steps.append(fusion(prefix, zeros))
        return torch.stack(steps, dim=1)

    @functools.cached_property
    def _spellings(self) -> torch.Tensor:
        return torch.from_numpy(item_spellings(self.item_tokenizer))

    @functools.cached_property
    def _item_paths(self) -> torch.Tensor:
        """``[n_items, max_length]`` the trie nodes along every item's spelling, for the fusion processors."""
        return self.trie_index.item_paths(self._spellings, torch.arange(len(self._spellings)))[1]

    def _target_histories(
        self, input_ids: torch.Tensor, target_ends: torch.Tensor | None, n_targets: int
    ) -> list[list[int]]:
        """The item rows each training target reads, one list per label spelling: for packed rows the items of its
        row's window up to its ``target_ends`` (padding targets read one token, and have no loss)."""
        histories = self._history_items(input_ids)
        if target_ends is None:
            return histories
        tokenizer = self.item_tokenizer
        out = []
        for rows, ends in zip(histories, target_ends.tolist()):
            if tokenizer.is_variable_length:
                item_ends = np.cumsum(tokenizer.item_lengths[rows]) if rows else np.zeros(0, dtype=np.int64)
            else:
                item_ends = (tokenizer.id_length - 1) * np.arange(1, len(rows) + 1)
            out.extend(rows[: int(np.searchsorted(item_ends, end, side="right"))] for end in ends)
        if len(out) != n_targets:
            raise ValueError(f"{len(out)} target histories for {n_targets} label spellings.")
        return out

    def _eos_is_forced(self, blocks: torch.Tensor) -> bool:
        """Whether the last column of these label spellings ``[N, width]`` holds only EOS (or -100) that follows a
        complete fixed-length ID, a token the constrained loss gives no loss or gradient."""
        tokenizer = self.item_tokenizer
        if tokenizer.is_variable_length or blocks.shape[1] != tokenizer.id_length:
            return False
        last = blocks[:, -1]
        return bool(((last == tokenizer.eos_token_id) | (last == -100)).all())

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        kind = getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)
        if (
            self.lr_scheduler is None
            and getattr(self.args, "max_train_minutes", None)
            and getattr(self.args, "anneal_over_budget", False)
            and kind in BUDGET_SCHEDULES
        ):
            self.lr_scheduler = time_budget_schedule(
                optimizer or self.optimizer, self.clock, kind, num_training_steps, self.args.warmup_steps
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """`Trainer.train`; a resumed run also resumes the training clock, so ``max_train_minutes`` counts the
        minutes spent before the checkpoint too."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:
            # the newest complete one: a run killed while saving leaves a partial checkpoint-N behind
            checkpoint = last_complete_checkpoint(self.args.output_dir)
            if checkpoint is None and get_last_checkpoint(self.args.output_dir) is not None:
                raise CheckpointError(
                    f"{self.args.output_dir} holds checkpoints, but none is complete and undamaged (see the warnings "
                    "above). Start the run again without resume_from_checkpoint."
                )
            resume_from_checkpoint = checkpoint  # Trainer would pick the newest folder, complete or not
        if isinstance(checkpoint, str | os.PathLike):
            check_checkpoint(checkpoint)
        self.clock.spent_seconds = read_spent_seconds(checkpoint) if isinstance(checkpoint, str) else 0.0
        self.weight_average = None  # a resumed run gets its average back in _load_from_checkpoint
        try:
            output = super().train(resume_from_checkpoint, *args, **kwargs)
            average = self.weight_average
            best_loaded = self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None
            if average is not None and not best_loaded:
                average.copy_to(self.model)  # the best checkpoint already holds averaged weights
        finally:
            # after training the model is the averaged one; evaluate/predict must not swap an average in again
            self.weight_average = None
        return output

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        if getattr(self.args, "ema_decay", 0.0):
            # the checkpoint's model files hold the average; the raw weights training continues from sit beside them
            self.weight_average = WeightAverage.resume(self.model, self.args.ema_decay, resume_from_checkpoint)
        elif os.path.exists(os.path.join(resume_from_checkpoint, TRAINING_WEIGHTS_NAME)):
            # the optimiser's state belongs to the raw weights: continue from them, not from the average
            load_training_weights(self.model, resume_from_checkpoint)
            logger.warning(
                "%s was saved by a run with ema_decay; resuming with ema_decay=0 continues from its raw weights and "
                "stops averaging. Pass the run's ema_decay to keep averaging.",
                resume_from_checkpoint,
            )

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Seq2SeqTrainer.evaluate`; during training with ``ema_decay`` it ranks with the averaged weights."""
        if self.weight_average is None:
            return super().evaluate(*args, **kwargs)
        with self.weight_average.swapped_in(self.model):
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        if self.weight_average is None:
            return super()._save_checkpoint(model, trial)
        # the checkpoint's model is the average (what validation ranked, what load_best_model_at_end keeps)
        with self.weight_average.swapped_in(self.model):
            super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            self.weight_average.save_training_weights(self.model, folder)

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        # Seq2SeqTrainer.evaluate/predict gather with plain `accelerator.gather` (transformers PR #27025: generated
        # rows there may be num_return_sequences per example), which keeps the padding that even shards add to the
        # last batch: under `accelerate launch` some users were ranked twice. Our predictions are one row of ranked
        # items per user, so `gather_for_metrics` drops that padding and every user counts exactly once.
        self.gather_function = functools.partial(
            self.accelerator.gather_for_metrics, use_gather_object=self.args.eval_use_gather_object
        )
        return super().evaluation_loop(*args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any):
        """`Seq2SeqTrainer.predict`; its rows follow the dataset's rows (one per user)."""
        self._keep_eval_order = True
        try:
            return super().predict(*args, **kwargs)
        finally:
            self._keep_eval_order = False

    def _get_eval_sampler(self, eval_dataset):
        """A fixed evaluation order, sharded across processes: by length for `evaluate`, as given for `predict`.

        With ``train_sampling_strategy="group_by_length"`` (our default) Trainer groups evaluation batches by length
        in a shuffled order (transformers 5.x), so ``predict()``'s rows would not line up with the users. Metrics do
        not depend on the order, so `evaluate` keeps the speed of short padded batches with histories sorted by
        length (stable, no randomness); `predict` keeps the dataset's order.
        """
        if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
            return None
        column = self.args.length_column_name
        if not getattr(self, "_keep_eval_order", False) and column in getattr(eval_dataset, "column_names", ()):
            return LengthSortedSampler(eval_dataset[column])
        return SequentialSampler(eval_dataset)

    @property
    def trie_index(self) -> TrieIndex:
        """The vectorised item trie used by evaluation (built once)."""
        if self._trie_index is None:
            self._trie_index = build_trie_index(self.item_tokenizer)
        return self._trie_index

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
        **gen_kwargs,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = dict(inputs)
        scorer_histories = inputs.pop(SCORER_HISTORY, None)  # not a model input
        if not self.args.predict_with_generate or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        loss, _, _ = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        k = max(self.args.eval_ks)
        fused = self.args.fusion.fuses
        # decoded once for the exclusion, the prior and the scorer
        histories = self._history_items(inputs["input_ids"]) if self.args.exclude_history or fused else None
        indices, _ = generate_items(
            self.accelerator.unwrap_model(model),
            self.item_tokenizer,
            inputs["input_ids"],
            inputs.get("attention_mask"),
            num_beams=gen_kwargs.get("num_beams") or self.args.num_beams,
            k=k,
            method=self.args.decoding_method,
            index=self.trie_index,
            # with a scorer's longer window (SCORER_HISTORY) none of the history either of them reads
            exclude_items=(scorer_histories or histories) if self.args.exclude_history else None,
            fusion=self._fusion(histories, scorer_histories) if fused else None,
        )
        labels = None
        if "labels" in inputs:
            labels = torch.tensor(self.item_tokenizer.decode_index(inputs["labels"].tolist()), dtype=torch.long)
            labels = labels.to(inputs["input_ids"].device)
        return loss, indices.to(inputs["input_ids"].device), labels

    def _fusion(
        self, histories: list[list[int]], scorer_histories: list[list[int]] | None = None
    ) -> LogitsProcessorList:
        """What ranking fuses into the search for histories given as item rows: the successor prior
        (``transition_weight``), then the dense scorer's candidates (``scorer_weight``), as
        `GenerativeRecommender` does. The scorer reads ``scorer_histories`` when the examples carry them (a
        ``scorer_history`` column, `hf_genrec.add_scorer_history`), else the histories the model reads."""
        return fusion_processors(
            histories,
            self.trie_index,
            self._spellings,
            self._item_paths,
            self.args.fusion,
            transitions=self.transitions,
            scorer=self.scorer,
            scorer_histories=scorer_histories,
        )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        # eval rows of a hybrid run carry the scorer's longer history; prediction_step takes it off the inputs
        if SCORER_HISTORY not in self._signature_columns:
            self._signature_columns.append(SCORER_HISTORY)

    def _history_items(self, input_ids: torch.Tensor) -> list[list[int]]:
        """The item rows of each encoded history in the batch (what ``exclude_history`` keeps out)."""
        return [self.item_tokenizer.decode_history(row) for row in input_ids.tolist()]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the bundle (model, tokenizer, item map, quantiser, config, card) into a hidden folder beside
        ``output_dir`` and move it into place once complete: a crash while saving leaves the previous bundle."""
        target = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:  # a rank that writes nothing (it may still join collective gathers)
            return super()._save(target, state_dict=state_dict)
        with staged_directory(target) as staging:
            self._save_bundle(str(staging), state_dict)

    def _save_bundle(self, output_dir: str, state_dict: dict | None) -> None:
        """The bundle through `hf_genrec.bundle.io.save_bundle`, the model's files written by Trainer's own `_save`
        (sharding, state dicts gathered from several processes)."""

        def save_model(folder: str) -> None:
            super(GenRecTrainer, self)._save(folder, state_dict=state_dict)
            # Trainer pickles its arguments (`training_args.bin`); bundles hold no pickle, so keep them as JSON.
            pickled_args = os.path.join(folder, TRAINING_ARGS_NAME)
            if os.path.exists(pickled_args):
                os.remove(pickled_args)
            with open(os.path.join(folder, "training_args.json"), "w") as f:
                f.write(self.args.to_json_string())

        self._update_card_data()
        contents = BundleContents(
            model=None,
            item_tokenizer=self.item_tokenizer,
            config=self.genrec_config,
            quantizer=self.quantizer,
            transitions=self.transitions,
            scorer=self.scorer,
            card_data=self.card_data,
        )
        save_bundle(contents, output_dir, repo_id=self._card_repo_id(), save_model=save_model, staged=False)

    def _update_card_data(self) -> None:
        self.card_data.hyperparameters = non_default_arguments(self.args)
        self.card_data.log_history = list(self.state.log_history)

    def _card_repo_id(self) -> str | None:
        return getattr(self, "hub_model_id", None) or self.args.hub_model_id

    def _write_model_card(self, output_dir: str) -> None:
        self._update_card_data()
        card = build_model_card(self.item_tokenizer, self.genrec_config, self.card_data, repo_id=self._card_repo_id())
        with open(os.path.join(output_dir, CARD_NAME), "w", encoding="utf-8") as f:
            f.write(card)

    def create_model_card(self, *args, **kwargs) -> None:
        """Write hf_genrec's model card (Trainer's generic one knows nothing of items, IDs or ranking metrics)."""
        if self.is_world_process_zero():
            self._write_model_card(self.args.output_dir)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push the bundle saved in ``checkpoint_folder`` as the repo's main files.

        Trainer's version copies a few weight files and pickles the training arguments into the output folder
        (``training_args.bin``) before pushing; the bundle must hold no pickle, so push the checkpoint's own bundle.
        """
        from transformers.trainer import HubStrategy, hf_api
        from transformers.trainer_utils import SaveStrategy

        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        from transformers.trainer import PushInProgress

        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if self.args.save_strategy == SaveStrategy.STEPS:
            commit_message = f"Training in progress, step {self.state.global_step}"
        else:
            commit_message = f"Training in progress, epoch {int(self.state.epoch)}"
        job = hf_api().upload_folder(
            repo_id=self.hub_model_id,
            folder_path=checkpoint_folder,
            commit_message=commit_message,
            token=self.args.hub_token,
            run_as_future=True,
            ignore_patterns=PUSH_IGNORE_PATTERNS + ["optimizer.*", "scheduler.*", "rng_state*", "trainer_state.json"],
            revision=self.args.hub_revision,
        )
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            self.push_in_progress.jobs.append(job)


class _WeightAverageCallback(TrainerCallback):
    """Starts the trainer's weight average with training and averages in the weights after every optimiser step."""

    def __init__(self, trainer: GenRecTrainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer.weight_average is None:  # not resumed
            self.trainer.weight_average = WeightAverage(self.trainer.model, args.ema_decay)

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.weight_average.update(self.trainer.model)


class LengthSortedSampler(Sampler[int]):
    """Indices sorted by length, longest first (a stable sort: equal lengths keep their order); deterministic."""

    def __init__(self, lengths):
        self.order = np.argsort(-np.asarray(lengths), kind="stable").tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)
