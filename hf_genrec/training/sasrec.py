"""Training a SASRec (`hf_genrec.models.sasrec.SASRecModel`): `train_sasrec` with the stock `Trainer`, keeping the
state with the best validation ranking (`BestValidationState`), and resuming a stopped training from its folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from ..evaluation.metrics import ranking_metrics
from ..features.collaborative import encode_sequences
from ..models.sasrec import SASRecConfig, SASRecModel, rank_histories
from ..utils.progress import are_progress_bars_disabled
from ..utils.saving import last_complete_checkpoint, staged_directory
from .callbacks import TimeBudgetCallback, read_spent_seconds

logger = logging.getLogger(__name__)

#: what `BestValidationState` writes into each checkpoint: the kept weights and the ranking history
BEST_STATE_FILE = "best_state.safetensors"
BEST_VALIDATION_FILE = "best_validation.json"
#: what `train_sasrec(output_dir=...)` writes beside its checkpoints: the settings a resumed training must share
TRAINING_SETUP_FILE = "sasrec_training.json"


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


class BestValidationState(TrainerCallback):
    """Ranks held-out next items every ``every_epochs`` epochs, keeps the weights with the best NDCG@10 (in memory:
    SASRec is small) and stops training after ``patience`` rankings without a better one.

    With a constant learning rate SASRec overfits once it has learnt what it can: on Beauty its validation NDCG@10
    peaked at epoch 25 (0.0674) and fell to 0.0617 by epoch 125, so the last state is not the one to keep.

    Every checkpoint the `Trainer` saves carries what this callback holds (the kept weights in
    ``best_state.safetensors``, the best ranking, the curve and the patience count in ``best_validation.json``), so
    `load` after resuming from it continues as if training had not stopped. Each point of ``curve`` has the
    ``epoch``, ``step``, ``ndcg@10`` and ``recall@10``, and ``minutes`` of training when ``clock`` (a
    `hf_genrec.training.callbacks.TimeBudgetCallback`) is set.
    """

    def __init__(
        self,
        histories: Sequence[Sequence[int]],
        targets: Sequence[int],
        exclude_history: bool = False,
        every_epochs: int = 1,
        patience: int | None = None,
        clock: TimeBudgetCallback | None = None,
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
        self.clock = clock
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best: dict[str, float] = {"ndcg@10": -1.0}
        self.curve: list[dict[str, float]] = []
        self.stale = 0

    @property
    def out_of_patience(self) -> bool:
        return self.patience is not None and self.stale >= self.patience

    def on_train_begin(self, args, state, control, **kwargs):
        if self.out_of_patience:  # resumed after it had already stopped the run
            control.should_training_stop = True

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        if round(state.epoch) % self.every == 0:
            self._rank(state, control, model)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        # a time budget stops between rankings: the last weights are ranked too, so they can be kept
        if state.global_step and (not self.curve or self.curve[-1]["step"] != state.global_step):
            self._rank(state, control, model)

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        if folder.is_dir() and state.is_world_process_zero:
            self.save(folder)

    def save(self, folder: str | os.PathLike) -> None:
        """Write the kept weights and the ranking history into ``folder`` (a checkpoint)."""
        from safetensors.torch import save_file

        folder = Path(folder)
        if self.best_state is not None:
            save_file({k: v.contiguous() for k, v in self.best_state.items()}, str(folder / BEST_STATE_FILE))
        record = {"best": self.best, "curve": self.curve, "stale": self.stale}
        (folder / BEST_VALIDATION_FILE).write_text(json.dumps(record, indent=2) + "\n")

    def load(self, folder: str | os.PathLike) -> None:
        """Read back what `save` wrote into ``folder``; a checkpoint without it is an error (it was not saved with
        this callback, so the best state so far would be lost)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        path = folder / BEST_VALIDATION_FILE
        if not path.is_file():
            raise ValueError(
                f"{folder} holds no {BEST_VALIDATION_FILE}: it was saved without BestValidationState, so the best "
                "validation state so far is unknown. Start the training again."
            )
        record = json.loads(path.read_text())
        self.best, self.curve, self.stale = record["best"], record["curve"], int(record["stale"])
        state = folder / BEST_STATE_FILE
        self.best_state = load_file(str(state)) if state.is_file() else None

    def _rank(self, state, control, model) -> None:
        model.eval()
        metrics = ranking_metrics(rank_histories(model, self.histories, 10, self.exclude_history), self.targets, [10])
        model.train()
        point = {"epoch": float(state.epoch), "step": state.global_step, "ndcg@10": float(metrics["ndcg@10"])}
        point["recall@10"] = float(metrics["recall@10"])
        if self.clock is not None:
            point["minutes"] = self.clock.elapsed_seconds() / 60
        self.curve.append(point)
        ndcg = point["ndcg@10"]
        logger.info("SASRec epoch %.1f: validation NDCG@10 %.4f", state.epoch, ndcg)  # a long run's progress
        if ndcg > self.best["ndcg@10"]:
            self.best = {"ndcg@10": ndcg, "epoch": float(state.epoch), "step": state.global_step}
            self.best_state = {key: value.detach().clone() for key, value in model.state_dict().items()}
            self.stale = 0
            return
        self.stale += 1
        if self.out_of_patience:
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
    output_dir: str | os.PathLike | None = None,
    resume: bool = False,
) -> tuple[SASRecModel, dict]:
    """Train a `SASRecModel` on item sequences with the stock `Trainer` (full-softmax cross-entropy at every
    position, AdamW at a constant learning rate, no weight decay: the harness's SASRec baseline; with
    ``config.loss="sampled_softmax"`` the negatives are drawn in proportion to how often each item is a training
    target, see `SASRecConfig`). With
    ``validation``, the weights with the best validation NDCG@10 are the ones returned (`BestValidationState`).

    Args:
        sequences (`Sequence[Sequence[int]]`): each user's 0-based item rows in time order, **only the part a model
            may train on** (no validation or test items); each trains on its ``config.max_positions + 1`` most
            recent items.
        config (`SASRecConfig`): the model's size; ``num_items`` must cover every row of ``sequences``.
        epochs (`int`): passes over the sequences (an upper bound when ``max_minutes`` is set).
        batch_size, learning_rate: of the optimiser.
        max_minutes (`float`, *optional*): stop after this many minutes of training (of the whole training, when
            it is resumed).
        seed (`int`): seeds the initialisation, dropout and batch order.
        validation (`tuple`, *optional*): ``(histories, targets)``, held-out users' item rows and the next item of
            each, ranked every ``eval_every_epochs`` epochs (e.g. the validation split's users; never the test's).
        exclude_history (`bool`): rank those users' next items without the items of their history.
        eval_every_epochs (`int`): epochs between two validation rankings.
        patience (`int`, *optional*): stop after this many validation rankings without a better NDCG@10.
        output_dir (`str` or `os.PathLike`, *optional*): save a checkpoint there after every epoch (the last one
            kept, with the best validation state so far) and the finished model at the end, so that a stopped
            training can be continued with ``resume=True``. Without it nothing is saved.
        resume (`bool`): continue the training in ``output_dir``: from its last complete checkpoint, with the clock,
            best state and patience count where they were, or read back the finished model. The sequences,
            validation users and settings (all but ``max_minutes``) must be the ones it was started with. Without
            ``resume`` a training already in ``output_dir`` is an error.

    Returns:
        The trained model (in eval mode) and ``{"epochs", "steps", "train_minutes"}``, with validation also
        ``"best_epoch"``, ``"validation_ndcg@10"`` (of the returned weights) and ``"validation_curve"``.
    """
    import datasets
    from accelerate import PartialState
    from transformers import Trainer, TrainingArguments

    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}.")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be positive (or None for no time limit), got {max_minutes}.")
    if resume and output_dir is None:
        raise ValueError("resume=True continues the training saved in output_dir: pass output_dir too.")
    rows = check_item_rows(sequences, config.num_items, "Sequence")
    if not any(len(r) >= 2 for r in rows):
        raise ValueError("No sequence has two items, so SASRec has no next item to learn from.")
    if validation is not None:
        check_item_rows(validation[0], config.num_items, "Validation history")
        check_item_rows([validation[1]], config.num_items, "The validation targets (one sequence)")
    checkpoint = None
    if output_dir is not None:
        output_dir = Path(output_dir)
        setup = {
            "config": {
                k: v for k, v in config.to_diff_dict().items() if k not in ("training_summary", "transformers_version")
            },
            "sequences": _fingerprint(rows),
            "validation": None if validation is None else _fingerprint([*validation[0], validation[1]]),
            "epochs": epochs,
            "batch_size": batch_size,
            "learning_rate": learning_rate,
            "seed": seed,
            "exclude_history": exclude_history,
            "eval_every_epochs": eval_every_epochs,
            "patience": patience,
        }
        setup = json.loads(json.dumps(setup))  # as it reads back from the file
        finished = _check_training_dir(output_dir, setup, resume)
        # under `accelerate launch` every process checks before the main one writes anything
        processes = PartialState()
        processes.wait_for_everyone()
        if finished is not None:
            return finished, finished.config.training_summary
        checkpoint = last_complete_checkpoint(output_dir) if resume else None
        if processes.is_main_process:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / TRAINING_SETUP_FILE).write_text(json.dumps(setup, indent=2) + "\n")
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(seed)
        model = SASRecModel(config)
    training_rows = sasrec_training_rows(rows, config.max_positions)
    if config.loss == "sampled_softmax":  # negatives follow the popularity of the training targets
        targets = training_rows["labels"][training_rows["labels"] > 0] - 1
        model.set_negative_sampler(np.bincount(targets, minlength=config.num_items))
    train = datasets.Dataset.from_dict({key: value.tolist() for key, value in training_rows.items()})
    clock = TimeBudgetCallback(max_minutes)
    keeper = None
    if validation is not None:
        keeper = BestValidationState(*validation, exclude_history, eval_every_epochs, patience, clock=clock)
    if checkpoint is not None:
        clock.spent_seconds = read_spent_seconds(checkpoint)
        if keeper is not None:
            keeper.load(checkpoint)
        logger.info("SASRec: resuming from %s (%.1f min trained).", checkpoint, clock.spent_seconds / 60)
    with tempfile.TemporaryDirectory() as scratch:  # nothing is saved there without output_dir
        args = TrainingArguments(
            output_dir=str(output_dir or scratch),
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            learning_rate=learning_rate,
            weight_decay=0.0,
            lr_scheduler_type="constant",
            save_strategy="no" if output_dir is None else "epoch",
            save_total_limit=1,
            logging_strategy="no",
            report_to="none",
            seed=seed,
            use_cpu=not torch.cuda.is_available(),
            disable_tqdm=are_progress_bars_disabled(),
        )
        # the keeper first: its files go into a checkpoint before the clock's, which marks the checkpoint complete
        callbacks = [keeper, clock] if keeper is not None else [clock]
        trainer = Trainer(model=model, args=args, train_dataset=train, callbacks=callbacks)
        output = trainer.train(resume_from_checkpoint=checkpoint)
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
                "best_step": keeper.best["step"],
                "validation_ndcg@10": keeper.best["ndcg@10"],
                "validation_curve": keeper.curve,
            }
        )
        logger.info(
            "SASRec: keeping epoch %.1f (validation NDCG@10 %.4f).", keeper.best["epoch"], keeper.best["ndcg@10"]
        )
    model.config.training_summary = info
    if output_dir is not None and trainer.is_world_process_zero():
        # the finished model replaces the checkpoints: a resume reads it back instead of training on. Staged, so a
        # save cut short never leaves a config.json that announces weights which are not all there
        with staged_directory(output_dir) as staging:
            model.save_pretrained(staging)
        for folder in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(folder, ignore_errors=True)
    return model.eval(), info


