"""Reproduce published quality on a wall-clock budget: the generative recommender and SASRec, same split and protocol.

    python benchmarks/reproduce.py --dataset amazon-beauty --model sasrec --budget-minutes 20 --data-dir ../shared/data
    python benchmarks/reproduce.py --dataset amazon-beauty --model genrec --budget-minutes 60 --data-dir ../shared/data

Writes ``<output-dir>/<dataset>.json`` (``<dataset>_sasrec.json`` for SASRec; default ``benchmarks/results/``): the test metrics under TIGER's
protocol (leave-one-out, full ranking, history <= 20 for the generative model), the budget, the steps reached and a
curve of validation NDCG@10 against minutes. A run that is stopped resumes from its last checkpoint in
``--work-dir`` when started again with the same arguments.

The generative path runs the recipe shipped for the dataset (``hf-genrec recipes``; or ``--config``) through
``hf_genrec.recipes.run`` with the
budget as ``max_train_minutes``; rerun with a larger ``--budget-minutes`` to continue a finished run further. A
recipe with ``item_features: sasrec`` trains that SASRec first, and its minutes come off the budget (the record's
``item_features_minutes``).

``--hybrid-sasrec-minutes M`` trains a SASRec for ``M`` minutes of the budget first, the generative recipe for the
rest, and then ranks with SASRec's next-item distribution fused into the generative model's beam search (the hybrid
recommender, `hf_genrec.decoding.fusion`): record ``<dataset>_hybrid.json``, bundle in ``<work-dir>/hybrid``.

``--ensemble N`` splits the budget into N runs of ``budget / N`` minutes, one after the other, with seeds ``seed``,
``seed + 1``, ... (the generative runs share the recipe's semantic IDs, which ``id_seed`` fixes), each in
``<work-dir>/member-<k>`` and recorded there as ``member.json`` (a finished member is not trained again), then ranks
with the mean of the members' next-item (next-token, for the generative model) distributions: the successor-prior
weight picked again on validation, then every test user. The record is ``<dataset>_ensemble<N>.json``
(``<dataset>_sasrec_ensemble<N>.json``), with each member's own figures in ``members``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
from machine import describe_machine, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.decoding.fusion import best_fusion_weight
from hf_genrec.evaluation.baselines import MostPopular
from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.prior import ItemTransitions
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, rank_histories
from hf_genrec.recipes.shipped import recipe_for_dataset, recipe_path
from hf_genrec.training.sasrec import TRAINING_SETUP_FILE, train_sasrec

logger = logging.getLogger("reproduce")
KS = (5, 10)
TESTED_STATE = "tested_state.safetensors"


def sasrec_rank(
    model: SASRecModel | list[SASRecModel],
    histories: list[list[int]],
    k: int,
    exclude_history: bool,
    fusion: tuple[ItemTransitions, dict] | None = None,
) -> np.ndarray:
    """`hf_genrec.models.sasrec.rank_histories`; ``fusion`` (transitions and the recipe's weight, smoothing and recent
    items) adds the same successor prior the generative recipe fuses into its beam search."""
    bonus = None
    if fusion is not None and fusion[1]["weight"]:
        transitions, settings = fusion
        bonus = lambda chunk: transitions.dense_bonus(chunk, **settings)  # noqa: E731
    return rank_histories(model, histories, k, exclude_history, item_bonus=bonus)


def fuse_sasrec(args, model, transitions, val, test, exclude) -> dict | None:
    """The recipe's successor-prior fusion applied to SASRec too: the weight of the recipe's grid with the best
    validation NDCG@10, then the test users with it (so both models get the same prior)."""
    settings = recipe(args)[1]
    weights = settings.get("transition_weights") or (
        [settings["transition_weight"]] if settings.get("transition_weight") else []
    )
    if not weights:
        return None
    fusion = {
        "smoothing": settings.get("transition_smoothing", 0.01),
        "recent": settings.get("transition_recent_items", 3),
    }
    grid = {}
    for weight in sorted(set(weights)):
        ranked = sasrec_rank(model, val[0], max(KS), exclude, fusion=(transitions, {**fusion, "weight": weight}))
        grid[str(weight)] = ranking_metrics(ranked, val[1], KS)
    best = best_fusion_weight(grid)
    ranked = sasrec_rank(model, test[0], max(KS), exclude, fusion=(transitions, {**fusion, "weight": float(best)}))
    return {
        "transition_weight": float(best),
        **fusion,
        "shrinkage": transitions.shrinkage,
        "validation": grid,
        "test": ranking_metrics(ranked, test[1], KS),
    }


def recipe(args) -> tuple[str, dict]:
    """The generative recipe's path and settings: ``--config``, else the recipe shipped for the dataset
    (`hf_genrec.recipes.shipped`: the general Amazon recipe for Amazon categories without one of their own), with
    each ``--overlay`` file laid over it in order (as
    ``hf-genrec train --config recipe.yaml --config overlay.yaml`` does)."""
    import yaml

    # the recipe shipped for the dataset: its own, or the general Amazon recipe for any other Amazon category
    config_path = args.config or str(recipe_path(recipe_for_dataset(args.dataset)))
    if not Path(config_path).exists():
        raise FileNotFoundError(f"No generative recipe at {config_path}; pass --config.")
    settings = yaml.safe_load(Path(config_path).read_text())
    for overlay in getattr(args, "overlay", None) or []:
        if not Path(overlay).exists():
            raise FileNotFoundError(f"No recipe overlay at {overlay}.")
        settings.update(yaml.safe_load(Path(overlay).read_text()) or {})
        config_path += f" + {overlay}"
    return config_path, settings


def excludes_history(args) -> bool:
    """``--exclude-history`` / ``--no-exclude-history``, else the recipe's ``exclude_history``: every model of one
    dataset is ranked under the same protocol."""
    return args.exclude_history if args.exclude_history is not None else bool(recipe(args)[1].get("exclude_history"))


def sasrec_config(args, num_items: int) -> SASRecConfig:
    return SASRecConfig(
        num_items=num_items,
        max_positions=args.sasrec_max_length,
        hidden_size=args.sasrec_hidden,
        num_layers=2,
        num_heads=args.sasrec_heads,
        dropout=args.sasrec_dropout,
    )


def sasrec_sequences(data) -> tuple[dict, list[list[int]]]:
    """Item id → row, and the training part of every user's sequence as rows."""
    index = {item: i for i, item in enumerate(data.items["item_id"][:])}
    return index, [[index[i] for i in seq] for seq in training_part(data.sequences["item_ids"][:])]


