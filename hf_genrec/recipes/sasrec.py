"""``--model sasrec``: SASRec alone, under a recipe's split, budget and protocol, recorded as a generative run is.

A dataset's recipe and a model name then give comparable numbers, as in RecBole: the same leave-one-out split, the
same validation users (the recipe's ``max_eval_users`` sample, which picks the SASRec weights kept), the same test
users, the same ``exclude_history``, and the same ``results.json`` layout with the same baselines. The SASRec is the
hybrid's scorer (`hf_genrec.recipes.scorer.fit_scorer`, which trains it with `hf_genrec.training.sasrec.train_sasrec`)
given the whole training budget, and it ranks with `hf_genrec.models.sasrec.rank_histories`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.baselines import MostPopular
from ..evaluation.metrics import ranking_metrics, recall_curve, target_ranks
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel, rank_histories
from ..training.arguments import GenRecTrainingArguments
from ..utils.saving import atomic_write_text
from ..version import __version__
from .arguments import DataArguments, ItemIDArguments
from .results import metric_names, minus_baselines, save_test_per_user, test_users_text
from .run import read_data, user_sequences_by_id
from .scorer import (
    SCORER_TRAINING_DIR,
    ScorerArguments,
    fit_scorer,
    scorer_training_started,
    scorer_window_and_dropout,
)

logger = logging.getLogger(__name__)

#: the item ids in the model's row order, beside the saved SASRec (row ``i`` is item ``ITEM_IDS_NAME[i]``)
ITEM_IDS_NAME = "item_ids.json"
SASREC_PROTOCOL = (
    "leave-one-out per user (last item = test, second-to-last = validation); SASRec trained on every position of "
    "each user's training part (its {window} most recent items); history capped at {window} items; full ranking "
    "over all {n_items} items{excluded}; metrics averaged over {test_users}"
)


def histories_and_targets(
    split, sequences: dict[str, Sequence[str]], index: dict[str, int], window: int, held_out: int
) -> tuple[list[list[int]], np.ndarray]:
    """The users of a leave-one-out ``split``: each one's history read back up to ``window`` items and the next
    item, as item rows. ``held_out`` items of each user's whole sequence follow the history (validation 2, test 1),
    as `hf_genrec.training.examples.add_scorer_history` reads them for the hybrid's scorer."""
    histories = []
    for user in split["user_id"][:]:
        sequence = list(sequences[user])
        histories.append([index[item] for item in sequence[: len(sequence) - held_out][-window:]])
    return histories, np.asarray([index[item] for item in split["target"][:]], dtype=np.int64)