def train_sasrec_for_features(
    sequences: Iterable[Sequence[str]],
    item_ids: Sequence[str],
    dim: int = 64,
    epochs: int = 15,
    max_length: int = 50,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    dropout: float = 0.5,
    seed: int = 0,
) -> SASRecModel:
    """Train the SASRec whose item embeddings `hf_genrec.features.collaborative.sasrec_features` reads (the
    ``"sasrec"`` item features): 2 blocks, 1 head, ``dim``-wide, on item ids rather than rows.

    Args:
        sequences: each user's item ids in time order; **only the part a model may train on** (no validation or
            test items).
        item_ids: the item table's ids; item ``item_ids[i]`` is the model's row ``i``.
        dim: embedding size of the SASRec.
        epochs, max_length, batch_size, learning_rate, dropout: its training (defaults: the SASRec baseline's
            Beauty settings; after 15 epochs its Beauty validation NDCG@10 is within 4% of its best).
        seed: seeds the SASRec's initialisation, dropout and batch order.

    Returns:
        The trained model, in eval mode; ``config.training_summary`` says what the training took.
    """
    item_ids = list(item_ids)
    if dim < 1 or epochs < 1 or max_length < 1:
        raise ValueError(f"dim, epochs and max_length must be at least 1, got {dim}, {epochs} and {max_length}.")
    encoded = encode_sequences(sequences, item_ids)  # train_sasrec refuses sequences with no next item to learn
    config = SASRecConfig(
        num_items=len(item_ids), max_positions=max_length, hidden_size=dim, num_layers=2, num_heads=1, dropout=dropout
    )
    model, _ = train_sasrec(
        encoded, config, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate, seed=seed
    )
    return model