def sasrec_split_rows(splits, index, name, limit=None, seed=0) -> tuple[list[list[int]], np.ndarray]:
    """Histories (as item rows) and targets of a split, or of a random ``limit`` of its users."""
    split = splits[name]
    if limit and limit < len(split):
        split = split.shuffle(seed=seed).select(range(limit))
    histories = [[index[i] for i in h] for h in split["history"][:]]
    return histories, np.asarray([index[t] for t in split["target"][:]])


def sasrec_transitions(args, data, train_sequences) -> ItemTransitions:
    settings = recipe(args)[1]
    return ItemTransitions.fit(
        train_sequences,
        data.num_items,
        window=settings.get("transition_window", 3),
        shrinkage=settings.get("transition_shrinkage", 0.0),
    )


def run_sasrec(args, data, splits, work_dir: Path) -> dict:
    index, train_sequences = sasrec_sequences(data)

    def split_rows(name, limit=None):
        return sasrec_split_rows(splits, index, name, limit)

    val_histories, val_targets = split_rows("validation", args.max_eval_users)
    exclude = excludes_history(args)
    # The library's training: a checkpoint every epoch in the work dir (a stopped run goes on from it, clock and best
    # state included), and the state with the best validation NDCG@10 kept and tested, as the generative harness keeps
    # its best checkpoint: at 60 minutes SASRec overfits (validation NDCG@10 0.0674 at epoch 25, 0.0617 at the end of
    # the AMD EPYC run that showed it, which tested its last state).
    # (a work dir with checkpoints of the older harness, without TRAINING_SETUP_FILE, is refused by train_sasrec)
    resume = (work_dir / TRAINING_SETUP_FILE).is_file()
    model, info = train_sasrec(
        train_sequences,
        sasrec_config(args, data.num_items),
        epochs=args.sasrec_epochs,
        batch_size=args.batch_size,
        learning_rate=args.sasrec_lr,
        max_minutes=args.budget_minutes,
        seed=args.seed,
        validation=(val_histories, val_targets),
        exclude_history=exclude,
        eval_every_epochs=args.eval_every_epochs,
        output_dir=work_dir,
        resume=resume,
    )
    logger.info(
        "Testing the state of step %s (best validation NDCG@10 %.4f)", info["best_step"], info["validation_ndcg@10"]
    )
    from safetensors.torch import save_file

    # what the hybrid (--hybrid-sasrec-minutes) fuses: the state tested here
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(work_dir / TESTED_STATE))
    test_histories, test_targets = split_rows("test")
    start = time.perf_counter()
    test = ranking_metrics(sasrec_rank(model, test_histories, max(KS), exclude), test_targets, KS)
    test_seconds = time.perf_counter() - start
    transitions = sasrec_transitions(args, data, train_sequences)
    fused = fuse_sasrec(
        args, model, transitions, (val_histories, val_targets), (test_histories, test_targets), exclude
    )
    return {
        "model": "sasrec",
        "config": {k: v for k, v in model.config.to_diff_dict().items() if k != "training_summary"},
        "exclude_history": exclude,
        "test": test,
        "train_minutes": info["train_minutes"],
        "test_eval_seconds": test_seconds,
        "successor_prior_fusion": fused,
        "steps": info["steps"],
        "epochs": info["epochs"],
        "tested_state": {"step": info["best_step"], "validation_ndcg@10": info["validation_ndcg@10"]},
        "curve": info["validation_curve"],
        "protocol": (
            "leave-one-out per user (last item = test, second-to-last = validation); training on every position of "
            f"each user's training part (the {args.sasrec_max_length} most recent items); full ranking over all "
            f"{data.num_items} items; metrics averaged over all {len(test_targets)} test users"
        ),
    }


