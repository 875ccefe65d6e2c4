"""What a run records: the protocol in words, the ``results.json`` record, each test user's hits
(``test_per_user.json``), and the printed table of metrics."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..evaluation.metrics import paired_difference, per_user_metrics, recall_curve, target_ranks
from ..models.sasrec import SASRecModel
from ..training.arguments import GenRecTrainingArguments
from ..utils.saving import atomic_write_text
from ..version import __version__
from .arguments import DataArguments, ItemIDArguments, ModelArguments
from .backbone import count_train_targets, is_decoder_backbone
from .fusion_search import fusion_records
from .scorer import scorer_minutes

PROTOCOL = (
    "leave-one-out per user (last item = test, second-to-last = validation); training on {train_prefixes}; "
    "history capped at {max_history}; full ranking over all {n_items} items by trie-constrained beam search "
    "({num_beams} beams){excluded}{fused}; metrics averaged over {test_users}"
)


def metric_names(ks: Sequence[int]) -> list[str]:
    """The metrics a run reports, in ``results.json``'s order: Recall@K and NDCG@K, MRR@max(K), the invalid rate."""
    return [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks] + [f"mrr@{max(ks)}", "invalid_rate"]


def train_prefixes(data_args: DataArguments) -> str:
    """Which next-item targets of the training part a run trains on, in words."""
    if data_args.max_train_targets_per_user is None:
        return "every prefix of the rest"
    return f"each user's {data_args.max_train_targets_per_user} most recent prefixes of the rest"


def test_users_text(tested: int, total: int, seed: int) -> str:
    """Which test users a run ranked, in words: all of them, or a seeded random sample."""
    if tested == total:
        return f"all {tested} test users"
    return f"{tested} test users sampled at random (seed {seed}) of {total}"


def fused_text(args: GenRecTrainingArguments, scorer: SASRecModel | None) -> str:
    """What a run fused into its ranking, in words (empty when nothing was)."""
    text = ""
    if args.transition_weight:
        text += (
            f", with the training sequences' successor prior fused in (transition_weight {args.transition_weight}, "
            f"transition_smoothing {args.transition_smoothing}, transition_window {args.transition_window}, "
            f"transition_recent_items {args.transition_recent_items}, transition_shrinkage "
            f"{args.transition_shrinkage})"
        )
        if args.transition_weight_in_loss:
            text += (
                f", also fused into the training loss (transition_weight_in_loss {args.transition_weight_in_loss}), "
                "each step's fused scores normalised"
            )
    if scorer is not None and args.scorer_weight:
        text += (
            f", with a SASRec trained on the same sequences fused in (scorer_weight {args.scorer_weight}, "
            f"scorer_top_k {args.scorer_top_k}, scorer_smoothing {args.scorer_smoothing}; trained for "
            f"{scorer_minutes(scorer):.1f} min before the model, reading up to {scorer.config.max_positions} "
            "items of each history)"
        )
    return text


def minus_baselines(
    ranks: np.ndarray | None, baseline_rankings: dict[str, np.ndarray], targets: np.ndarray, ks: Sequence[int]
) -> dict | None:
    """The model minus each baseline on the same test users, user by user: per metric the mean difference and its
    standard error (`hf_genrec.evaluation.metrics.paired_difference`), so a lead is stated with its error (a lead of
    more than two standard errors is one the users' sampling does not explain). ``ranks`` are the model's target
    ranks, ``baseline_rankings`` each baseline's ``[n_users, K]`` ranking. `None` when the model ranked nothing.
    """
    if ranks is None:
        return None
    model = per_user_metrics(ranks, ks)
    return {
        name: paired_difference(model, per_user_metrics(target_ranks(ranking, targets), ks))
        for name, ranking in baseline_rankings.items()
    }


def validation_curve(log_history: list[dict]) -> list[dict]:
    """Each validation of a training: when (minutes, epoch, step) and its ranking metrics."""
    return [
        {
            "train_minutes": e.get("train_minutes"),
            "epoch": e.get("epoch"),
            "step": e.get("step"),
            **{k[len("eval_") :]: e[k] for k in e if k.startswith("eval_") and "@" in k},
        }
        for e in log_history
        if any(k.startswith("eval_") and "@" in k for k in e)
    ]


