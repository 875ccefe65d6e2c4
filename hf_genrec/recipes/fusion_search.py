"""The fusion weights a run keeps: every pair of the grids' successor-prior and scorer weights ranks the validation
users after training, and the best pair is kept for the test and the bundle (`pick_fusion_weights`)."""

from __future__ import annotations

import logging

from ..training.arguments import GenRecTrainingArguments
from ..training.trainer import GenRecTrainer

logger = logging.getLogger(__name__)


def pick_fusion_weights(trainer: GenRecTrainer, validation) -> dict[tuple[float, float], dict[str, float]]:
    """Rank ``validation`` with every pair of ``trainer.args.transition_weights`` (else ``[transition_weight]``) and
    ``scorer_weights`` (else ``[scorer_weight]``), and set both weights to the pair that is best by
    ``metric_for_best_model`` (ties go to the smaller weights, which lean less on what is fused). Returns every
    pair's validation metrics (``fusion_*`` keys without the prefix)."""
    args = trainer.args
    metric = args.metric_for_best_model or "ndcg@10"
    metric = metric if metric.startswith("fusion_") else f"fusion_{metric}"
    transition_weights = sorted(set(args.transition_weights or [args.transition_weight]))
    scorer_weights = sorted(set(args.scorer_weights or [args.scorer_weight]))
    logger.info(
        "[fusion] Ranking the validation users at %d weight pairs (transition_weights %s x scorer_weights %s) to "
        "pick the fusion weights the test and the bundle use",
        len(transition_weights) * len(scorer_weights),
        transition_weights,
        scorer_weights,
    )
    grid = {}
    for transition_weight in transition_weights:
        for scorer_weight in scorer_weights:
            args.transition_weight, args.scorer_weight = transition_weight, scorer_weight
            grid[transition_weight, scorer_weight] = trainer.evaluate(validation, metric_key_prefix="fusion")
    best = max(grid, key=lambda pair: (grid[pair][metric], -pair[0], -pair[1]))
    args.transition_weight, args.scorer_weight = best
    logger.info("transition_weight %s, scorer_weight %s: validation %s %.4f", *best, metric, grid[best][metric])
    for name, weights, value in (
        ("transition_weight", transition_weights, best[0]),
        ("scorer_weight", scorer_weights, best[1]),
    ):
        if len(weights) > 1 and value > 0 and value == max(weights):
            # a best weight at the edge of the grid says a larger one may rank better still
            logger.warning(
                "%s %s, the largest of %ss %s, ranked validation best (%s %.4f): a larger weight may do better. Add "
                "one (e.g. %s) to %ss (the --%ss flag, or the recipe key) and rank again.",
                name,
                value,
                name,
                weights,
                metric,
                grid[best][metric],
                2 * value,
                name,
                name,
            )
    return {pair: {k[len("fusion_") :]: v for k, v in m.items() if "@" in k} for pair, m in grid.items()}


def fusion_records(grid: dict | None, args: GenRecTrainingArguments) -> dict:
    """``results.json``'s fusion entries: ``transition_weight_validation`` (weight → validation metrics, at the
    picked scorer weight) and, with a scorer, ``scorer_weight`` and ``fusion_validation`` ("transition/scorer" →
    metrics)."""
    records: dict = {
        "transition_weight_validation": None
        if grid is None
        else {str(t): m for (t, s), m in grid.items() if s == args.scorer_weight}
    }
    if args.scorer_weight or args.scorer_weights:
        records["scorer_weight"] = args.scorer_weight
        records["fusion_validation"] = None if grid is None else {f"{t}/{s}": m for (t, s), m in grid.items()}
    return records
