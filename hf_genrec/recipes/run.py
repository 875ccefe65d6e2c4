"""One end-to-end run: data → features → semantic IDs → tokenizer → training → test evaluation → checkpoint.

`run_experiment` runs the stages in order, each a function of its own: `read_data`, `build_item_ids`,
`train_scorer` (the hybrid's SASRec, when the run has one), `build_trainer`, `train`, `rank_test_users` and
`save_run`. Each says what it does in an INFO log line as it starts (``hf-genrec train --quiet`` hides them).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel
from transformers.trainer_utils import get_last_checkpoint

from ..bundle.config import GenRecConfig
from ..bundle.io import add_part, titles_of_items
from ..data import InteractionData, leave_one_out, load_interactions
from ..data.loading import default_data_dir, normalize_dataset_name
from ..data.splits import training_part
from ..evaluation.baselines import MostPopular
from ..evaluation.metrics import make_compute_metrics, ranking_metrics
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel, rank_histories
from ..serving.recommender import GenerativeRecommender
from ..tokenization import ItemTokenizer
from ..training.arguments import GenRecTrainingArguments
from ..training.collator import SCORER_HISTORY
from ..training.examples import add_scorer_history, tokenize_examples
from ..training.trainer import GenRecTrainer
from ..utils.saving import atomic_write_text, last_complete_checkpoint
from .arguments import DataArguments, ItemIDArguments, ModelArguments
from .backbone import TRAIN_ROWS_DIR, build_backbone, check_backbone, training_rows
from .fusion_search import pick_fusion_weights
from .item_ids import RunIDs, build_item_ids, check_content_map_possible, content_map_method
from .results import generative_results, save_test_per_user
from .scorer import (
    SCORER_TRAINING_DIR,
    ScorerArguments,
    fit_scorer,
    scorer_minutes,
    scorer_training_started,
    scorer_window_and_dropout,
)

logger = logging.getLogger(__name__)


def build_model_and_config(
    item_tokenizer: ItemTokenizer,
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
) -> tuple[PreTrainedModel, GenRecConfig]:
    """The freshly initialised model of ``model_args`` (the T5, or a decoder-only backbone) and the bundle's
    `GenRecConfig`, as `run_experiment` trains them."""
    model = build_backbone(item_tokenizer, model_args, training_args.seed)
    model.generation_config.num_beams = training_args.num_beams
    genrec_config = GenRecConfig(
        id_scheme=id_args.id_scheme,
        num_beams=training_args.num_beams,
        top_k=max(training_args.eval_ks),
        max_history=data_args.max_history,
        dataset=data_args.dataset,
        fusion=training_args.fusion,
        backbone=model_args.backbone,
    )
    return model, genrec_config


def warn_if_items_repeat(sequences: list[list[str]]) -> None:
    """Warn when users meet an item again: ``exclude_history`` can never recommend such a next item."""
    repeats = sum(len(sequence) - len(set(sequence)) for sequence in sequences)
    if repeats:
        total = sum(len(sequence) for sequence in sequences)
        logger.warning(
            "exclude_history is on, but %d of %d interactions (%.1f%%) repeat an item the user met before: those "
            "next items can never be recommended. Turn exclude_history off for data with repeat consumption.",
            repeats,
            total,
            100 * repeats / max(total, 1),
        )


@dataclass
class RunData:
    """The data stage's output: the interactions, their leave-one-out splits and each user's training part."""

    data: InteractionData
    splits: dict
    #: each user's items without the validation and test ones: IDs, training rows, transitions and baselines
    train_sequences: list[list[str]]


def read_data(data_args: DataArguments, id_args: ItemIDArguments, training_args: GenRecTrainingArguments) -> RunData:
    """Read the dataset (downloading it when there is no local copy) and split it leave-one-out; the validation
    users are sampled down to ``max_eval_users``."""
    name = normalize_dataset_name(data_args.dataset)
    root = Path(data_args.data_dir).expanduser() if data_args.data_dir is not None else default_data_dir()
    folder = root / name
    where = f"{folder}" if folder.exists() else f"{folder} (no local copy yet: downloading it there first)"
    logger.info("[data] Reading %s from %s", name, where)
    data = load_interactions(data_args.dataset, data_args.data_dir, min_count=data_args.min_count)
    splits = leave_one_out(
        data, max_history=data_args.max_history, max_train_targets_per_user=data_args.max_train_targets_per_user
    )
    sampled = bool(data_args.max_eval_users and data_args.max_eval_users < len(splits["validation"]))
    if sampled:
        # one random sample of validation users, for the model's checkpoints, its scorer and the fusion grid
        splits["validation"] = (
            splits["validation"].shuffle(seed=training_args.seed).select(range(data_args.max_eval_users))
        )
    logger.info(
        "[data] Split leave-one-out: %s validation users%s, %s test users",
        f"{len(splits['validation']):,}",
        " (a random sample)" if sampled else "",
        f"{len(splits['test']):,}",
    )
    train_sequences = training_part(data.sequences["item_ids"][:])
    if id_args.content_map:
        check_content_map_possible(id_args, data.items)
    if training_args.exclude_history:
        warn_if_items_repeat(data.sequences["item_ids"][:])
    return RunData(data, splits, train_sequences)


def resolve_checkpoint(
    resume_from_checkpoint: str | bool | None, output_dir: Path, scorer_args: ScorerArguments
) -> tuple[str | None, bool]:
    """The checkpoint a run continues from (`True`: the output dir's last complete one) and whether its scorer's
    training goes on (a run stopped before the model's first checkpoint). A new run removes an earlier run's
    scorer training from the output dir."""
    checkpoint = resume_from_checkpoint
    resume_scorer = checkpoint is True and scorer_args.scorer is not None and scorer_training_started(output_dir)
    if checkpoint is True:
        checkpoint = last_complete_checkpoint(output_dir)  # skips a checkpoint left half-written by a crash
        if checkpoint is None and not resume_scorer:
            raise ValueError(
                f"resume_from_checkpoint=True, but {output_dir} holds no complete checkpoint-* folder"
                + (
                    " (see the warnings above)."
                    if Path(output_dir).is_dir() and get_last_checkpoint(str(output_dir))
                    else "."
                )
            )
    scorer_training = output_dir / SCORER_TRAINING_DIR
    if not checkpoint and not resume_scorer and scorer_training.is_dir():
        logger.warning(
            "Starting a new run: removing %s, an earlier run's scorer training (pass resume_from_checkpoint to go on "
            "with that run instead).",
            scorer_training,
        )
        shutil.rmtree(scorer_training, ignore_errors=True)  # every process may try
    return checkpoint or None, resume_scorer


def user_sequences_by_id(data: InteractionData) -> dict[str, list[str]]:
    """Each user's whole sequence by user id: the scorer reads its own window of it (longer than the model's)."""
    return dict(zip(data.sequences["user_id"][:], data.sequences["item_ids"][:]))


def train_scorer(
    run_data: RunData,
    item_tokenizer: ItemTokenizer,
    train_rows: list[list[int]],
    scorer_args: ScorerArguments,
    training_args: GenRecTrainingArguments,
    checkpoint: str | None,
    resume_scorer: bool,
    timings: dict,
) -> SASRecModel | None:
    """The hybrid's SASRec, trained first on the same training part (or read back from ``checkpoint``; with
    ``resume_scorer`` its stopped training goes on); its minutes come off ``training_args.max_train_minutes``, the
    whole run's budget. `None` for a run without a scorer."""
    start = time.perf_counter()
    scorer_validation = None
    if scorer_args.scorer is not None and not checkpoint:
        window, dropout = scorer_window_and_dropout(scorer_args, train_rows)
        scorer_args = dataclasses.replace(scorer_args, scorer_max_history=window, scorer_dropout=dropout)
        # the users the model is validated on, as item rows
        users = add_scorer_history(
            run_data.splits["validation"],
            user_sequences_by_id(run_data.data),
            item_tokenizer,
            window,
            held_out=2,
        )
        scorer_validation = (
            users[SCORER_HISTORY][:],
            item_tokenizer.index_of(users["target"][:], context="validation targets").tolist(),
        )
        logger.info("[scorer] Training a SASRec on the training sequences first (%s)", scorer_budget_text(scorer_args))
    scorer = fit_scorer(
        scorer_args,
        train_rows,
        item_tokenizer.num_items,
        training_args.seed,
        checkpoint,
        budget_minutes=training_args.max_train_minutes,
        validation=scorer_validation,
        exclude_history=training_args.exclude_history,
        output_dir=training_args.output_dir,
        resume=resume_scorer,
    )
    if scorer is not None:
        timings["scorer_s"] = time.perf_counter() - start
        spent = scorer_minutes(scorer)
        if training_args.max_train_minutes is not None:
            if spent >= training_args.max_train_minutes:
                raise ValueError(
                    f"The scorer trained for {spent:.1f} of the max_train_minutes={training_args.max_train_minutes} "
                    "budget, leaving none for the generative model: lower scorer_budget_share or scorer_max_minutes (or "
                    "raise max_train_minutes)."
                )
            # the budget is the whole run's: the generative model gets what the scorer left
            training_args.max_train_minutes -= spent
    return scorer