def learn_item_features(data_args, id_args, work_dir: Path) -> float:
    """Features the recipe learns by training a model first (``item_features: sasrec``): learnt here, saved in the
    work dir (a resumed or extended run reads them back), and ``id_args.item_features`` pointed at the file. Returns
    the minutes they took, which the caller takes off the training budget: the budget covers all training, the
    SASRec's too. Features that take seconds (text, co-occurrence counts) are left to the experiment and return 0."""
    if id_args.item_features != "sasrec":
        return 0.0
    from safetensors.numpy import save_file

    from hf_genrec.features.item_features import build_item_features
    from hf_genrec.training.sasrec import train_sasrec_for_features

    path, meta = work_dir / "item_features.safetensors", work_dir / "item_features.json"
    if not (path.exists() and meta.exists()):
        data = load_interactions(data_args.dataset, data_args.data_dir, min_count=data_args.min_count)
        start = time.perf_counter()
        sequences = training_part(data.sequences["item_ids"][:])
        item_ids = [str(item) for item in data.items["item_id"][:]]
        sasrec = train_sasrec_for_features(
            sequences, item_ids, dim=id_args.collaborative_dim, epochs=id_args.sasrec_epochs
        )
        features = build_item_features(data.items, method="sasrec", sequences=sequences, sasrec_model=sasrec)
        minutes = (time.perf_counter() - start) / 60
        save_file({"item_features": features}, str(path))
        meta.write_text(json.dumps({"method": "sasrec", "minutes": minutes}) + "\n")
    minutes = float(json.loads(meta.read_text())["minutes"])
    id_args.item_features = str(path)
    logger.info("Item features learnt by SASRec in %.1f min; the generative model trains for the rest.", minutes)
    return minutes


