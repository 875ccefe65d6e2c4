"""Cold-start items on Amazon Beauty: hold items out of training, add them afterwards, and measure retrieval.

    OMP_NUM_THREADS=1 python benchmarks/cold_start.py --data-dir ../shared/data --budget-minutes 15 \
        [--item-features collaborative]

1. A fixed 5% of the items (seed 0) are *cold*: every interaction with them is removed from the training part
   (training sequences and validation histories), and the ID scheme (RQ-KMeans) is fitted on the other 95% only,
   over the items' text embeddings (``--item-features text``, the default here) or over collaborative vectors of
   the training part without the cold items (``collaborative``, the recipe's default). The model trains with
   ``hf_genrec/recipes/amazon-beauty.yaml`` on a short budget.
2. The cold items are then added with ``GenerativeRecommender.add_items`` (no retraining, no new tokens): with text
   IDs their text embeddings are encoded by the fitted quantiser; with collaborative IDs they have no interactions
   to place them by, so a content map (``fit_content_map`` on the warm items' text embeddings) gives each the codes
   the 10 warm items whose text reads most alike vote for, and the record says how often those agree with the codes
   their training interactions would give them (``features_from_sequences``).
3. Test (leave-one-out, last item of every user, histories untouched so they may hold cold items): Recall@10 and
   NDCG@10 on the users whose target is a cold item, and on all test users, with the cold-start retrieval mode off
   (``new_item_slots=0``), on (``new_item_slots=N``), and a baseline that puts ``N`` cold items drawn at random into
   the same slots of the mode-off list.

Writes ``benchmarks/results/cold_start.json``. ``--phase train`` stops after saving the bundle, ``--phase eval``
reads it back (so the evaluation can be rerun without training again).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import datasets
import numpy as np
from machine import describe_machine, stamp, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.metrics import ranking_metrics

logger = logging.getLogger("cold_start")
KS = (10,)


def cold_item_split(item_ids: list[str], share: float, seed: int) -> set[str]:
    """A fixed random ``share`` of the catalogue: the items training never sees."""
    rng = np.random.default_rng(seed)
    n = round(share * len(item_ids))
    return {item_ids[i] for i in rng.choice(len(item_ids), n, replace=False)}


def load_features(data, cache: Path) -> np.ndarray:
    """Text features of every item (the default recipe's), cached as .npy next to the run."""
    from hf_genrec.features.item_features import build_item_features

    if cache.exists():
        return np.load(cache, allow_pickle=False)
    features = build_item_features(data.items, method="auto", show_progress_bar=False)
    np.save(cache, features, allow_pickle=False)
    return features


def parse_recipe(args, work_dir: Path):
    import yaml
    from transformers import HfArgumentParser

    from hf_genrec.recipes.arguments import DataArguments, ItemIDArguments, ModelArguments
    from hf_genrec.training.arguments import GenRecTrainingArguments

    settings = yaml.safe_load(Path(args.config).read_text())
    settings.update(
        dataset=args.dataset,
        data_dir=args.data_dir,
        output_dir=str(work_dir / "model"),
        max_train_minutes=args.budget_minutes,
        seed=args.seed,
    )
    parser = HfArgumentParser((DataArguments, ItemIDArguments, ModelArguments, GenRecTrainingArguments))
    return parser.parse_dict(settings)


def train(args, data, splits, cold: set[str], features: np.ndarray, work_dir: Path) -> dict:
    """Fit the IDs on the warm items and train on interactions with warm items only; save the bundle."""
    from hf_genrec.models.prior import ItemTransitions
    from hf_genrec.recipes.run import build_model_and_config
    from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
    from hf_genrec.training.examples import tokenize_examples, tokenize_sequences
    from hf_genrec.training.trainer import GenRecTrainer

    data_args, id_args, model_args, training_args = parse_recipe(args, work_dir)
    item_ids = data.items["item_id"][:]
    warm_rows = [i for i, item in enumerate(item_ids) if item not in cold]
    quantizer = id_args.build_scheme()
    sequences = [[item for item in seq if item not in cold] for seq in training_part(data.sequences["item_ids"][:])]
    if args.item_features == "collaborative":
        from hf_genrec.features.collaborative import collaborative_features

        # the cold items co-occur with nothing here: zero rows, left out of the fit below
        features = collaborative_features(
            sequences, item_ids, dim=id_args.collaborative_dim, window=id_args.collaborative_window
        )
    semantic_ids = quantizer.fit(features[warm_rows], [item_ids[i] for i in warm_rows])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids, history_eos=not model_args.causal_encoder)

    train_rows = tokenize_sequences(sequences, item_tokenizer, data_args.max_history)
    validation = splits["validation"]
    rows = {"user_id": [], "history": [], "target": []}
    for user, history, target in zip(validation["user_id"], validation["history"], validation["target"]):
        history = [item for item in history if item not in cold]
        if target not in cold and history:
            rows["user_id"].append(user)
            rows["history"].append(history)
            rows["target"].append(target)
    validation = datasets.Dataset.from_dict(rows)
    if data_args.max_eval_users and data_args.max_eval_users < len(validation):
        validation = validation.shuffle(seed=training_args.seed).select(range(data_args.max_eval_users))
    validation = tokenize_examples(validation, item_tokenizer, data_args.max_history)

    model, genrec_config = build_model_and_config(item_tokenizer, data_args, id_args, model_args, training_args)
    # the recipe fuses the successor prior (at its transition_weight, 2; no grid here): counts of warm items only
    transitions = ItemTransitions.fit(
        [item_tokenizer.index_of(s).tolist() for s in sequences if s],
        item_tokenizer.num_items,
        window=training_args.transition_window,
        shrinkage=training_args.transition_shrinkage,
    )
    trainer = GenRecTrainer(
        model=model,
        args=training_args,
        item_tokenizer=item_tokenizer,
        train_dataset=train_rows,
        eval_dataset=validation,
        genrec_config=genrec_config,
        quantizer=quantizer,
        transitions=transitions,
    )
    start = time.perf_counter()
    output = trainer.train()
    train_seconds = time.perf_counter() - start
    trainer.save_model(str(work_dir / "bundle"))
    facts = {
        "train_seconds": train_seconds,
        "train_minutes": trainer.clock.elapsed_seconds() / 60,
        "epochs": output.metrics.get("epoch"),
        "train_steps": output.global_step,
        "train_targets": sum(len(ends) for ends in train_rows["target_ends"]),
        "warm_items": len(warm_rows),
        "item_features": args.item_features,
        "validation_users": len(validation),
        "semantic_ids": {k: v for k, v in semantic_ids.diagnostics.items() if not isinstance(v, list | dict)},
    }
    (work_dir / "train_facts.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def _metrics(ranked: list[list[str]], targets: list[str], index: dict[str, int]) -> dict:
    predictions = np.full((len(ranked), max(KS)), -1, dtype=np.int64)
    for row, items in enumerate(ranked):
        predictions[row, : len(items)] = [index[item] for item in items[: max(KS)]]
    metrics = ranking_metrics(predictions, np.asarray([index[t] for t in targets]), KS)
    return {name: float(metrics[name]) for name in ("recall@10", "ndcg@10")}


def content_placement(
    rec, data, cold_ids: list[str], item_ids: list[str], text: np.ndarray
) -> tuple[np.ndarray, dict]:
    """Codes of the cold items from their text alone (a content map over the warm items), and how often they agree
    with those the cold items' training interactions would give them (``features_from_sequences``)."""
    index = {item: i for i, item in enumerate(item_ids)}
    warm = [item for item in item_ids if item in rec.item_tokenizer.item_to_index]
    start = time.perf_counter()
    content_map = rec.fit_content_map({"item_id": warm}, content=text[[index[i] for i in warm]])
    codes = rec.codes_from_content(content=text[[index[i] for i in cold_ids]])
    seconds = time.perf_counter() - start
    cold = set(cold_ids)
    histories = [seq for seq in training_part(data.sequences["item_ids"][:]) if cold & set(seq)]
    # only items with a warm item within the window somewhere can be placed by their interactions
    placeable = {
        item
        for seq in histories
        for t, item in enumerate(seq)
        if item in cold and any(other not in cold for other in seq[max(0, t - 3) : t + 4])
    }
    compared = [i for i, item in enumerate(cold_ids) if item in placeable]
    histories = [[item for item in seq if item not in cold or item in placeable] for seq in histories]
    by_interactions = rec.features_from_sequences([cold_ids[i] for i in compared], histories)
    levels = rec.item_tokenizer.semantic_ids.n_levels - 1
    from_content = codes[compared]
    from_use = rec.quantizer.encode(by_interactions)[:, :levels]
    facts = {
        "content_map": content_map.diagnostics | {"n_neighbors": content_map.n_neighbors},
        "content_map_seconds": seconds,
        "codes_agreeing_with_interaction_placement": {
            f"first_{n}": float((from_content[:, :n] == from_use[:, :n]).all(axis=1).mean())
            for n in range(1, levels + 1)
        },
        "items_compared": len(compared),
    }
    logger.info("Content placement: %s", facts)
    return codes, facts


def evaluate(args, data, splits, cold: set[str], item_ids: list[str], features: np.ndarray, work_dir: Path, started):
    """Add the cold items to the trained bundle, then rank the test users with the mode off, on, and at random."""
    import torch

    from hf_genrec.decoding.generate import generate_items
    from hf_genrec.serving.living_catalog import insert_new_items
    from hf_genrec.serving.recommender import GenerativeRecommender

    rec = GenerativeRecommender.from_pretrained(args.bundle or work_dir / "bundle")
    n_before = len(rec.item_ids)
    cold_ids = [item for item in item_ids if item in cold]  # catalogue order: fixed
    rows = [item_ids.index(item) for item in cold_ids]
    placement = {}
    if args.item_features == "collaborative":
        cold_codes, placement = content_placement(rec, data, cold_ids, item_ids, features)
        inputs = {"codes": cold_codes}
    else:
        inputs = {"features": features[rows]}
    start = time.perf_counter()
    added = rec.add_items(cold_ids, **inputs, if_full="skip")
    add_seconds = time.perf_counter() - start
    not_added = [item for item in cold_ids if item not in added]
    logger.info("Added %d cold items in %.2f s (%d could not be placed)", len(added), add_seconds, len(not_added))

    test = splits[args.eval_split]
    users = list(range(len(test)))
    targets_all = test["target"][:]
    cold_users = [u for u in users if targets_all[u] in cold]
    if args.max_cold_users and args.max_cold_users < len(cold_users):  # quick checks only; the record ranks all
        cold_users = cold_users[: args.max_cold_users]
    sample = users
    if args.max_test_users and args.max_test_users < len(users):
        sample = sorted(np.random.default_rng(args.seed).choice(len(users), args.max_test_users, replace=False))
    ranked_users = sorted(set(sample) | set(cold_users))
    missing = set(not_added)
    histories, dropped = [], 0
    all_histories = test["history"][:]
    for u in ranked_users:
        history = [item for item in all_histories[u] if item not in missing]
        dropped += len(all_histories[u]) - len(history)
        histories.append(history)
    if not all(histories):
        raise ValueError("A test history holds only items that could not be added; report them separately.")
    targets = [targets_all[u] for u in ranked_users]
    index = {item: i for i, item in enumerate(item_ids)}
    slots = args.new_item_slots

    start = time.perf_counter()
    off = [[item for item, _ in row] for row in rec.recommend(histories, k=10)]
    off_seconds = time.perf_counter() - start
    logger.info("Mode off: %d users in %.0f s", len(histories), off_seconds)

    # The mode's second beam search (over the added items only), run once with 10 returns: the top n of it are what
    # recommend(new_item_slots=n) inserts, so every share of the top 10 is scored from the same two searches.
    start = time.perf_counter()
    new_items, candidates = set(rec.new_item_ids), []
    excluding = (
        rec.config.fusion.exclude_history
    )  # as recommend() does: the history's items are banned in this search too
    for begin in range(0, len(histories), 64):
        chunk = histories[begin : begin + 64]
        batch = rec._collator([{"input_ids": rec.item_tokenizer.encode_history(h, max_items=20)} for h in chunk])
        exclude = [rec.item_tokenizer.index_of(h).tolist() for h in chunk] if excluding else None
        found, _ = generate_items(
            rec.model, rec.item_tokenizer, batch["input_ids"], batch["attention_mask"], num_beams=20, k=20,
            index=rec.new_item_trie_index, exclude_items=rec._new_item_exclusions(exclude),
        )  # fmt: skip
        candidates += [[rec.item_ids[i] for i in row if i >= 0] for row in found.tolist()]
    new_search_seconds = time.perf_counter() - start
    logger.info("Search over the new items: %.0f s", new_search_seconds)

    def with_new(lists, pools, n):
        return [
            [i for i, _ in insert_new_items([(x, 0.0) for x in row], [(c, 0.0) for c in pool], new_items, 10, n)]
            for row, pool in zip(lists, pools)
        ]

    # the mode's order: deepest code prefix shared with the history (recent first), then the model's order
    codes = rec.item_tokenizer.semantic_ids.codes
    ranked_new = []
    for history, model_list in zip(histories, candidates):
        recent = history[-20:]
        banned = set(history) if excluding else set(recent)
        ranked_new.append(
            rec.new_item_index.rank(codes[rec.item_tokenizer.index_of(recent)], model_list, 20, exclude=banned)
        )
    on = with_new(off, ranked_new, slots)
    # the same lists as the public API gives (checked on the first users; the full second run would double the cost)
    n_check = min(args.check_users, len(histories))
    direct = rec.recommend(histories[:n_check], k=10, new_item_slots=slots)
    if [[item for item, _ in row] for row in direct] != on[:n_check]:
        raise AssertionError("recommend(new_item_slots=...) and the benchmark's composition disagree.")
    rng = np.random.default_rng(args.seed)
    pool = np.asarray(rec.new_item_ids)
    random_insertion = with_new(off, [[str(c) for c in rng.permutation(pool)[: slots + 10]] for _ in off], slots)
    sweep = {str(n): _breakdown(with_new(off, ranked_new, n), targets, ranked_users, cold_users, sample, index)
             for n in (1, 2, 3, 5, 10)}  # fmt: skip
    # the model alone ranking the new items (its beam search over their trie), without the shared-prefix order
    model_only = {str(n): _breakdown(with_new(off, candidates, n), targets, ranked_users, cold_users, sample, index)
                  for n in (1, 2, 3, 5, 10)}  # fmt: skip
    repeats = sum(targets_all[u] in all_histories[u] for u in cold_users)
    on_seconds = off_seconds + new_search_seconds

    result = {"cold_items": {}, "all_items": {}}
    for mode, lists in (("mode_off", off), ("mode_on", on), ("random_insertion", random_insertion)):
        for name, metrics in _breakdown(lists, targets, ranked_users, cold_users, sample, index).items():
            result[name][mode] = metrics
    facts = json.loads((work_dir / "train_facts.json").read_text()) if (work_dir / "train_facts.json").exists() else {}
    result["metadata"] = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/cold_start.py --data-dir ../shared/data --budget-minutes "
        f"{args.budget_minutes:g} --new-item-slots {slots}"
        + (f" --max-test-users {args.max_test_users}" if args.max_test_users else "")
        + (f" --eval-split {args.eval_split}" if args.eval_split != "test" else ""),
        "dataset": args.dataset,
        "eval_split": args.eval_split,
        "recipe": args.config,
        "budget_minutes": args.budget_minutes,
        "training": facts,
        "item_features": args.item_features,
        "content_placement": placement,
        "cold_items": len(cold_ids),
        "cold_share": args.cold_share,
        "cold_seed": args.cold_seed,
        "catalogue_before_add": n_before,
        "catalogue_after_add": len(rec.item_ids),
        "added": len(added),
        "not_added_prefix_full": not_added,
        "add_items_seconds": add_seconds,
        "history_items_dropped_not_added": dropped,
        "test_users_cold_target": len(cold_users),
        "test_users_all": len(sample),
        "test_users_total": len(users),
        "new_item_slots": slots,
        "mode_on": f"recommend(new_item_slots={slots}): new items that share the deepest code prefix with the "
        "history's items (most recent first; the history's own items excluded), ties broken by a beam search over "
        "the new items' trie, take the last places of the top 10",
        "random_insertion": f"the mode-off top 10 with its last {slots} places given to new items drawn uniformly at "
        "random (the places the mode gives them)",
        "protocol": "leave-one-out per user (last item = test); cold items: a fixed random 5% of the items, every "
        "interaction with them removed from training (training sequences and validation histories) and from the "
        "ID scheme's fit; test histories unchanged; trie-constrained beam search (20 beams) over the whole grown "
        "catalogue",
        "slots_sweep": sweep,
        "model_ranking_only_sweep": model_only,
        "cold_target_users_with_target_in_history": repeats,
        "mode_on_checked_against_recommend_users": n_check,
        "seconds": {"mode_off": off_seconds, "mode_on": on_seconds},
        "wall_minutes": (time.perf_counter() - started) / 60,
        "machine": describe_machine(),
        "torch_threads": torch.get_num_threads(),
    }
    # the command, machine and date at the top as in every record (report.py reads them there)
    write_record(stamp({"command": result["metadata"]["command"], **result}), args.output)
    print(json.dumps({k: result[k] for k in ("cold_items", "all_items")}, indent=2))


