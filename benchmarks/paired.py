"""Paired comparisons: two rankings of the same users, compared user by user, with the standard error of the mean
difference (the users are the same, so that error is much smaller than either figure's).

    python benchmarks/paired.py bundles A B --dataset ml-1m --data-dir ../shared/data --max-history 200
    python benchmarks/paired.py hybrid outputs/reproduce/amazon-beauty_hybrid-recipe --data-dir ../shared/data
    python benchmarks/paired.py hybrid outputs/b40/amazon-beauty_t5 --scorer outputs/s49/beauty_sasrec ...
    python benchmarks/paired.py splits outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data
    python benchmarks/paired.py averaged outputs/reproduce/amazon-beauty_genrec_ema/checkpoint-N --data-dir ...
    python benchmarks/paired.py files outputs/sasrec/test_per_user.json outputs/genrec/test_per_user.json

- ``bundles``: saved recommenders ranked on the same test users and histories; each against the first.
- ``hybrid``: one hybrid bundle five ways (the hybrid, its SASRec with and without the prior, its generative model
  with the prior and alone), optionally with its fusion weights picked again on validation users; or a generative
  bundle and a separately trained SASRec (``--scorer``), fused as one.
- ``splits``: one bundle on both leave-one-out splits (all users), and how the two splits' targets differ.
- ``averaged``: the averaged (``ema_decay``) and the raw weights of one checkpoint, on the same users.
- ``files``: any two per-user result files compared user by user: the ``test_per_user.json`` every recipe run
  (generative or ``--model sasrec``) writes beside its ``results.json``, or those ``bundles --per-user-dir`` writes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from machine import bundle_parser, dispatch, write_record  # benchmarks/machine.py (scripts run from benchmarks/)
from reproduce import KS, rank_genrec  # benchmarks/reproduce.py

from hf_genrec import GenerativeRecommender
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.metrics import paired_difference, per_user_metrics, ranking_metrics, target_ranks
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad
from hf_genrec.training.averaging import load_training_weights


def per_user(ranked: np.ndarray, targets: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Hit@k and NDCG@k of every user (one held-out item each)."""
    return per_user_metrics(target_ranks(ranked[:, :k], targets), ks=(k,))


def _write(result: dict, output: str | None) -> None:
    if output:
        write_record(result, output)