def run_genrec(args, work_dir: Path) -> dict:
    from transformers import HfArgumentParser

    from hf_genrec.recipes.arguments import DataArguments, ItemIDArguments, ModelArguments
    from hf_genrec.recipes.run import run_experiment
    from hf_genrec.recipes.scorer import ScorerArguments
    from hf_genrec.training.arguments import GenRecTrainingArguments

    config_path, settings = recipe(args)
    settings["exclude_history"] = excludes_history(args)
    if args.seed is not None:
        settings["seed"] = args.seed
    settings.update(
        dataset=args.dataset, data_dir=args.data_dir, output_dir=str(work_dir), max_train_minutes=args.budget_minutes
    )
    if args.max_test_users:
        settings["max_test_users"] = args.max_test_users
    parser = HfArgumentParser(
        (DataArguments, ItemIDArguments, ModelArguments, GenRecTrainingArguments, ScorerArguments)
    )
    data_args, id_args, model_args, training_args, scorer_args = parser.parse_dict(settings)
    features_minutes = learn_item_features(data_args, id_args, work_dir)
    if features_minutes >= args.budget_minutes:
        raise SystemExit(
            f"Learning the item features took {features_minutes:.1f} of the {args.budget_minutes} budget minutes, "
            "leaving none to train the generative model: raise --budget-minutes or lower sasrec_epochs."
        )
    training_args.max_train_minutes = args.budget_minutes - features_minutes
    from transformers.trainer_utils import get_last_checkpoint

    from hf_genrec.recipes.scorer import scorer_training_started

    # a stopped run continues, budget and curve included (also one stopped while its scorer trained)
    resume = get_last_checkpoint(str(work_dir)) is not None or (
        scorer_args.scorer is not None and scorer_training_started(work_dir)
    )
    # a recipe with a scorer (``--overlay hf_genrec/recipes/hybrid.yaml``) trains it first, inside the same budget
    results = run_experiment(
        data_args, id_args, model_args, training_args, resume_from_checkpoint=resume or None, scorer_args=scorer_args
    )
    return {"model": "genrec", "config_file": config_path, "resumed": resume, "curve": results["validation_curve"],
            "exclude_history": settings["exclude_history"], "item_features_minutes": features_minutes,
            **results}  # fmt: skip