def run_sasrec_experiment(
    data_args: DataArguments,
    training_args: GenRecTrainingArguments,
    scorer_args: ScorerArguments,
    resume_from_checkpoint: str | bool | None = None,
) -> dict:
    """Train SASRec alone and rank the test users under the recipe's protocol; write the model, its item ids and
    ``results.json`` to the output dir.

    The SASRec's settings are the ``scorer_*`` options (the ``sasrec`` overlay sets them); its budget is the whole
    ``max_train_minutes`` (or ``scorer_max_minutes``, if smaller). ``resume_from_checkpoint`` (`True` or ``"last"``)
    continues the SASRec training a stopped run left in the output dir, clock included.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    run_data = read_data(data_args, ItemIDArguments(), training_args)
    timings["data_s"] = time.perf_counter() - start
    data = run_data.data
    index = {item: row for row, item in enumerate(data.items["item_id"][:])}
    train_rows = [[index[item] for item in sequence] for sequence in run_data.train_sequences]
    resume = resume_from_checkpoint not in (None, False)
    training_dir = output_dir / SCORER_TRAINING_DIR
    if resume and not scorer_training_started(output_dir):
        raise ValueError(f"resume_from_checkpoint is set, but {output_dir} holds no SASRec training to go on with.")
    if not resume and training_dir.is_dir():
        logger.warning("Starting a new run: removing %s, an earlier run's SASRec training.", training_dir)
        shutil.rmtree(training_dir, ignore_errors=True)

    window, dropout = scorer_window_and_dropout(scorer_args, train_rows)
    limits = [m for m in (scorer_args.scorer_max_minutes, training_args.max_train_minutes) if m is not None]
    scorer_args = dataclasses.replace(
        scorer_args,
        scorer="sasrec",
        scorer_max_history=window,
        scorer_dropout=dropout,
        scorer_max_minutes=min(limits) if limits else None,
    )
    sequences = user_sequences_by_id(data)
    validation = histories_and_targets(run_data.splits["validation"], sequences, index, window, held_out=2)
    logger.info(
        "[train] Training SASRec (%d items a window, dropout %.2f) for %s, validating on %s users; checkpoints in %s",
        window,
        dropout,
        "no time limit" if not limits else f"at most {min(limits):.1f} minutes",
        f"{len(validation[1]):,}",
        training_dir,
    )
    start = time.perf_counter()
    model = fit_scorer(
        scorer_args,
        train_rows,
        data.num_items,
        training_args.seed,
        budget_minutes=training_args.max_train_minutes,
        validation=(validation[0], validation[1].tolist()),
        exclude_history=training_args.exclude_history,
        output_dir=output_dir,
        resume=resume,
    )
    timings["train_s"] = time.perf_counter() - start

    test = run_data.splits["test"]
    if data_args.max_test_users and data_args.max_test_users < len(test):
        test = test.shuffle(seed=training_args.seed).select(range(data_args.max_test_users))
    histories, targets = histories_and_targets(test, sequences, index, window, held_out=1)
    logger.info("[test] Ranking %s test users", f"{len(targets):,}")
    start = time.perf_counter()
    ks = training_args.eval_ks
    ranking = rank_histories(model, histories, max(ks), training_args.exclude_history)
    timings["test_eval_s"] = time.perf_counter() - start
    test_metrics = ranking_metrics(ranking, targets, ks)
    rankings = sasrec_baselines(run_data.train_sequences, train_rows, index, histories, targets.size, data.num_items,
                                training_args)  # fmt: skip
    ranks = target_ranks(ranking, targets)
    baselines = {name: ranking_metrics(r, targets, ks) for name, r in rankings.items()}

    summary = dict(model.config.training_summary or {})
    names = metric_names(ks)
    results = {
        "dataset": data_args.dataset,
        "model": "sasrec",
        "protocol": SASREC_PROTOCOL.format(
            window=window,
            n_items=data.num_items,
            excluded=", never an item of the history read (exclude_history)" if training_args.exclude_history else "",
            test_users=test_users_text(len(targets), len(run_data.splits["test"]), training_args.seed),
        ),
        "test": {name: test_metrics[name] for name in names},
        "baselines": {name: {k: metrics[k] for k in names} for name, metrics in baselines.items()},
        # SASRec minus each baseline, user by user: its lead with a standard error
        "minus_baselines": minus_baselines(ranks, rankings, targets, ks),
        "sasrec": {"config": model.config.to_diff_dict(), "training": summary},
        "train_seconds": timings["train_s"],
        "train_minutes": summary.get("train_minutes"),
        "validation_curve": summary.get("validation_curve", []),
        "recall_curve": {
            "k": list(range(1, max(ks) + 1)),
            "SASRec": recall_curve(ranking, targets, max(ks)),
            "most popular": recall_curve(rankings["most_popular"], targets, max(ks)),
        },
        "timings": timings,
        "train_steps": summary.get("steps"),
        "epochs": summary.get("epochs"),
        "num_parameters": model.num_parameters(),
        "data": {"users": data.num_users, "items": data.num_items, "interactions": data.num_interactions},
        "library_version": __version__,
    }
    save_sasrec_run(results, model, list(index), output_dir)
    save_test_per_user(output_dir, test["user_id"][:], ranks, ks)
    return results


def sasrec_baselines(
    train_sequences: list[list[str]],
    train_rows: list[list[int]],
    index: dict[str, int],
    histories: list[list[int]],
    num_users: int,
    num_items: int,
    training_args: GenRecTrainingArguments,
) -> dict[str, np.ndarray]:
    """The most popular items and the successor prior alone, ranking the test users as a generative run's baselines
    do (none of the history read, with ``exclude_history``): each baseline's ``[num_users, max(eval_ks)]`` ranking."""
    ks = training_args.eval_ks
    seen = histories if training_args.exclude_history else None
    popular = MostPopular(index).fit(train_sequences)
    transitions = ItemTransitions.fit(
        train_rows, num_items, window=training_args.transition_window, shrinkage=training_args.transition_shrinkage
    )
    return {
        "most_popular": popular.predict(num_users, max(ks), exclude=seen),
        "successor_prior": transitions.predict(
            histories, max(ks), recent=training_args.transition_recent_items, fallback=popular.ranking, exclude=seen
        ),
    }


def save_sasrec_run(results: dict, model: SASRecModel, item_ids: list[str], output_dir: Path) -> None:
    """Save the SASRec (``SASRecModel.from_pretrained(output_dir)`` reads it back), its item ids in row order and
    ``results.json``; the training folder goes, since the saved model is its kept state."""
    logger.info("[save] Saving SASRec, its item ids and results.json to %s", output_dir)
    model.save_pretrained(output_dir)
    atomic_write_text(output_dir / ITEM_IDS_NAME, json.dumps(item_ids) + "\n")
    atomic_write_text(output_dir / "results.json", json.dumps(results, indent=2) + "\n")
    shutil.rmtree(output_dir / SCORER_TRAINING_DIR, ignore_errors=True)
