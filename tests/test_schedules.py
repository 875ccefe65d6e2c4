"""Learning-rate schedules that anneal over the time budget."""

import pytest
import torch

from hf_genrec.training.callbacks import TimeBudgetCallback
from hf_genrec.training.schedules import time_budget_schedule


def _factor(schedule, step):
    return schedule.lr_lambdas[0](step)


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_decay_follows_the_clock_or_the_steps_whichever_is_further(kind):
    clock = TimeBudgetCallback(max_minutes=10)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = time_budget_schedule(optimizer, clock, kind, num_training_steps=1000, warmup=0.1)
    clock.spent_seconds = 0.0
    assert _factor(schedule, 0) == pytest.approx(1e-3)  # warm-up starts near zero
    clock.spent_seconds = 30.0  # 5% of the budget: half-way through warm-up
    assert _factor(schedule, 1) == pytest.approx(0.5)
    clock.spent_seconds = 60.0 * 5.5  # half-way through the decay (progress 0.55 of which 0.1 is warm-up)
    assert _factor(schedule, 1) == pytest.approx(0.5)
    clock.spent_seconds = 60.0 * 10  # budget spent
    assert _factor(schedule, 1) == pytest.approx(0.0, abs=1e-9)
    clock.spent_seconds = 0.0
    assert _factor(schedule, 1000) == pytest.approx(0.0, abs=1e-9)  # the epochs ended first
    assert _factor(schedule, 550) == pytest.approx(0.5)


def test_step_warmup_and_bad_settings():
    clock = TimeBudgetCallback(max_minutes=1)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = time_budget_schedule(optimizer, clock, "linear", num_training_steps=100, warmup=10)
    assert _factor(schedule, 4) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="linear"):
        time_budget_schedule(optimizer, clock, "constant", 100, 0.0)
    with pytest.raises(ValueError, match="budget"):
        time_budget_schedule(optimizer, TimeBudgetCallback(), "cosine", 100, 0.0)


def test_the_training_clock_stops_when_training_ends():
    import time

    clock = TimeBudgetCallback(max_minutes=10)
    clock.on_train_begin(None, None, None)
    time.sleep(0.02)
    clock.on_train_end(None, None, None)
    spent = clock.elapsed_seconds()
    time.sleep(0.02)  # e.g. ranking the test users after train()
    assert spent >= 0.02 and clock.elapsed_seconds() == spent