def run_hybrid(args, work_dir: Path) -> dict:
    """``--hybrid-sasrec-minutes M``: a SASRec for ``M`` minutes of the budget, the generative recipe for the rest,
    then the generative model's beam search with SASRec's next-item distribution fused into it
    (`hf_genrec.decoding.fusion`): the successor-prior and scorer weights with the best validation NDCG@10 (the recipe's
    validation sample), then every test user. SASRec reads its own history window (``--sasrec-max-length``), the
    generative model the recipe's. The hybrid bundle is saved in ``<work-dir>/hybrid``."""
    from safetensors.torch import load_file

    from hf_genrec import GenerativeRecommender
    from hf_genrec.bundle.model_card import GenRecCardData
    from hf_genrec.decoding.fusion import reindex_items

    data = load_interactions(args.dataset, args.data_dir)
    splits = leave_one_out(data, max_history=args.sasrec_max_length)  # SASRec's window; the model cuts its own
    sasrec_dir, genrec_dir = work_dir / "sasrec", work_dir / "genrec"
    record_path = sasrec_dir / "sasrec.json"
    if record_path.exists():  # a stopped run does not train its SASRec again
        sasrec = json.loads(record_path.read_text())
    else:
        sasrec_args = argparse.Namespace(**vars(args))
        sasrec_args.budget_minutes, sasrec_args.seed = args.hybrid_sasrec_minutes, 42
        sasrec_dir.mkdir(parents=True, exist_ok=True)
        sasrec = run_sasrec(sasrec_args, data, splits, sasrec_dir)
        record_path.write_text(json.dumps(sasrec, indent=2, default=str) + "\n")
    genrec_args = argparse.Namespace(**vars(args))
    genrec_args.budget_minutes = args.budget_minutes - sasrec["train_minutes"]
    if genrec_args.budget_minutes <= 0:
        raise SystemExit(
            f"SASRec trained {sasrec['train_minutes']:.1f} of the {args.budget_minutes} budget minutes, leaving none "
            "for the generative model: lower --hybrid-sasrec-minutes."
        )
    genrec_dir.mkdir(parents=True, exist_ok=True)
    genrec = run_genrec(genrec_args, genrec_dir)

    recommender = GenerativeRecommender.from_pretrained(genrec_dir)
    scorer = SASRecModel(sasrec_config(args, data.num_items))
    scorer.load_state_dict(load_file(str(sasrec_dir / TESTED_STATE)))
    recommender.scorer = reindex_items(scorer, data.items["item_id"][:], recommender.item_ids)
    settings = recipe(args)[1]
    index = recommender.item_tokenizer.item_to_index
    seed = settings.get("seed", 42) if args.seed is None else args.seed
    exclude = genrec["exclude_history"]

    val_histories, val_targets = split_sample(splits, "validation", settings.get("max_eval_users"), seed, index)
    transition_weights = settings.get("transition_weights") or [settings.get("transition_weight") or 0.0]
    grid = {}  # (prior weight, scorer weight) -> validation metrics
    for transition_weight in sorted(set(float(w) for w in transition_weights)):
        for scorer_weight in args.hybrid_scorer_weights:
            ranked = rank_genrec(recommender, val_histories, max(KS), transition_weight, exclude, scorer_weight)
            grid[transition_weight, scorer_weight] = ranking_metrics(ranked, val_targets, KS)
            logger.info(
                "Hybrid, prior weight %s, scorer weight %s: validation %s",
                transition_weight, scorer_weight, grid[transition_weight, scorer_weight],
            )  # fmt: skip
    # the best validation NDCG@10; ties go to the smaller weights, as best_fusion_weight's
    transition_weight, scorer_weight = max(grid, key=lambda w: (grid[w]["ndcg@10"], -w[0], -w[1]))
    test_histories, test_targets = split_sample(splits, "test", args.max_test_users, seed, index)
    start = time.perf_counter()
    ranked = rank_genrec(recommender, test_histories, max(KS), transition_weight, exclude, scorer_weight)
    test = ranking_metrics(ranked, test_targets, KS)
    test_seconds = time.perf_counter() - start
    recommender.config.fusion.transition_weight, recommender.config.fusion.scorer_weight = (
        transition_weight,
        scorer_weight,
    )
    recommender.card_data = GenRecCardData(
        dataset=args.dataset,
        test_metrics=test,
        protocol=f"{genrec.get('protocol', '')}; hybrid: a SASRec trained for {sasrec['train_minutes']:.1f} of the "
        f"{args.budget_minutes:g} budget minutes fused into the beam search (scorer_weight {scorer_weight}, "
        f"transition_weight {transition_weight}, both picked on validation), SASRec reading the "
        f"{args.sasrec_max_length} most recent items",
    )
    recommender.save_pretrained(work_dir / "hybrid")
    return {
        **genrec,
        "model": "hybrid",
        "test": test,
        "test_eval_seconds": test_seconds,
        "transition_weight": transition_weight,
        "scorer_weight": scorer_weight,
        "hybrid_validation": {f"{t}/{w}": metrics for (t, w), metrics in grid.items()},
        "generative_test": genrec["test"],
        "generative_transition_weight": genrec.get("transition_weight"),
        "sasrec": member_summary(sasrec),
        "train_minutes": sasrec["train_minutes"] + genrec["train_minutes"],
        "sasrec_train_minutes": sasrec["train_minutes"],
        "generative_train_minutes": genrec["train_minutes"],
    }


def run_members(args, work_dir: Path, run) -> list[tuple[Path, dict]]:
    """Train the ``--ensemble`` members one after the other (``run(member_args, member_dir)`` returns a record),
    or read back those a previous invocation finished with the same budget and seed."""
    if args.seed is not None:
        base_seed = args.seed
    else:
        base_seed = recipe(args)[1].get("seed", 42) if args.model == "genrec" else 42
    members = []
    for k in range(args.ensemble):
        member_args = argparse.Namespace(**vars(args))
        member_args.budget_minutes = args.budget_minutes / args.ensemble
        member_args.seed = base_seed + k
        member_dir = work_dir / f"member-{k}"
        record_path = member_dir / "member.json"
        record = json.loads(record_path.read_text()) if record_path.exists() else None
        if record and (record.get("budget_minutes"), record.get("seed")) == (
            member_args.budget_minutes,
            member_args.seed,
        ):
            logger.info("Member %d: finished earlier (%s)", k, record_path)
        else:
            member_dir.mkdir(parents=True, exist_ok=True)
            logger.info("Member %d: %.1f minutes, seed %d", k, member_args.budget_minutes, member_args.seed)
            started = time.perf_counter()
            record = run(member_args, member_dir)
            record.update(
                budget_minutes=member_args.budget_minutes,
                seed=member_args.seed,
                wall_minutes=(time.perf_counter() - started) / 60,
            )
            record_path.write_text(json.dumps(record, indent=2, default=str) + "\n")
        members.append((member_dir, record))
    return members


