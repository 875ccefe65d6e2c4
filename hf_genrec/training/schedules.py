"""Learning-rate schedules that anneal over a wall-clock budget instead of a step count."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from .callbacks import TimeBudgetCallback

BUDGET_SCHEDULES = ("linear", "cosine")


def time_budget_schedule(
    optimizer: Optimizer,
    clock: TimeBudgetCallback,
    kind: str,
    num_training_steps: int,
    warmup: float,
) -> LambdaLR:
    """A linear or cosine decay over the *progress* of a budgeted run: whichever is further along of steps done /
    ``num_training_steps`` and minutes spent / the clock's budget.

    With a time budget, the step count a run will reach is unknown, so a step-based cosine set for many epochs is
    cut while the learning rate is still high; this one reaches zero when the budget runs out (or when the epochs
    end, if that comes first). ``warmup`` below 1 is a share of the progress, otherwise a number of steps.
    """
    if kind not in BUDGET_SCHEDULES:
        raise ValueError(f"A time-budget schedule is one of {BUDGET_SCHEDULES}, got {kind!r}.")
    if clock.max_seconds is None:
        raise ValueError("A time-budget schedule needs a clock with a budget (max_train_minutes).")

    def progress(step: int) -> float:
        return min(1.0, max(step / max(1, num_training_steps), clock.elapsed_seconds() / clock.max_seconds))

    def factor(step: int) -> float:
        done = progress(step)
        if warmup >= 1:
            if step < warmup:
                return (step + 1) / warmup
            ramp = 0.0
        else:
            if done < warmup:
                return max(done / warmup, 1e-3)
            ramp = warmup
        rest = (done - ramp) / max(1e-9, 1.0 - ramp)
        return 1.0 - rest if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * rest))

    return LambdaLR(optimizer, factor)
