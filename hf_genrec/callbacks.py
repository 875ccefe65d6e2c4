"""Trainer callbacks."""

from __future__ import annotations

import logging
import time

from transformers import TrainerCallback

logger = logging.getLogger(__name__)


class TimeBudgetCallback(TrainerCallback):
    """Stops training once ``max_minutes`` of wall-clock time have passed, after evaluating and saving.

    The final evaluation and save let ``load_best_model_at_end`` compare the last weights too, so a budget-cut run
    still ends with its best checkpoint.
    """

    def __init__(self, max_minutes: float):
        if max_minutes <= 0:
            raise ValueError(f"max_train_minutes must be positive, got {max_minutes}.")
        self.max_seconds = 60.0 * max_minutes
        self.start: float | None = None
        self.stopped_early = False

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.start is not None and time.perf_counter() - self.start >= self.max_seconds:
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