def scorer_budget_text(scorer_args: ScorerArguments) -> str:
    """How long the scorer may train, in words."""
    limits = [f"at most {scorer_args.scorer_epochs} epochs"]
    if scorer_args.scorer_budget_share is not None:
        limits.append(f"{scorer_args.scorer_budget_share:.0%} of max_train_minutes")
    if scorer_args.scorer_max_minutes is not None:
        limits.append(f"{scorer_args.scorer_max_minutes} minutes")
    if scorer_args.scorer_patience is not None:
        limits.append(f"until {scorer_args.scorer_patience} validation rankings in a row find nothing better")
    return ", ".join(limits)


@dataclass
class RunModel:
    """The model stage's output: the trainer with its model, and the examples it trains and validates on."""

    trainer: GenRecTrainer
    model: PreTrainedModel
    genrec_config: GenRecConfig
    transitions: ItemTransitions
    examples: dict
    validation: object
    #: what validation and test read of each history: the scorer's window where it is longer (`None`: no scorer)
    read_window: int | None
    #: the last evaluation's target ranks, for Recall@K at every K
    evaluated: dict


def build_trainer(
    run_data: RunData,
    ids: RunIDs,
    train_rows: list[list[int]],
    scorer: SASRecModel | None,
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
) -> RunModel:
    """Tokenize the examples (one row per history prefix, or one row per user window with the causal encoder or a
    decoder-only backbone), build the model and the successor prior of the training part, and the trainer that ties them together."""
    item_tokenizer = ids.item_tokenizer
    read_window = max(data_args.max_history, scorer.config.max_positions) if scorer is not None else None
    examples = {
        name: tokenize_examples(split, item_tokenizer, data_args.max_history)
        for name, split in run_data.splits.items()
        if name != "train"
    }
    # one row per history prefix, or one packed (causal-encoder T5) or causal (decoder-only) row per user window
    examples["train"] = training_rows(
        run_data.train_sequences, run_data.splits, item_tokenizer, data_args, model_args, training_args
    )
    validation = examples["validation"]
    if scorer is not None:
        user_sequences = user_sequences_by_id(run_data.data)
        validation = add_scorer_history(validation, user_sequences, item_tokenizer, read_window, held_out=2)

    model, genrec_config = build_model_and_config(item_tokenizer, data_args, id_args, model_args, training_args)
    # successor counts of the training part only, saved in every bundle (ranking fuses them with transition_weight)
    transitions = ItemTransitions.fit(
        train_rows,
        item_tokenizer.num_items,
        window=training_args.transition_window,
        shrinkage=training_args.transition_shrinkage,
    )
    evaluated: dict = {}
    trainer = GenRecTrainer(
        model=model,
        args=training_args,
        item_tokenizer=item_tokenizer,
        train_dataset=examples["train"],
        eval_dataset=validation,
        compute_metrics=make_compute_metrics(training_args.eval_ks, record=evaluated),
        genrec_config=genrec_config,
        quantizer=ids.quantizer,
        transitions=transitions,
        scorer=scorer,
    )
    return RunModel(trainer, model, genrec_config, transitions, examples, validation, read_window, evaluated)


