"""`GenRecTrainingArguments`: `Seq2SeqTrainingArguments` with the ranking, loss and fusion settings of hf_genrec, and
`non_default_arguments`, the ones a run chose (the model card's hyperparameters)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Seq2SeqTrainingArguments
from transformers.trainer_pt_utils import AcceleratorConfig

from ..decoding.fusion import FusionConfig


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
        if self.dataloader_pin_memory and not (torch.cuda.is_available() or torch.backends.mps.is_available()):
            # with no accelerator pinned memory is never used, and torch warns so from every DataLoader
            self.dataloader_pin_memory = False
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


# Arguments that describe where/how a run was logged or pushed, not the model: left out of the card.
_NOT_HYPERPARAMETERS = {
    "output_dir",
    "logging_dir",
    "run_name",
    "hub_model_id",
    "hub_token",
    "hub_private_repo",
    "hub_strategy",
    "push_to_hub",
    "report_to",
    "overwrite_output_dir",
    "use_cpu",
    "dataloader_num_workers",
    "disable_tqdm",
    "dataloader_pin_memory",  # follows the machine (off without an accelerator), not a choice
}
# set by TrainingArguments.__post_init__ from other arguments (eval_strategy, metric_for_best_model), not chosen
_DERIVED_ARGUMENTS = {"do_eval", "greater_is_better"}


def _normalised_default(name: str, default: Any) -> Any:
    if hasattr(default, "value"):  # enums
        return default.value
    if isinstance(default, (list, tuple)):
        return list(default)
    if name == "accelerator_config" and default is None:
        config = dataclasses.asdict(AcceleratorConfig())
        config.pop("use_configured_state", None)  # Trainer pops it while setting up devices
        return config
    return default


def non_default_arguments(args: Seq2SeqTrainingArguments) -> dict[str, Any]:
    """Training arguments that differ from ``GenRecTrainingArguments``' defaults (as JSON-friendly values), for the
    model card's hyperparameters.

    Values that ``__post_init__`` turns the defaults into (``debug`` ``""`` into ``[]``, ``accelerator_config``
    ``None`` into a dict, ``None`` switches into ``False``) and values it derives from other arguments count as
    defaults: they are not choices of the user. (A default instance cannot serve as the reference: building
    TrainingArguments resets the accelerator state of a trainer that is running.)
    """
    defaults = {f.name: f.default for f in dataclasses.fields(GenRecTrainingArguments) if f.init}
    out = {}
    for name, value in json.loads(args.to_json_string()).items():
        if name in _NOT_HYPERPARAMETERS or name in _DERIVED_ARGUMENTS or name.startswith("_") or name not in defaults:
            continue
        default = defaults[name]
        if default is dataclasses.MISSING:
            continue
        default = _normalised_default(name, default)
        if value == default or (default in (None, "") and value in (None, "", [], {}, False)):
            continue
        out[name] = value
    return out
