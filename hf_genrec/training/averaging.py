"""An exponential moving average of a model's weights, for `GenRecTrainer` (``ema_decay``): the average, the
callback that keeps it while training, and resuming it from a checkpoint."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.swa_utils import AveragedModel
from transformers import Trainer, TrainerCallback

from ..bundle.layout import TRAINING_WEIGHTS_NAME

logger = logging.getLogger(__name__)

# TRAINING_WEIGHTS_NAME is written into every checkpoint of a run with ``ema_decay``: the raw (not averaged) weights
# training continues from; the checkpoint's model files hold the averaged ones, which are what validation ranked and
# what users load


def ema_decay_schedule(decay: float, num_averaged: int) -> float:
    """The decay of the ``num_averaged``-th update: ``min(decay, (1 + n) / (10 + n))``.

    A fixed decay would keep the random initial weights in the average for thousands of steps (at 0.9995, 37% of
    the average after 2,000 steps); the warm-up averages over about the last tenth of the steps so far until that
    reaches ``decay``.
    """
    return min(decay, (1.0 + num_averaged) / (10.0 + num_averaged))


class WeightAverage:
    """Keeps an exponential moving average of ``model``'s parameters (a `torch.optim.swa_utils.AveragedModel`).

    Args:
        model (`nn.Module`): the model being trained; the average starts from its current weights.
        decay (`float`): the per-step decay once warmed up (see `ema_decay_schedule`), in (0, 1).
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema_decay must be in (0, 1) (0 turns averaging off), got {decay}.")
        self.decay = decay

        @torch.no_grad()
        def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
            weight = 1.0 - ema_decay_schedule(decay, int(num_averaged))
            torch._foreach_lerp_(averaged, current, weight)

        self.averaged = AveragedModel(model, multi_avg_fn=update)

    @property
    def num_updates(self) -> int:
        return int(self.averaged.n_averaged)

    def update(self, model: nn.Module) -> None:
        """Average in ``model``'s current weights (after an optimiser step)."""
        self.averaged.update_parameters(model)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite ``model``'s parameters with the averaged ones."""
        for target, source in zip(model.parameters(), self.averaged.module.parameters(), strict=True):
            target.copy_(source)

    @contextlib.contextmanager
    def swapped_in(self, model: nn.Module) -> Iterator[None]:
        """Within the block ``model`` holds the averaged weights; its own come back afterwards."""
        saved = [p.detach().clone() for p in model.parameters()]
        self.copy_to(model)
        try:
            yield
        finally:
            with torch.no_grad():
                for target, source in zip(model.parameters(), saved, strict=True):
                    target.copy_(source)

    def save_training_weights(self, model: nn.Module, folder: str | os.PathLike) -> None:
        """Write ``model``'s own (raw) weights and the update count beside a checkpoint of the averaged ones."""
        tensors = {name: p.detach().contiguous().cpu() for name, p in model.named_parameters()}
        save_file(
            tensors, os.path.join(folder, TRAINING_WEIGHTS_NAME), metadata={"num_updates": str(self.num_updates)}
        )

    @classmethod
    def resume(cls, model: nn.Module, decay: float, folder: str | os.PathLike) -> WeightAverage:
        """The average of a checkpoint whose model files (now loaded into ``model``) hold the averaged weights.

        ``model`` gets the raw weights of `TRAINING_WEIGHTS_NAME` back, so training continues where it stopped.
        """
        average = cls(model, decay)  # starts from the loaded (averaged) weights
        count = load_training_weights(model, folder)
        average.averaged.n_averaged.fill_(max(count, 1))
        return average


def load_training_weights(model: nn.Module, folder: str | os.PathLike) -> int:
    """Load the raw weights a checkpoint of a run with ``ema_decay`` keeps beside its averaged ones into ``model``.

    Returns the number of averaging updates up to that checkpoint. `benchmarks/paired.py averaged` ranks with both.
    """
    path = os.path.join(folder, TRAINING_WEIGHTS_NAME)
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{folder} has no {TRAINING_WEIGHTS_NAME}: it was not saved by a run with ema_decay, so its weights "
            "cannot be told apart from an average. Resume it with ema_decay=0, or start a new run."
        )
    with safe_open(path, framework="pt") as f:
        count = int((f.metadata() or {}).get("num_updates", "1"))
    raw = load_file(path)
    names = [name for name, _ in model.named_parameters()]
    if sorted(raw) != sorted(names):
        raise ValueError(
            f"{path} does not match the model: {len(raw)} tensors for {len(names)} parameters. Load it into the "
            "model the checkpoint was trained with."
        )
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(raw[name].to(p.device))
    return count


def resume_weight_average(model: nn.Module, decay: float, checkpoint: str | os.PathLike) -> WeightAverage | None:
    """What a run resumed from ``checkpoint`` (whose model files are loaded into ``model``) averages with.

    With ``decay`` the checkpoint's average comes back (`WeightAverage.resume`). Without it, a checkpoint of a run that
    averaged still gets its raw weights loaded into ``model``, with a warning: the optimiser's state belongs to them,
    not to the average. Returns `None` when nothing is averaged.
    """
    if decay:
        # the checkpoint's model files hold the average; the raw weights training continues from sit beside them
        return WeightAverage.resume(model, decay, checkpoint)
    if os.path.exists(os.path.join(checkpoint, TRAINING_WEIGHTS_NAME)):
        load_training_weights(model, checkpoint)
        logger.warning(
            "%s was saved by a run with ema_decay; resuming with ema_decay=0 continues from its raw weights and "
            "stops averaging. Pass the run's ema_decay to keep averaging.",
            checkpoint,
        )
    return None


class WeightAverageCallback(TrainerCallback):
    """Starts ``trainer.weight_average`` with training (unless a resumed checkpoint brought one back) and averages in
    the weights after every optimiser step.

    Args:
        trainer (`Trainer`): a trainer with a ``weight_average`` attribute (`GenRecTrainer`), which ranks and saves
            with the average.
    """

    def __init__(self, trainer: Trainer):
        self.trainer = trainer

    def on_train_begin(self, args, state, control, **kwargs):
        if self.trainer.weight_average is None:  # not resumed
            self.trainer.weight_average = WeightAverage(self.trainer.model, args.ema_decay)

    def on_step_end(self, args, state, control, **kwargs):
        self.trainer.weight_average.update(self.trainer.model)