def train(run_model: RunModel, checkpoint: str | None, training_args: GenRecTrainingArguments, timings: dict):
    """Train within the budget (a resumed run goes on from its checkpoint, clock included), then pick the fusion
    weights on the validation users. Returns the trainer's output and the fusion grid (`None` without one)."""
    trainer = run_model.trainer
    budget = "no time limit" if training_args.max_train_minutes is None else (
        f"at most {training_args.max_train_minutes:.1f} minutes"
    )  # fmt: skip
    logger.info(
        "[train] Training a model of %s parameters on %s training rows for %s and at most %s epochs, validating on "
        "%s users; checkpoints in %s",
        f"{run_model.model.num_parameters():,}",
        f"{len(run_model.examples['train']):,}",
        budget,
        f"{training_args.num_train_epochs:g}",
        f"{len(run_model.validation):,}",
        training_args.output_dir,
    )
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    timings["train_s"] = time.perf_counter() - start
    fusion_grid = (
        pick_fusion_weights(trainer, run_model.validation)
        if training_args.transition_weights or training_args.scorer_weights
        else None
    )
    run_model.genrec_config.fusion = training_args.fusion  # with the weights the validation grid picked
    return train_output, fusion_grid


@dataclass
class RunTest:
    """The test stage's output: the test users ranked by the model and by the baselines."""

    test: object
    metrics: dict
    #: each test target's rank in the model's ranking (`None` when evaluation ranked nothing)
    ranks: np.ndarray | None
    targets: np.ndarray
    baselines: dict
    #: each baseline's ranking of the test users, for the recall curve and the model's per-user lead over it
    baseline_rankings: dict


