"""Trainer callbacks: the training clock and time budget, and the model card's facts."""

from __future__ import annotations

import json
import logging
import os
import time

from transformers import TrainerCallback

from ..bundle.model_card import GenRecCardData
from ..utils.saving import atomic_write_text

logger = logging.getLogger(__name__)

#: written into every checkpoint: the training minutes spent up to it, so a resumed run keeps counting
CLOCK_FILE = "training_clock.json"


def read_spent_seconds(checkpoint_dir: str | os.PathLike) -> float:
    """Training seconds spent before ``checkpoint_dir`` was saved (0 when it holds no clock file)."""
    path = os.path.join(checkpoint_dir, CLOCK_FILE)
    if not os.path.exists(path):
        return 0.0
    with open(path) as f:
        return float(json.load(f)["train_seconds"])


class TimeBudgetCallback(TrainerCallback):
    """Keeps the training clock and stops once ``max_minutes`` have passed, after evaluating and saving.

    The clock counts wall time inside ``train()`` (validation included) and survives resuming: every checkpoint
    stores the minutes spent (``training_clock.json``), `GenRecTrainer.train(resume_from_checkpoint=...)` reads
    them back, and every log entry gets ``train_minutes`` (the validation curve's x axis). The final evaluation and
    save let ``load_best_model_at_end`` compare the last weights too, so a budget-cut run still ends with its best
    checkpoint.

    Args:
        max_minutes (`float`, *optional*): the budget; `None` keeps the clock without stopping.
    """

    def __init__(self, max_minutes: float | None = None):
        if max_minutes is not None and max_minutes <= 0:
            raise ValueError(f"max_train_minutes must be positive, got {max_minutes}.")
        self.max_seconds = None if max_minutes is None else 60.0 * max_minutes
        self.spent_seconds = 0.0  # before this call of train() (a resumed run)
        self.start: float | None = None
        self.stopped_early = False

    def elapsed_seconds(self) -> float:
        return self.spent_seconds + (time.perf_counter() - self.start if self.start is not None else 0.0)

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_train_end(self, args, state, control, **kwargs):
        # the clock stops with train(): ranking the test users (or anything else) afterwards is not training
        if self.start is not None:
            self.spent_seconds += time.perf_counter() - self.start
            self.start = None

    def on_log(self, args, state, control, logs=None, **kwargs):
        if state.log_history:
            state.log_history[-1].setdefault("train_minutes", self.elapsed_seconds() / 60)

    def on_save(self, args, state, control, **kwargs):
        folder = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(folder) and state.is_world_process_zero:
            # written last into the checkpoint (after Trainer's own files), atomically: it also marks it complete
            clock = {"train_seconds": self.elapsed_seconds(), "global_step": state.global_step}
            atomic_write_text(os.path.join(folder, CLOCK_FILE), json.dumps(clock))

    def on_step_end(self, args, state, control, **kwargs):
        if self.max_seconds is not None and self.elapsed_seconds() >= self.max_seconds:
            logger.info(
                "Time budget of %.1f min reached at step %d; stopping.", self.max_seconds / 60, state.global_step
            )
            self.stopped_early = True
            control.should_training_stop = True
            if args.eval_strategy != "no":
                control.should_evaluate = True
            if args.save_strategy != "no":
                control.should_save = True
        return control


class ModelCardCallback(TrainerCallback):
    """Keeps a trainer's `GenRecCardData` up to date: test metrics from ``evaluate``, the log history."""

    def __init__(self, card_data: GenRecCardData):
        self.card_data = card_data

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        for key, value in (metrics or {}).items():
            if key.startswith("test_") and isinstance(value, (int, float)):
                name = key[len("test_") :]
                if "@" in name or name == "invalid_rate":
                    self.card_data.test_metrics[name] = float(value)

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.card_data.log_history = list(state.log_history)