def _fingerprint(rows: Sequence[Sequence[int]]) -> str:
    """A short hash of item-row sequences: a resumed training must see the data it started on."""
    digest = hashlib.sha1()
    for row in rows:
        digest.update(np.asarray(row, dtype=np.int64).tobytes())
        digest.update(b"|")
    return f"{len(rows)} sequences, sha1 {digest.hexdigest()[:16]}"


def _check_training_dir(output_dir: Path, setup: dict, resume: bool) -> SASRecModel | None:
    """The finished model of the training in ``output_dir`` when ``resume`` finds one; `None` when training has
    to start or go on; an error when a training there is not resumed or was started with other settings."""
    recorded = output_dir / TRAINING_SETUP_FILE
    if not recorded.is_file():
        # not resumable, and a new training beside them would lose its own checkpoints to the Trainer's rotation
        if any(output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*")):
            raise ValueError(f"{output_dir} holds checkpoints but no {TRAINING_SETUP_FILE}: they were not written by "
                             "train_sasrec, so they can be neither resumed nor trained beside. Pass another "
                             "output_dir.")  # fmt: skip
        return None
    if not resume:
        raise ValueError(
            f"{output_dir} already holds a SASRec training ({TRAINING_SETUP_FILE}): pass resume=True to continue it, "
            "or another output_dir (or delete it) to start again."
        )
    previous = json.loads(recorded.read_text())
    changed = sorted(key for key in setup if previous.get(key) != setup[key])
    if changed:
        detail = "; ".join(f"{key}: {previous.get(key)!r} then, {setup[key]!r} now" for key in changed)
        raise ValueError(
            f"The SASRec training in {output_dir} was started with other settings or data ({detail}). Resume it "
            "with the ones it started with, or train into another output_dir."
        )
    if (output_dir / "config.json").is_file():
        model = SASRecModel.from_pretrained(output_dir)
        logger.info(
            "SASRec: the training in %s had finished (%s); read back.", output_dir, model.config.training_summary
        )
        return model.eval()
    return None