def generative_results(
    *,
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
    data,
    semantic_ids,
    scorer: SASRecModel | None,
    trainer,
    train_output,
    examples: dict,
    fusion_grid: dict | None,
    test_metrics: dict,
    test_ranks: np.ndarray | None,
    test_targets: np.ndarray,
    baselines: dict,
    baseline_rankings: dict[str, np.ndarray],
    timings: dict,
    num_parameters: int,
) -> dict:
    """``results.json`` of a generative run (`hf_genrec.recipes.run.run_experiment`): the protocol, the test
    metrics beside the baselines', the fusion weights picked on validation, the training's curve and costs."""
    ks = training_args.eval_ks
    names = metric_names(ks)
    protocol = PROTOCOL.format(
        train_prefixes=train_prefixes(data_args),
        max_history=f"{data_args.max_history} items"
        + ("" if scorer is None else f" (the scorer's at {scorer.config.max_positions})"),
        n_items=data.num_items,
        num_beams=training_args.num_beams,
        excluded=", never an item of the history read (exclude_history)" if training_args.exclude_history else "",
        fused=fused_text(training_args, scorer),
        test_users=test_users_text(len(test_targets), len(examples["test"]), training_args.seed),
    )
    return {
        "dataset": data_args.dataset,
        "model": "hybrid" if scorer is not None else "decoder" if is_decoder_backbone(model_args) else "tiger",
        "backbone": model_args.backbone,
        "protocol": protocol,
        "test": {name: test_metrics[f"test_{name}"] for name in names},
        "baselines": {baseline: {name: metrics[name] for name in names} for baseline, metrics in baselines.items()},
        # the model minus each baseline, user by user: its lead with a standard error
        "minus_baselines": minus_baselines(test_ranks, baseline_rankings, test_targets, ks),
        "transition_weight": training_args.transition_weight,
        "transition_weight_in_loss": training_args.transition_weight_in_loss,
        **fusion_records(fusion_grid, training_args),
        "scorer": None
        if scorer is None
        else {"config": scorer.config.to_diff_dict(), "training": scorer.config.training_summary},
        "train_seconds": timings["train_s"],
        "train_minutes": trainer.clock.elapsed_seconds() / 60,  # the whole run's, across resumes
        "validation_curve": validation_curve(trainer.state.log_history),
        "recall_curve": None
        if test_ranks is None
        else {
            "k": list(range(1, max(ks) + 1)),
            f"hf_genrec ({id_args.id_scheme})": [float(np.mean(test_ranks < k)) for k in range(1, max(ks) + 1)],
            "most popular": recall_curve(baseline_rankings["most_popular"], test_targets, max(ks)),
        },
        "log_history": trainer.state.log_history,
        "timings": timings,
        "train_steps": train_output.global_step,
        "train_examples": len(examples["train"]),
        "train_targets": count_train_targets(examples["train"], trainer.item_tokenizer, model_args),
        "epochs": train_output.metrics.get("epoch"),
        "num_parameters": num_parameters,
        "data": {"users": data.num_users, "items": data.num_items, "interactions": data.num_interactions},
        "semantic_ids": semantic_ids.diagnostics,
        "id_scheme": id_args.id_scheme,
        "library_version": __version__,
    }


#: each test user's Recall@K and NDCG@K, beside results.json: two runs on the same users compare user by user
#: (`python benchmarks/paired.py files A/test_per_user.json B/test_per_user.json`)
TEST_PER_USER_FILE = "test_per_user.json"


def save_test_per_user(output_dir: str | Path, users: Sequence[str], ranks: np.ndarray, ks: Sequence[int]) -> None:
    """Write ``test_per_user.json``: the test users' ids and, aligned with them, each one's metrics from the 0-based
    rank of its target (`hf_genrec.evaluation.metrics.target_ranks`)."""
    if len(users) != len(ranks):
        raise ValueError(f"{len(users)} test users but {len(ranks)} target ranks; they must match one to one.")
    record = {"users": list(users), **{m: v.tolist() for m, v in per_user_metrics(ranks, ks).items()}}
    atomic_write_text(Path(output_dir) / TEST_PER_USER_FILE, json.dumps(record) + "\n")


def format_results_table(results: dict) -> str:
    """A markdown table of the model's test metrics beside the baselines', then the model's lead over each baseline
    on the same users (mean per-user difference ± its standard error) where the run recorded it."""
    names = list(results["test"])
    model = "SASRec" if results.get("model") == "sasrec" else f"hf_genrec ({results.get('id_scheme', '')})"
    rows = [(model, results["test"])]
    rows += list(results["baselines"].items())
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, metrics in rows:
        lines.append(f"| {label} | " + " | ".join(f"{metrics[n]:.4f}" for n in names) + " |")
    for baseline, diffs in (results.get("minus_baselines") or {}).items():
        cells = [f"{diffs[n]['mean']:+.4f} ± {diffs[n]['standard_error']:.4f}" if n in diffs else "" for n in names]
        lines.append(f"| {model.split(' ')[0]} minus {baseline}, per user | " + " | ".join(cells) + " |")
    return "\n".join(lines)