def rank_test_users(
    run_data: RunData,
    ids: RunIDs,
    run_model: RunModel,
    scorer: SASRecModel | None,
    data_args: DataArguments,
    training_args: GenRecTrainingArguments,
    timings: dict,
) -> RunTest:
    """Rank the test users (all, or a seeded sample of ``max_test_users``) with the trained model, and with the
    baselines under the same protocol: the most popular items and the successor prior alone (and the scorer alone)."""
    item_tokenizer, trainer = ids.item_tokenizer, run_model.trainer
    test = run_model.examples["test"]
    if data_args.max_test_users and data_args.max_test_users < len(test):
        test = test.shuffle(seed=training_args.seed).select(range(data_args.max_test_users))
    if scorer is not None:
        user_sequences = user_sequences_by_id(run_data.data)
        test = add_scorer_history(test, user_sequences, item_tokenizer, run_model.read_window, held_out=1)
    logger.info("[test] Ranking %s test users with %d beams", f"{len(test):,}", training_args.num_beams)
    start = time.perf_counter()
    run_model.evaluated.clear()  # validation ranks are not the test's
    test_metrics = trainer.evaluate(test, metric_key_prefix="test")
    timings["test_eval_s"] = time.perf_counter() - start
    test_ranks = run_model.evaluated.pop("ranks", None)  # None when evaluation ranked nothing

    ks = training_args.eval_ks
    popular = MostPopular(item_tokenizer.item_to_index).fit(run_data.train_sequences)
    test_targets = item_tokenizer.index_of(test["target"][:], context="test targets")
    test_histories = [item_tokenizer.index_of(history).tolist() for history in test["history"][:]]
    # the read histories: the model's window, or the scorer's longer one in a hybrid
    read = test[SCORER_HISTORY][:] if scorer is not None else test_histories
    # the same protocol as the model's: none of the history it reads
    seen = read if training_args.exclude_history else None
    popular_ranking = popular.predict(len(test_targets), max(ks), exclude=seen)
    # the fused prior alone (its recent items' successors, then the most popular): what the fusion adds to
    prior_ranking = run_model.transitions.predict(
        test_histories,
        max(ks),
        recent=training_args.transition_recent_items,
        fallback=popular.ranking,
        exclude=seen,
    )
    rankings = {"most_popular": popular_ranking, "successor_prior": prior_ranking}
    if scorer is not None:  # the hybrid's scorer alone, reading the histories it reads in the hybrid
        rankings["scorer"] = rank_histories(scorer, read, max(ks), training_args.exclude_history)
    baselines = {name: ranking_metrics(ranking, test_targets, ks) for name, ranking in rankings.items()}
    return RunTest(test, test_metrics, test_ranks, test_targets, baselines, rankings)