def member_summary(record: dict) -> dict:
    """What the ensemble's record keeps of each member's own."""
    keys = ("seed", "budget_minutes", "train_minutes", "wall_minutes", "epochs", "steps", "train_steps", "test",
            "transition_weight", "successor_prior_fusion", "tested_state")  # fmt: skip
    summary = {key: record[key] for key in keys if key in record}
    if isinstance(summary.get("successor_prior_fusion"), dict):  # SASRec's: its weight and test figures only
        fused = summary["successor_prior_fusion"]
        summary["successor_prior_fusion"] = {"transition_weight": fused["transition_weight"], "test": fused["test"]}
    return summary


def split_sample(splits, name: str, limit: int | None, seed: int, index: dict) -> tuple[list, np.ndarray]:
    """Histories (item ids) and target rows of a split, or of the ``limit`` users a trainer seeded with ``seed``
    draws from it."""
    split = splits[name]
    if limit and limit < len(split):
        split = split.shuffle(seed=seed).select(range(limit))
    return split["history"][:], np.asarray([index[t] for t in split["target"][:]])


def rank_genrec(
    recommender, histories, k: int, weight: float, exclude: bool, scorer_weight: float = 0.0
) -> np.ndarray:
    """Top-``k`` item rows per history (item ids, oldest first) from a `GenerativeRecommender` (``-1`` pads);
    ``scorer_weight`` fuses its SASRec too (a hybrid)."""
    rows = recommender.recommend(
        [list(h) for h in histories], k=k, transition_weight=weight, exclude_history=exclude,
        scorer_weight=scorer_weight, batch_size=256,
    )  # fmt: skip
    index = recommender.item_tokenizer.item_to_index
    ranked = np.full((len(rows), k), -1, dtype=np.int64)
    for r, row in enumerate(rows):
        ranked[r, : len(row)] = [index[item] for item, _ in row]
    return ranked


def ensemble_genrec(args, members: list[tuple[Path, dict]]) -> dict:
    """Rank with the mean of the members' next-token distributions (`GenerativeRecommender.ensemble`): the
    recipe's successor-prior weights on the validation users the members validated on, the best weight (and the
    model alone) on the test users."""
    from hf_genrec import GenerativeRecommender

    config_path, settings = recipe(args)
    combined = GenerativeRecommender.ensemble([GenerativeRecommender.from_pretrained(d) for d, _ in members])
    data = load_interactions(args.dataset, args.data_dir)
    splits = leave_one_out(data, max_history=settings.get("max_history", 20))
    exclude = excludes_history(args)
    seed = members[0][1]["seed"]
    index = combined.item_tokenizer.item_to_index

    k = max(KS)
    # the users the members' trainers drew (the first member's seed)
    val_histories, val_targets = split_sample(splits, "validation", settings.get("max_eval_users"), seed, index)
    weights = settings.get("transition_weights") or [settings.get("transition_weight") or 0.0]
    grid = {}
    for weight in sorted(set(float(w) for w in weights)):
        ranked = rank_genrec(combined, val_histories, k, weight, exclude)
        grid[str(weight)] = ranking_metrics(ranked, val_targets, KS)
        logger.info("Ensemble, transition_weight %s: validation %s", weight, grid[str(weight)])
    best = best_fusion_weight(grid)
    test_histories, test_targets = split_sample(splits, "test", args.max_test_users, seed, index)
    start = time.perf_counter()
    test = ranking_metrics(rank_genrec(combined, test_histories, k, float(best), exclude), test_targets, KS)
    test_seconds = time.perf_counter() - start
    alone = None
    if float(best):
        alone = ranking_metrics(rank_genrec(combined, test_histories, k, 0.0, exclude), test_targets, KS)
    first = members[0][1]
    return {
        "model": "genrec",
        "ensemble": len(members),
        "config_file": config_path,
        "exclude_history": exclude,
        "protocol": first.get("protocol"),
        "test": test,
        "test_model_alone": alone,
        "transition_weight": float(best),
        "transition_weight_validation": grid,
        "baselines": first.get("baselines"),
        "train_minutes": sum(r["train_minutes"] for _, r in members),
        "test_eval_seconds": test_seconds,
        "members": [member_summary(r) for _, r in members],
        "data": first.get("data"),
        "semantic_ids": first.get("semantic_ids"),
        "num_parameters": first.get("num_parameters"),
    }