def _breakdown(lists, targets, ranked_users, cold_users, sample, index) -> dict:
    position = {u: i for i, u in enumerate(ranked_users)}
    out = {}
    for name, users_of in (("cold_items", cold_users), ("all_items", sample)):
        pick = [position[u] for u in users_of]
        out[name] = _metrics([lists[i] for i in pick], [targets[i] for i in pick], index)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--config", default="hf_genrec/recipes/amazon-beauty.yaml")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--budget-minutes", type=float, default=15.0)
    parser.add_argument(
        "--item-features",
        choices=["text", "collaborative"],
        default="text",
        help="What the IDs are fitted on; with collaborative, cold items are placed by a content map over text.",
    )
    parser.add_argument("--cold-share", type=float, default=0.05)
    parser.add_argument("--cold-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--new-item-slots", type=int, default=2, help="Slots of the top 10 given to new items.")
    parser.add_argument("--max-test-users", type=int, default=None, help="All-users sample (default: all).")
    parser.add_argument("--check-users", type=int, default=200, help="Users ranked again by recommend() itself.")
    parser.add_argument("--max-cold-users", type=int, default=None, help="Quick checks only (default: all).")
    parser.add_argument(
        "--eval-split",
        choices=["test", "validation"],
        default="test",
        help="validation: the users whose validation target is held out (to choose settings without the test).",
    )
    parser.add_argument("--phase", choices=["all", "train", "eval"], default="all")
    parser.add_argument("--work-dir", default="outputs/cold_start")
    parser.add_argument("--bundle", default=None, help="Evaluate this bundle (default: <work-dir>/bundle).")
    parser.add_argument("--output", default="benchmarks/results/cold_start.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    data = load_interactions(args.dataset, args.data_dir)
    splits = leave_one_out(data, max_history=20)
    item_ids = data.items["item_id"][:]
    cold = cold_item_split(item_ids, args.cold_share, args.cold_seed)
    features = load_features(data, work_dir / "features.npy")
    if args.phase in ("all", "train"):
        facts = train(args, data, splits, cold, features, work_dir)
        logger.info("Trained: %s", facts)
    if args.phase in ("all", "eval"):
        evaluate(args, data, splits, cold, item_ids, features, work_dir, started)


if __name__ == "__main__":
    main()