def save_run(
    results: dict,
    run_data: RunData,
    run_model: RunModel,
    id_args: ItemIDArguments,
    output_dir: Path,
    timings: dict,
) -> None:
    """Save the bundle (its model card carries the test metrics and protocol), the items' titles when the data has
    them, the content map when asked for, and ``results.json``; the scorer's training folder goes, since the bundle
    and every checkpoint hold the scorer."""
    trainer = run_model.trainer
    logger.info("[save] Saving the recommender and results.json to %s", output_dir)
    trainer.card_data.protocol = results["protocol"]
    trainer.card_data.baselines = results["baselines"]
    trainer.save_model(str(output_dir))
    titles = titles_of_items(run_data.data.items)
    if titles and trainer.is_world_process_zero():  # for pages that show the items (`hf-genrec demo`)
        add_part(output_dir, "item_titles", titles)
    if id_args.content_map and trainer.is_world_process_zero():
        start = time.perf_counter()
        method = content_map_method(run_data.data.items)
        logger.info("Content map: embedding the items' %s.", method)
        content_map = GenerativeRecommender.from_pretrained(output_dir).fit_content_map(
            run_data.data.items, method=method, text_model=id_args.text_model
        )
        add_part(output_dir, "content_map", content_map)  # the bundle's manifest lists it, so loading reads it
        results["content_map"] = content_map.diagnostics
        timings["content_map_s"] = time.perf_counter() - start
    if trainer.is_world_process_zero():  # under `accelerate launch` every process holds the same results
        atomic_write_text(output_dir / "results.json", json.dumps(results, indent=2) + "\n")
        shutil.rmtree(output_dir / SCORER_TRAINING_DIR, ignore_errors=True)
        # not part of the bundle: `push` uploads the output dir (the rows are rebuilt when a run resumes)
        shutil.rmtree(output_dir / TRAIN_ROWS_DIR, ignore_errors=True)


def run_experiment(
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
    resume_from_checkpoint: str | bool | None = None,
    scorer_args: ScorerArguments | None = None,
) -> dict:
    """Train and evaluate a generative recommender; write the checkpoint and ``results.json`` to the output dir.

    With ``scorer_args.scorer`` a dense scorer (SASRec) is trained first on the same training sequences and fused
    into the ranking (`hf_genrec.recipes.scorer`); its minutes come off ``max_train_minutes``.

    ``resume_from_checkpoint`` (a checkpoint folder, or `True` for the last one in the output dir) continues a
    stopped run: the item IDs and tokenizer are read back from the checkpoint (not fitted again), and the training
    clock continues, so ``max_train_minutes`` is the budget of the whole run.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    scorer_args = scorer_args or ScorerArguments()
    timings: dict[str, float] = {}
    check_backbone(model_args)  # before any data is read

    start = time.perf_counter()
    run_data = read_data(data_args, id_args, training_args)
    timings["data_s"] = time.perf_counter() - start
    checkpoint, resume_scorer = resolve_checkpoint(resume_from_checkpoint, output_dir, scorer_args)
    ids = build_item_ids(run_data.data.items, run_data.train_sequences, id_args, model_args, checkpoint, timings)
    train_rows = [ids.item_tokenizer.index_of(s).tolist() for s in run_data.train_sequences]
    scorer = train_scorer(
        run_data, ids.item_tokenizer, train_rows, scorer_args, training_args, checkpoint, resume_scorer, timings
    )
    run_model = build_trainer(run_data, ids, train_rows, scorer, data_args, id_args, model_args, training_args)
    train_output, fusion_grid = train(run_model, checkpoint, training_args, timings)
    tested = rank_test_users(run_data, ids, run_model, scorer, data_args, training_args, timings)
    results = generative_results(
        data_args=data_args,
        id_args=id_args,
        model_args=model_args,
        training_args=training_args,
        data=run_data.data,
        semantic_ids=ids.semantic_ids,
        scorer=scorer,
        trainer=run_model.trainer,
        train_output=train_output,
        examples=run_model.examples,
        fusion_grid=fusion_grid,
        test_metrics=tested.metrics,
        test_ranks=tested.ranks,
        test_targets=tested.targets,
        baselines=tested.baselines,
        baseline_rankings=tested.baseline_rankings,
        timings=timings,
        num_parameters=run_model.model.num_parameters(),
    )
    save_run(results, run_data, run_model, id_args, output_dir, timings)
    if tested.ranks is not None and run_model.trainer.is_world_process_zero():
        save_test_per_user(output_dir, tested.test["user_id"][:], tested.ranks, training_args.eval_ks)
    return results