def ensemble_sasrec(args, data, splits, members: list[tuple[Path, dict]]) -> dict:
    """Rank with the mean of the members' next-item distributions (each member's best validation state), alone
    and with the successor prior fused as for one SASRec."""
    from safetensors.torch import load_file

    index, train_sequences = sasrec_sequences(data)
    models = []
    for member_dir, _ in members:
        model = SASRecModel(sasrec_config(args, data.num_items))
        model.load_state_dict(load_file(str(member_dir / TESTED_STATE)))
        models.append(model.eval())
    exclude = excludes_history(args)
    val = sasrec_split_rows(splits, index, "validation", args.max_eval_users)
    test_histories, test_targets = sasrec_split_rows(splits, index, "test")
    start = time.perf_counter()
    test = ranking_metrics(sasrec_rank(models, test_histories, max(KS), exclude), test_targets, KS)
    test_seconds = time.perf_counter() - start
    transitions = sasrec_transitions(args, data, train_sequences)
    fused = fuse_sasrec(args, models, transitions, val, (test_histories, test_targets), exclude)
    return {
        "model": "sasrec",
        "ensemble": len(members),
        "config": models[0].config.to_diff_dict(),
        "exclude_history": exclude,
        "test": test,
        "successor_prior_fusion": fused,
        "train_minutes": sum(r["train_minutes"] for _, r in members),
        "test_eval_seconds": test_seconds,
        "members": [member_summary(r) for _, r in members],
        "protocol": members[0][1].get("protocol"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--model", choices=["genrec", "sasrec"], default="genrec")
    parser.add_argument("--budget-minutes", type=float, default=60.0)
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--output-dir", default="benchmarks/results")
    parser.add_argument("--work-dir", default=None, help="Checkpoints (default: outputs/reproduce/<dataset>_<model>).")
    parser.add_argument("--config", default=None, help="Generative recipe (default: the one shipped for the dataset).")
    parser.add_argument(
        "--overlay",
        nargs="+",
        default=None,
        help="YAML files laid over the recipe in order, e.g. hf_genrec/recipes/hybrid.yaml: the hybrid trained by the "
        "library (record <dataset>_hybrid-recipe.json).",
    )
    parser.add_argument(
        "--exclude-history",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Rank only items outside each user's history (every model and baseline alike; default: the recipe's "
        "exclude_history).",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="Training seed (default: the recipe's seed; 42 for SASRec)."
    )
    parser.add_argument(
        "--ensemble",
        type=int,
        default=1,
        help="Train this many models of budget / N minutes each (seeds seed, seed + 1, ...) and rank with the mean "
        "of their distributions.",
    )
    parser.add_argument(
        "--hybrid-sasrec-minutes",
        type=float,
        default=0.0,
        help="Train a SASRec for this many minutes of the budget first and fuse it into the generative model's beam "
        "search (the hybrid recommender; record <dataset>_hybrid.json). 0: the generative model alone.",
    )
    parser.add_argument(
        "--hybrid-scorer-weights",
        type=float,
        nargs="+",
        default=[0.0, 1.0, 2.0, 4.0, 8.0],
        help="Scorer weights the hybrid tries on validation (with each of the recipe's successor-prior weights).",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--max-eval-users", type=int, default=2000, help="Validation users for the curve.")
    parser.add_argument("--max-test-users", type=int, default=None, help="Test on a random sample (default: all).")
    parser.add_argument("--eval-every-epochs", type=int, default=5)
    parser.add_argument("--sasrec-max-length", type=int, default=50)
    parser.add_argument("--sasrec-hidden", type=int, default=64)
    parser.add_argument("--sasrec-heads", type=int, default=1)
    parser.add_argument("--sasrec-dropout", type=float, default=0.5)
    parser.add_argument("--sasrec-lr", type=float, default=1e-3)
    parser.add_argument("--sasrec-epochs", type=int, default=1000, help="Upper bound; the budget usually stops first.")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work_dir = Path(args.work_dir or f"outputs/reproduce/{args.dataset}_{args.model}")
    work_dir.mkdir(parents=True, exist_ok=True)
    if args.ensemble < 1:
        parser.error(f"--ensemble must be at least 1, got {args.ensemble}.")
    started = time.perf_counter()
    if args.model == "sasrec":
        data = load_interactions(args.dataset, args.data_dir)
        splits = leave_one_out(data, max_history=args.sasrec_max_length)
        if args.ensemble > 1:
            members = run_members(args, work_dir, lambda member, folder: run_sasrec(member, data, splits, folder))
            result = ensemble_sasrec(args, data, splits, members)
        else:
            args.seed = 42 if args.seed is None else args.seed
            result = run_sasrec(args, data, splits, work_dir)
        index = {item: i for i, item in enumerate(data.items["item_id"][:])}
        popular = MostPopular(index).fit(training_part(data.sequences["item_ids"][:]))
        targets = np.asarray([index[t] for t in splits["test"]["target"][:]])
        seen = [[index[i] for i in h] for h in splits["test"]["history"][:]] if result["exclude_history"] else None
        ranked = popular.predict(len(targets), max(KS), exclude=seen)
        result["baselines"] = {"most_popular": ranking_metrics(ranked, targets, KS)}
    elif args.hybrid_sasrec_minutes > 0:
        if recipe(args)[1].get("scorer"):
            parser.error("--hybrid-sasrec-minutes trains its own SASRec; the recipe already has a scorer. Pick one.")
        if args.ensemble > 1:
            parser.error("--hybrid-sasrec-minutes and --ensemble do not combine; pick one.")
        if args.model != "genrec":
            parser.error("--hybrid-sasrec-minutes goes with --model genrec (it trains both models).")
        result = run_hybrid(args, work_dir)
    elif args.ensemble > 1:
        if recipe(args)[1].get("scorer"):
            parser.error(
                "--ensemble does not combine with a recipe that trains a scorer (--overlay "
                "hf_genrec/recipes/hybrid.yaml)."
            )
        result = ensemble_genrec(args, run_members(args, work_dir, run_genrec))
    else:
        result = run_genrec(args, work_dir)
    result.update(
        dataset=args.dataset,
        budget_minutes=args.budget_minutes,
        wall_minutes=(time.perf_counter() - started) / 60,
        command="python benchmarks/reproduce.py "
        + " ".join(
            f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
            for k, v in vars(args).items()
            if v is not None and k != "data_dir"
        ),
        machine=describe_machine(),
    )
    # the generative model's record is <dataset>.json (the CLI's results.json keys + budget, steps, curve)
    name = args.dataset if args.model == "genrec" else f"{args.dataset}_{args.model}"
    name = f"{args.dataset}_hybrid" if args.model == "genrec" and args.hybrid_sasrec_minutes > 0 else name
    name = f"{args.dataset}_hybrid-recipe" if args.model == "genrec" and recipe(args)[1].get("scorer") else name
    # a decoder-only backbone (``--overlay hf_genrec/recipes/decoder.yaml``) is its own recipe, beside the T5's record
    backbone = recipe(args)[1].get("backbone", "t5") if args.model == "genrec" else "t5"
    name = f"{args.dataset}_decoder-recipe" if backbone != "t5" else name
    output = Path(args.output_dir) / (f"{name}_ensemble{args.ensemble}.json" if args.ensemble > 1 else f"{name}.json")
    write_record(result, output)
    print(json.dumps({k: result[k] for k in ("dataset", "model", "test", "train_minutes") if k in result}, indent=2))


if __name__ == "__main__":
    main()