def hybrid(argv: list[str]) -> None:
    """One hybrid bundle against its own SASRec with the successor prior, user by user.

    Ranks every test user five ways from one hybrid bundle (``reproduce.py --overlay hf_genrec/recipes/hybrid.yaml``
    or ``--hybrid-sasrec-minutes``): the hybrid at its saved weights, its SASRec with the same successor prior fused
    (``--sasrec-prior-weight``, the weight the harness picked for that SASRec), the same SASRec alone, the
    generative model with the prior only (``--generative-prior-weight``, default the hybrid's prior weight) and the
    generative model alone. Prints and writes (``--output``) Recall@10 / NDCG@10 of each and mean per-user
    differences with their standard errors: the hybrid against the SASRec with the prior and the generative model with
    the prior (``hybrid_minus``), the generative model with the prior against the SASRec alone and with the prior
    (``generative_with_prior_minus``), and the generative model alone against the SASRec alone
    (``generative_alone_minus``).

    ``--scorer DIR`` takes the SASRec from a ``reproduce.py --model sasrec`` work dir (the state it tested) and fuses
    it into any generative bundle, for the comparisons of two runs trained apart on the same budget.

    With ``--transition-weights`` and ``--scorer-weights`` the weights are picked again on the run's validation sample
    (``--validation-users`` users drawn with ``--seed``, the sample `run_experiment` validates on): every pair for the
    hybrid, every prior weight for SASRec with the prior (its ``--sasrec-prior-weight`` is then ignored), and, when 0
    is among the scorer weights, every prior weight for the generative model without the scorer; best NDCG@10 (the
    smaller weights on a tie). That widens a finished run's grid without training again:

        python benchmarks/paired.py hybrid outputs/reproduce/ml-1m_hybrid-data-settings --dataset ml-1m \\
            --data-dir ../shared/data --transition-weights 8 16 32 --scorer-weights 8 16 32
    """
    parser = argparse.ArgumentParser(
        prog="paired.py hybrid", description=hybrid.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle")
    parser.add_argument(
        "--scorer", default=None, help="A `reproduce.py --model sasrec` work dir to fuse as the scorer."
    )
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--sasrec-prior-weight", type=float, default=2.0)
    parser.add_argument(
        "--generative-prior-weight",
        type=float,
        default=None,
        help="Prior weight for the generative model without the scorer (default: the hybrid's prior weight).",
    )
    parser.add_argument("--transition-weights", type=float, nargs="+", default=None)
    parser.add_argument("--scorer-weights", type=float, nargs="+", default=None)
    parser.add_argument("--validation-users", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--max-history",
        type=int,
        default=None,
        help="Items of each history given to the bundle (default: its scorer's window); every given item is excluded, "
        "so bundles compared on the same users need the same value.",
    )
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    if (args.transition_weights is None) != (args.scorer_weights is None):
        parser.error("--transition-weights and --scorer-weights go together (the hybrid's grid is their pairs).")
    torch.set_num_threads(2)
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    data = load_interactions(args.dataset, args.data_dir)
    if args.scorer is not None:
        recommender.scorer = separate_scorer(Path(args.scorer), data.items["item_id"][:], recommender.item_ids)
    if recommender.scorer is None:
        raise SystemExit(f"{args.bundle} holds no scorer/: it is not a hybrid bundle (fuse one with --scorer).")
    config = recommender.config
    scorer = recommender.scorer
    splits = leave_one_out(data, max_history=args.max_history or scorer.config.max_positions)
    index = recommender.item_tokenizer.item_to_index

    def users(split):
        histories = split["history"][:]
        targets = np.asarray([index[t] for t in split["target"][:]])
        return histories, [[index[i] for i in h] for h in histories], targets

    def rank_generative(histories, transition_weight: float, scorer_weight: float) -> np.ndarray:
        out = recommender.recommend(
            histories, k=10, transition_weight=transition_weight, scorer_weight=scorer_weight, batch_size=256
        )
        return np.asarray([[index[item] for item, _ in row] for row in out])

    def rank_sasrec(rows, prior_weight: float) -> np.ndarray:
        ranked = []
        for first in range(0, len(rows), 1024):
            chunk = rows[first : first + 1024]
            bonus = recommender.transitions.dense_bonus(
                chunk, prior_weight, config.fusion.transition_smoothing, config.fusion.transition_recent_items
            )
            for row, history in enumerate(chunk):  # every given item, as the bundle's recommend excludes
                bonus[row, history] = float("-inf")
            tokens = left_pad(chunk, scorer.config.max_positions)
            ranked.append(scorer.recommend(tokens, k=10, exclude_history=True, item_bonus=bonus)[0].numpy())
        return np.concatenate(ranked)

    picked = {
        "hybrid": (config.fusion.transition_weight, config.fusion.scorer_weight),
        "sasrec": args.sasrec_prior_weight,
        "generative": args.generative_prior_weight,
    }
    grid = None
    if args.transition_weights is not None:
        validation = splits["validation"]
        if args.validation_users < len(validation):
            validation = validation.shuffle(seed=args.seed).select(range(args.validation_users))
        v_histories, v_rows, v_targets = users(validation)
        start = time.perf_counter()
        grid = {"hybrid": {}, "sasrec_with_prior": {}}
        for t in sorted(args.transition_weights):
            for w in sorted(args.scorer_weights):
                ndcg = per_user(rank_generative(v_histories, t, w), v_targets)["ndcg@10"].mean()
                grid["hybrid"][f"{t}/{w}"] = float(ndcg)
                print(f"validation hybrid prior {t} scorer {w}: NDCG@10 {ndcg:.4f}", flush=True)
            grid["sasrec_with_prior"][str(t)] = float(per_user(rank_sasrec(v_rows, t), v_targets)["ndcg@10"].mean())
        best = max(grid["hybrid"], key=lambda k: (grid["hybrid"][k], *(-float(x) for x in k.split("/"))))
        picked["hybrid"] = tuple(float(x) for x in best.split("/"))
        picked["sasrec"] = float(
            max(grid["sasrec_with_prior"], key=lambda k: (grid["sasrec_with_prior"][k], -float(k)))
        )
        without_scorer = {k: v for k, v in grid["hybrid"].items() if float(k.split("/")[1]) == 0.0}
        if without_scorer:  # the generative model with the prior, at its own best weight
            best_alone = max(without_scorer, key=lambda k: (without_scorer[k], -float(k.split("/")[0])))
            picked["generative"] = float(best_alone.split("/")[0])
        grid["validation_s"] = time.perf_counter() - start
        print(
            f"picked: hybrid prior/scorer {best}, SASRec prior {picked['sasrec']}, generative prior "
            f"{picked['generative']}",
            flush=True,
        )
    if picked["generative"] is None:
        picked["generative"] = picked["hybrid"][0]

    histories, rows, targets = users(splits["test"])

    timings, ranked = {}, {}
    start = time.perf_counter()
    ranked["hybrid"] = rank_generative(histories, *picked["hybrid"])
    timings["hybrid_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["generative_with_prior"] = rank_generative(histories, picked["generative"], 0.0)
    timings["generative_with_prior_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["generative_alone"] = rank_generative(histories, 0.0, 0.0)
    timings["generative_alone_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["sasrec_with_prior"] = rank_sasrec(rows, picked["sasrec"])
    timings["sasrec_with_prior_s"] = time.perf_counter() - start
    start = time.perf_counter()
    ranked["sasrec_alone"] = rank_sasrec(rows, 0.0)
    timings["sasrec_alone_s"] = time.perf_counter() - start

    users = {name: per_user(r, targets) for name, r in ranked.items()}
    result = {"bundle": args.bundle, "scorer": args.scorer, "users": len(targets), "weights": {
        "hybrid": {"transition_weight": picked["hybrid"][0], "scorer_weight": picked["hybrid"][1]},
        "sasrec_with_prior": {"transition_weight": picked["sasrec"]},
        "generative_with_prior": {"transition_weight": picked["generative"]},
        "sasrec_alone": {"transition_weight": 0.0},
        "generative_alone": {"transition_weight": 0.0},
    }, "validation_grid": grid}  # fmt: skip
    result["metrics"] = {name: {m: float(v.mean()) for m, v in per.items()} for name, per in users.items()}
    comparisons = {
        "hybrid": ("sasrec_with_prior", "generative_with_prior"),
        "generative_with_prior": ("sasrec_alone", "sasrec_with_prior"),
        "generative_alone": ("sasrec_alone",),
    }
    for first, others in comparisons.items():
        result[f"{first}_minus"] = {other: paired_difference(users[first], users[other]) for other in others}
    result.update(timings=timings)
    shown = ("metrics", "hybrid_minus", "generative_with_prior_minus", "generative_alone_minus", "timings")
    print(json.dumps({k: result[k] for k in shown}, indent=2))
    _write(result, args.output)


def separate_scorer(work_dir: Path, data_items, bundle_items) -> SASRecModel:
    """The SASRec a ``reproduce.py --model sasrec`` run tested (its work dir's state and training setup), its item
    rows put in the bundle's order."""
    from reproduce import TESTED_STATE
    from safetensors.torch import load_file

    from hf_genrec.decoding.fusion import reindex_items
    from hf_genrec.training.sasrec import TRAINING_SETUP_FILE

    setup, state = work_dir / TRAINING_SETUP_FILE, work_dir / TESTED_STATE
    if not (setup.is_file() and state.is_file()):
        raise SystemExit(f"{work_dir} is not a finished `reproduce.py --model sasrec` work dir (no {setup.name} "
                         f"and {state.name}).")  # fmt: skip
    config = {k: v for k, v in json.loads(setup.read_text())["config"].items() if k != "model_type"}
    scorer = SASRecModel(SASRecConfig(**config))
    scorer.load_state_dict(load_file(str(state)))
    return reindex_items(scorer.eval(), list(data_items), list(bundle_items))


def trained_minutes(bundle: str) -> float | None:
    """The minutes a bundle trained, from the ``results.json`` its run wrote beside it (None without one)."""
    path = Path(bundle) / "results.json"
    return json.loads(path.read_text()).get("train_minutes") if path.is_file() else None


def bundles(argv: list[str]) -> None:
    """Saved recommenders ranked on the same users and the same histories, each against the first: the test users,
    or with ``--split validation`` the validation users (their histories end one item earlier), on which a recipe's
    choices are made.

    Runs with different ``max_history`` rank different test histories in their records: with ``exclude_history``
    (the recipes') each excludes the items it read, so a wider window also removes more wrong candidates. Here every
    bundle is given each user's last ``--max-history`` items: it reads its own window of them, excludes every one
    of them (`GenerativeRecommender.recommend` bans the whole given history), and ranks at its saved fusion weights
    (``--transition-weight W`` sets one prior weight for all, 0 ranks the models alone). ``--per-user-dir`` writes
    each bundle's per-user hits for ``paired.py files``.
    """
    parser = argparse.ArgumentParser(
        prog="paired.py bundles", description=bundles.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundles", nargs="+", help="Folders written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--max-history", type=int, required=True, help="Items of each history every bundle gets.")
    parser.add_argument("--split", choices=["test", "validation"], default="test", help="Which users to rank.")
    parser.add_argument(
        "--transition-weight",
        type=float,
        default=None,
        help="Rank every bundle at this successor-prior weight instead of its saved one (0: the models alone).",
    )
    parser.add_argument(
        "--num-beams",
        type=int,
        default=None,
        help="Rank every bundle with this many beams instead of its saved number.",
    )
    parser.add_argument("--output", default=None)
    parser.add_argument("--per-user-dir", default=None, help="Write each bundle's per-user hits here (for `files`).")
    args = parser.parse_args(argv)
    if len(args.bundles) < 2:
        parser.error("Give at least two bundles to compare.")
    torch.set_num_threads(2)
    data = load_interactions(args.dataset, args.data_dir)
    users = leave_one_out(data, max_history=args.max_history)[args.split]
    histories, targets = users["history"][:], users["target"][:]

    per, metrics, seconds = {}, {}, {}
    for bundle in args.bundles:
        recommender = GenerativeRecommender.from_pretrained(bundle)
        index = recommender.item_tokenizer.item_to_index
        start = time.perf_counter()
        ranked = recommender.recommend(
            histories, k=10, batch_size=256, transition_weight=args.transition_weight, num_beams=args.num_beams
        )
        seconds[bundle] = time.perf_counter() - start
        rows = np.asarray([[index[item] for item, _ in row] for row in ranked])
        per[bundle] = per_user(rows, np.asarray([index[t] for t in targets]))
        metrics[bundle] = {m: float(v.mean()) for m, v in per[bundle].items()}
        print(f"{bundle}: {metrics[bundle]} ({seconds[bundle]:.0f} s)", flush=True)

    first = args.bundles[0]
    minus_first = {bundle: paired_difference(per[bundle], per[first]) for bundle in args.bundles[1:]}
    result = {
        "dataset": args.dataset,
        "split": args.split,
        "users": len(targets),
        "max_history": args.max_history,
        "transition_weight": args.transition_weight,
        "num_beams": args.num_beams,
        "metrics": metrics,
        "minus_first": minus_first,
        "ranking_seconds": seconds,
        "train_minutes": {bundle: trained_minutes(bundle) for bundle in args.bundles},
    }
    print(json.dumps({k: result[k] for k in ("metrics", "minus_first")}, indent=2))
    _write(result, args.output)
    if args.per_user_dir:  # for `paired.py files`: one file per bundle, users by id, as runs' test_per_user.json
        for number, bundle in enumerate(args.bundles):
            rows = {"bundle": bundle, "split": args.split, "users": users["user_id"][:]}
            rows.update({m: v.tolist() for m, v in per[bundle].items()})
            write_record(rows, Path(args.per_user_dir) / f"{number}_{Path(bundle).name}.json")


def validation_vs_test(argv: list[str]) -> None:
    """One saved recommender ranked on both leave-one-out splits (all users), and how the two splits' targets differ.

    The reproduce harness validates on 2,000 users and tests on all of them; this ranks every user on both, so the
    gap between validation and test is measured, not guessed, and it says how much of it the data explains: how often
    a split's (last history item -> target) transition occurs in the training sequences, and how often its target was
    trained on. Writes ``<output-dir>/<dataset>_validation_vs_test[_history-excluded].json``.
    """
    parser = bundle_parser("paired.py splits", validation_vs_test.__doc__)
    parser.add_argument("--num-beams", type=int, default=20)
    parser.add_argument(
        "--exclude-history",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="Rank only items outside each history (default: the bundle's exclude_history).",
    )
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)

    data = load_interactions(args.dataset, args.data_dir)
    sequences = data.sequences["item_ids"][:]
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    max_history = recommender.config.max_history
    index = {item: i for i, item in enumerate(recommender.item_ids)}
    train = training_part(sequences)
    transitions = Counter((a, b) for sequence in train for a, b in zip(sequence, sequence[1:]))
    trained = Counter(item for sequence in train for item in sequence)

    splits = {}
    # the library's own leave-one-out split, so the protocol is the harness's by construction
    examples = leave_one_out(data, max_history=max_history)
    for split in ("validation", "test"):
        histories, target_ids = examples[split]["history"][:], examples[split]["target"][:]
        targets = np.array([index[item] for item in target_ids])
        start = time.perf_counter()
        ranked = recommender.recommend(
            histories, k=10, num_beams=args.num_beams, batch_size=256, exclude_history=args.exclude_history
        )
        seconds = time.perf_counter() - start
        predictions = np.array([[index[item] for item, _ in row] for row in ranked])
        counts = [trained[item] for item in target_ids]
        splits[split] = {
            "metrics": ranking_metrics(predictions, targets, (5, 10)),
            "users": len(target_ids),
            "transition_in_training": float(
                np.mean([transitions[(history[-1], item)] > 0 for history, item in zip(histories, target_ids)])
            ),
            "target_training_count_median": float(np.median(counts)),
            "target_training_count_mean": float(np.mean(counts)),
            "rank_seconds": seconds,
        }
        print(split, {k: round(v, 4) for k, v in splits[split]["metrics"].items()}, flush=True)
        print(f"  transition seen in training {splits[split]['transition_in_training']:.4f}; target trained on "
              f"{splits[split]['target_training_count_median']:.0f} times (median)")  # fmt: skip

    excluded = recommender.config.fusion.exclude_history if args.exclude_history is None else args.exclude_history
    record = {
        "dataset": args.dataset,
        "bundle": str(args.bundle),
        "num_beams": args.num_beams,
        "exclude_history": excluded,
        "max_history": max_history,
        "splits": splits,
    }
    suffix = "_history-excluded" if excluded else ""
    out = Path(args.output_dir) / f"{args.dataset}_validation_vs_test{suffix}.json"
    write_record(record, out)


def averaged(argv: list[str]) -> None:
    """Averaged against raw weights at the same training step: what ``ema_decay`` changes, paired.

    A checkpoint of a run with ``ema_decay`` holds the moving average of the weights (its model files) and the raw
    weights training continues from (``training_weights.safetensors``), both of the same step of the same run. This
    ranks every user of the leave-one-out validation and test splits with each, under the harness's protocol (history
    items excluded as the bundle says, the successor prior fused at ``--transition-weight``), and the per-user
    difference of the averaged weights from the raw ones. Writes ``<output-dir>/<dataset>_weight_average.json``.
    """
    parser = argparse.ArgumentParser(
        prog="paired.py averaged", description=averaged.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("checkpoint", help="A checkpoint folder of a run with ema_decay.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument(
        "--transition-weight", type=float, default=None, help="Prior weight (default: the checkpoint's)."
    )
    parser.add_argument("--splits", default="validation,test")
    parser.add_argument("--max-users", type=int, default=None, help="Rank the first N users of each split only.")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    splits = args.splits.split(",")
    if not splits or not set(splits) <= {"validation", "test"}:
        parser.error(f"--splits takes validation, test or both (comma-separated), got {args.splits!r}")

    average = GenerativeRecommender.from_pretrained(args.checkpoint)
    raw = GenerativeRecommender.from_pretrained(args.checkpoint)
    updates = load_training_weights(raw.model, args.checkpoint)
    weight = average.config.fusion.transition_weight if args.transition_weight is None else args.transition_weight
    exclude = average.config.fusion.exclude_history
    data = load_interactions(args.dataset, args.data_dir)
    examples = leave_one_out(data, max_history=average.config.max_history)
    index = average.item_tokenizer.item_to_index

    results: dict[str, dict] = {}
    for split in splits:
        rows = examples[split]
        if args.max_users is not None:
            rows = rows.select(range(min(args.max_users, len(rows))))
        histories, targets = rows["history"][:], np.asarray([index[t] for t in rows["target"][:]])
        users = {}
        for name, recommender in (("averaged", average), ("raw", raw)):
            start = time.perf_counter()
            ranked = rank_genrec(recommender, histories, max(KS), weight, exclude)
            metrics = ranking_metrics(ranked, targets, KS)
            results.setdefault(split, {})[name] = {**metrics, "rank_seconds": time.perf_counter() - start}
            users[name] = per_user(ranked, targets)
            print(split, name, {k: round(v, 4) for k, v in metrics.items()}, flush=True)
        results[split]["users"] = len(targets)
        results[split]["averaged_minus_raw"] = paired_difference(users["averaged"], users["raw"])

    record = {
        "dataset": args.dataset,
        "checkpoint": str(args.checkpoint),
        "averaging_updates": updates,
        "transition_weight": weight,
        "exclude_history": exclude,
        "splits": results,
    }
    write_record(record, Path(args.output_dir) / f"{args.dataset}_weight_average.json")


def files(argv: list[str]) -> None:
    """Any two per-user result files compared user by user: mean difference (second minus first) and its error.

    A per-user file is JSON with ``users`` (one id per user, in any order) and one list per metric (e.g.
    ``recall@10``, ``ndcg@10``) aligned with it, as ``paired.py bundles --per-user-dir`` writes. Only the users both
    files hold are compared, and a metric only when both files have it.
    """
    parser = argparse.ArgumentParser(
        prog="paired.py files", description=files.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    first, second = (json.loads(Path(p).read_text()) for p in (args.first, args.second))
    result = compare_per_user(first, second)
    result.update(first=args.first, second=args.second)
    print(json.dumps(result, indent=2))
    _write(result, args.output)


def compare_per_user(first: dict, second: dict) -> dict:
    """``second - first`` per metric over the users both per-user records hold (see ``files``)."""
    for name, record in (("first", first), ("second", second)):
        if "users" not in record:
            raise SystemExit(f"The {name} per-user file has no 'users' list: write it with paired.py bundles "
                             "--per-user-dir, or add one id per user.")  # fmt: skip
    where = {user: i for i, user in enumerate(second["users"])}
    shared = [(i, where[user]) for i, user in enumerate(first["users"]) if user in where]
    if len(shared) < 2:
        raise SystemExit(f"The two files share {len(shared)} users; a paired comparison needs at least 2.")
    mine, theirs = (np.asarray(ix) for ix in zip(*shared))
    metrics = [m for m in first if m != "users" and isinstance(first[m], list) and isinstance(second.get(m), list)]
    if not metrics:
        raise SystemExit("The two files have no metric list in common (e.g. 'recall@10').")
    a = {m: np.asarray(first[m], dtype=float)[mine] for m in metrics}
    b = {m: np.asarray(second[m], dtype=float)[theirs] for m in metrics}
    return {
        "users": len(shared),
        "metrics": {
            "first": {m: float(v.mean()) for m, v in a.items()},
            "second": {m: float(v.mean()) for m, v in b.items()},
        },
        "second_minus_first": paired_difference(b, a),
    }


if __name__ == "__main__":
    dispatch(
        __doc__,
        {"bundles": bundles, "hybrid": hybrid, "splits": validation_vs_test, "averaged": averaged, "files": files},
    )
