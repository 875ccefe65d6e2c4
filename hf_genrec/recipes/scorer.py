"""The hybrid recipe in `run_experiment`: a SASRec trained first, then fused into the generative model's ranking.

`hf_genrec.decoding.fusion` fuses a dense next-item scorer into the constrained beam search; this module trains that
scorer as part of a run (``scorer: sasrec`` in a recipe, ``--scorer sasrec`` on the command line), on the same
training part of the sequences as the IDs, the successor prior and the model, so nothing of the validation or test
items leaks into it. Its training minutes come off ``max_train_minutes``: a budget is the whole run's. A resumed
run reads the scorer back from the checkpoint (its ``scorer/`` folder) instead of training it again; a run stopped
before the generative model's first checkpoint continues the scorer's own training (``_scorer_training/`` in the
output dir: a checkpoint every epoch, then the finished scorer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle.layout import SCORER_DIR
from ..models.sasrec import SASRecConfig, SASRecModel
from ..training.sasrec import TRAINING_SETUP_FILE, train_sasrec

logger = logging.getLogger(__name__)

SCORERS = ("sasrec",)
#: where a run trains its scorer, inside its output dir (``_``: not pushed to the Hub; removed once the bundle is saved)
SCORER_TRAINING_DIR = "_scorer_training"


def scorer_training_started(output_dir: str | Path) -> bool:
    """Whether ``output_dir`` holds a scorer training a resumed run continues (or reads back, once finished)."""
    return (Path(output_dir) / SCORER_TRAINING_DIR / TRAINING_SETUP_FILE).is_file()


@dataclass
class ScorerArguments:
    """The dense scorer a run trains before the generative model (none by default)."""

    scorer: str | None = field(
        default=None,
        metadata={
            "help": "sasrec: train a SASRec on the training sequences first and fuse it into the ranking with "
            "scorer_weight / scorer_weights (the hybrid, hf_genrec.decoding.fusion). Its minutes count in "
            "max_train_minutes.",
            "choices": list(SCORERS),
        },
    )
    scorer_max_minutes: float | None = field(
        default=None, metadata={"help": "Stop the scorer's training after this many minutes."}
    )
    scorer_budget_share: float | None = field(
        default=None,
        metadata={
            "help": "Stop the scorer's training after this share of max_train_minutes (the model gets the rest), so "
            "one setting fits every recipe's budget; with scorer_max_minutes too, the smaller limit holds."
        },
    )
    scorer_epochs: int = field(
        default=200, metadata={"help": "The scorer's training epochs (an upper bound with scorer_max_minutes)."}
    )
    scorer_max_history: int | None = field(
        default=None,
        metadata={
            "help": "Items per training window of the scorer (and the most it reads when ranking). Default: from "
            "the data, as the SASRec paper chose (scorer_settings_for): 200 for long sequences, 50 for short ones."
        },
    )
    scorer_hidden_size: int = field(default=64, metadata={"help": "The scorer's embedding size (2 blocks, 1 head)."})
    scorer_dropout: float | None = field(
        default=None,
        metadata={"help": "The scorer's dropout. Default: from the data (scorer_settings_for): 0.2 long, 0.5 short."},
    )
    scorer_learning_rate: float = field(default=1e-3, metadata={"help": "The scorer's (constant) learning rate."})
    scorer_batch_size: int = field(default=128, metadata={"help": "Users per batch of the scorer."})
    scorer_eval_every_epochs: int = field(
        default=1,
        metadata={
            "help": "Rank the run's validation users with the scorer every this many epochs; the weights with the "
            "best NDCG@10 are the ones kept."
        },
    )
    scorer_patience: int | None = field(
        default=None,
        metadata={
            "help": "Stop the scorer's training after this many validation rankings without a better NDCG@10 (its "
            "unspent minutes go to the generative model)."
        },
    )

    def __post_init__(self):
        if self.scorer is not None and self.scorer not in SCORERS:
            raise ValueError(f"scorer must be one of {SCORERS} (or None for no scorer), got {self.scorer!r}.")
        if self.scorer_max_minutes is not None and not self.scorer_max_minutes > 0:
            raise ValueError(f"scorer_max_minutes must be positive, got {self.scorer_max_minutes}.")
        if self.scorer_budget_share is not None and not 0 < self.scorer_budget_share < 1:
            raise ValueError(
                f"scorer_budget_share must be between 0 and 1 (the model needs the rest), got {self.scorer_budget_share}."
            )
        if self.scorer_dropout is not None and not 0 <= self.scorer_dropout < 1:
            raise ValueError(f"scorer_dropout must be in [0, 1) (or None: from the data), got {self.scorer_dropout}.")
        window = 1 if self.scorer_max_history is None else self.scorer_max_history
        sizes = (self.scorer_epochs, window, self.scorer_hidden_size, self.scorer_batch_size)
        patience = 1 if self.scorer_patience is None else self.scorer_patience
        if min(*sizes, self.scorer_eval_every_epochs, patience) < 1:
            raise ValueError(
                "scorer_epochs, scorer_max_history, scorer_hidden_size, scorer_batch_size, scorer_eval_every_epochs "
                "and scorer_patience must be at least 1."
            )


# The SASRec paper's two settings (Kang & McAuley 2018, section IV): 200 items and dropout 0.2 on MovieLens-1M (about
# 160 actions per user), 50 items and dropout 0.5 on its sparse Amazon and Steam data (about 8 to 12). It sized the
# window by how long users' sequences are, so the data picks between the two here; the boundary lies between them.
LONG_SEQUENCE_MEAN = 50
SHORT_SETTINGS = {"max_history": 50, "dropout": 0.5}
LONG_SETTINGS = {"max_history": 200, "dropout": 0.2}


def scorer_settings_for(sequences: list[list[int]]) -> dict:
    """The scorer's window and dropout for these training sequences: the SASRec paper's MovieLens-1M settings
    (``max_history`` 200, ``dropout`` 0.2) when they average at least `LONG_SEQUENCE_MEAN` items, its settings for
    sparse data (50, 0.5) otherwise. Beauty's training sequences average 6.9 items, MovieLens-1M's 164."""
    if not sequences:
        raise ValueError("scorer_settings_for needs at least one training sequence.")
    mean = sum(len(s) for s in sequences) / len(sequences)
    return dict(LONG_SETTINGS if mean >= LONG_SEQUENCE_MEAN else SHORT_SETTINGS, mean_length=mean)


def scorer_window_and_dropout(scorer_args: ScorerArguments, sequences: list[list[int]]) -> tuple[int, float]:
    """The scorer's window and dropout: ``scorer_max_history`` and ``scorer_dropout`` where set, else what
    `scorer_settings_for` picks for these training sequences (logged)."""
    window, dropout = scorer_args.scorer_max_history, scorer_args.scorer_dropout
    if window is not None and dropout is not None:
        return window, dropout
    settings = scorer_settings_for(sequences)
    window = window or settings["max_history"]
    dropout = settings["dropout"] if dropout is None else dropout
    logger.info(
        "Scorer window %d items, dropout %.2f (training sequences average %.1f items; the SASRec paper's %s settings "
        "unless set)",
        window,
        dropout,
        settings["mean_length"],
        "long-sequence" if settings["mean_length"] >= LONG_SEQUENCE_MEAN else "sparse-data",
    )
    return window, dropout


def fit_scorer(
    scorer_args: ScorerArguments,
    sequences: list[list[int]],
    num_items: int,
    seed: int = 42,
    checkpoint: str | Path | None = None,
    budget_minutes: float | None = None,
    validation: tuple[list[list[int]], list[int]] | None = None,
    exclude_history: bool = False,
    output_dir: str | Path | None = None,
    resume: bool = False,
) -> SASRecModel | None:
    """The run's scorer: trained on ``sequences`` (item rows, training part only), or read back from
    ``checkpoint``'s ``scorer/`` folder when resuming. `None` when ``scorer_args.scorer`` is `None`; a checkpoint
    and arguments that disagree about having a scorer are an error (the budget and ranking would change silently).
    ``budget_minutes`` is the run's training budget, which ``scorer_budget_share`` is a share of. ``validation``
    (the run's validation users' histories and next items, as item rows) picks the weights kept and, with
    ``scorer_patience``, when to stop (`hf_genrec.training.sasrec.train_sasrec`). With ``output_dir`` (the run's) the
    scorer trains in its ``_scorer_training/`` folder, which ``resume`` continues (`train_sasrec`'s ``resume``)."""
    folder = Path(checkpoint) / SCORER_DIR if checkpoint else None
    if scorer_args.scorer is None:
        if folder is not None and folder.is_dir():
            raise ValueError(
                f"{checkpoint} was trained with a scorer ({folder}); resume it with the same settings (scorer: "
                "sasrec), or start a new run without one."
            )
        return None
    if folder is not None:
        if not folder.is_dir():
            raise ValueError(
                f"{checkpoint} holds no scorer/ folder: that run was trained without a scorer. Resume it without "
                "`scorer`, or start a new run with one."
            )
        scorer = SASRecModel.from_pretrained(folder)
        logger.info("Scorer read back from %s (%s)", folder, scorer.config.training_summary)
        return scorer.eval()
    limits = [scorer_args.scorer_max_minutes]
    if scorer_args.scorer_budget_share is not None:
        if budget_minutes is None:
            raise ValueError(
                "scorer_budget_share is a share of max_train_minutes, which is not set: set it, or limit the scorer "
                "with scorer_max_minutes or scorer_epochs."
            )
        limits.append(scorer_args.scorer_budget_share * budget_minutes)
    limits = [limit for limit in limits if limit is not None]
    window, dropout = scorer_window_and_dropout(scorer_args, sequences)
    config = SASRecConfig(
        num_items=num_items,
        max_positions=window,
        hidden_size=scorer_args.scorer_hidden_size,
        num_layers=2,
        num_heads=1,
        dropout=dropout,
    )
    scorer, _ = train_sasrec(
        sequences,
        config,
        epochs=scorer_args.scorer_epochs,
        batch_size=scorer_args.scorer_batch_size,
        learning_rate=scorer_args.scorer_learning_rate,
        max_minutes=min(limits) if limits else None,
        seed=seed,
        validation=validation,
        exclude_history=exclude_history,
        eval_every_epochs=scorer_args.scorer_eval_every_epochs,
        patience=scorer_args.scorer_patience,
        output_dir=None if output_dir is None else Path(output_dir) / SCORER_TRAINING_DIR,
        resume=resume,
    )
    return scorer


def scorer_minutes(scorer: SASRecModel | None) -> float:
    """Minutes the scorer's training took (0 without a scorer, or for one trained outside `train_sasrec`)."""
    summary = scorer.config.training_summary if scorer is not None else None
    return float((summary or {}).get("train_minutes", 0.0))
