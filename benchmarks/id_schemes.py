"""Every item-ID scheme on Amazon Beauty under one fixed training budget.

For each scheme: build the IDs (timed), train the same T5 for the same number of epochs on the same examples, and
rank the catalogue for the same random sample of test users by trie-constrained beam search. Prints a markdown
table and writes ``benchmarks/results/id_schemes.json``.

    python benchmarks/id_schemes.py --data_dir ../shared/data            # the README table (about 2 hours, 2 cores)
    python benchmarks/id_schemes.py --data_dir ../shared/data --quick    # every scheme end to end in a few minutes

The text features (all-MiniLM-L6-v2) are computed once and cached under ``--work_dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from machine import write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec.data import load_interactions
from hf_genrec.features.item_features import build_item_features
from hf_genrec.recipes.arguments import DataArguments, ItemIDArguments, ModelArguments
from hf_genrec.recipes.run import run_experiment
from hf_genrec.training.arguments import GenRecTrainingArguments

# One entry per column of the table: the scheme and its settings. Semantic schemes get TIGER's shape (3 levels of
# 256 codes + collision level); random codes the same shape, so the only difference is what the codes mean.
VARIANTS = {
    "rqvae": dict(id_scheme="rqvae", n_levels=3, codebook_size=256),
    "rqkmeans": dict(id_scheme="rqkmeans", n_levels=3, codebook_size=256),
    "rqkmeans-balanced": dict(id_scheme="rqkmeans", n_levels=3, codebook_size=256, balanced=True),
    "hierarchical": dict(id_scheme="hierarchical", n_levels=2, codebook_size=64),
    "title": dict(id_scheme="title", max_title_tokens=8, missing_titles="item_id"),
    "random": dict(id_scheme="random", n_levels=3, codebook_size=256),
    "atomic": dict(id_scheme="atomic"),
}
# The same small T5 for every scheme (2+2 layers; TIGER's is 4+4): the budget is CPU time.
MODEL = dict(d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=2, num_decoder_layers=2, dropout_rate=0.1)


def cached_features(dataset: str, data_dir: str | None, work_dir: Path) -> Path:
    path = work_dir / f"{dataset}_text_features.npy"
    if not path.exists():
        data = load_interactions(dataset, data_dir)
        start = time.perf_counter()
        features = build_item_features(data.items, method="text")
        logging.info("Text features: %.0f s", time.perf_counter() - start)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, features)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--schemes", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--epochs", type=float, default=2.0, help="Training epochs per scheme (the fixed budget).")
    parser.add_argument("--learning_rate", type=float, default=3e-3)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--max_test_users", type=int, default=3000, help="Test users ranked (a fixed sample).")
    parser.add_argument("--num_beams", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--quick", action="store_true", help="A smoke run: 0.05 epoch, 200 test users.")
    parser.add_argument("--work_dir", default="outputs/id_schemes")
    parser.add_argument("--output", default=None, help="Results JSON (default: benchmarks/results/id_schemes.json).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.quick:
        args.epochs, args.max_test_users = 0.05, 200
    output = Path(args.output or f"benchmarks/results/id_schemes{'_quick' if args.quick else ''}.json")
    work_dir = Path(args.work_dir)
    features_path = cached_features(args.dataset, args.data_dir, work_dir)

    previous = json.loads(output.read_text()) if output.exists() else {}
    rows = previous.get("schemes", {}) if previous.get("budget", {}).get("epochs") == args.epochs else {}
    for name in args.schemes:
        settings = dict(VARIANTS[name])
        if settings["id_scheme"] in ("rqvae", "rqkmeans", "hierarchical"):
            settings["item_features"] = str(features_path)
        data_args = DataArguments(dataset=args.dataset, data_dir=args.data_dir, max_test_users=args.max_test_users)
        training_args = GenRecTrainingArguments(
            output_dir=str(work_dir / name),
            num_train_epochs=args.epochs,
            learning_rate=args.learning_rate,
            per_device_train_batch_size=args.batch_size,
            eval_strategy="no",
            save_strategy="no",
            load_best_model_at_end=False,
            num_beams=args.num_beams,
            seed=args.seed,
            use_cpu=not torch.cuda.is_available(),
        )
        logging.info("=== %s ===", name)
        result = run_experiment(data_args, ItemIDArguments(**settings), ModelArguments(**MODEL), training_args)
        diag = result["semantic_ids"]
        base_levels = [lvl for lvl in diag["levels"] if not lvl["collision_level"]]
        rows[name] = {
            "settings": VARIANTS[name],
            "build_seconds": result["timings"]["semantic_ids_s"],
            "collision_rate_before": diag["collision_rate_before"],
            "max_items_per_tuple": diag["max_items_per_tuple"],
            "id_length_mean": diag["id_length_mean"],
            "id_length_max": diag["id_length_max"],
            "codebook_usage_per_level": [lvl["usage"] for lvl in base_levels],
            "perplexity_per_level": [lvl["perplexity"] for lvl in base_levels],
            "train_seconds": result["train_seconds"],
            "test_eval_seconds": result["timings"]["test_eval_s"],
            "num_parameters": result["num_parameters"],
            "test": result["test"],
        }
        payload = {
            "dataset": args.dataset,
            "protocol": result["protocol"],
            "budget": {
                "epochs": args.epochs,
                "train_examples": result["train_examples"],
                "model": MODEL,
                "learning_rate": args.learning_rate,
                "batch_size": args.batch_size,
                "seed": args.seed,
            },
            "most_popular": result["baselines"]["most_popular"],
            "schemes": rows,
        }
        write_record(payload, output)  # after every scheme: a long run keeps its progress
    print(format_table(json.loads(output.read_text())))


def format_table(payload: dict) -> str:
    lines = [
        "| IDs | build (s) | collisions before | ID length | codebook usage | Recall@10 | NDCG@10 | train (min) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in payload["schemes"].items():
        usage = "/".join(f"{100 * u:.0f}%" for u in row["codebook_usage_per_level"][:3])
        if len(row["codebook_usage_per_level"]) > 3:
            usage += "/…"
        length = f"{row['id_length_mean']:.1f}" + ("" if row["id_length_max"] == row["id_length_mean"] else " (var.)")
        lines.append(
            f"| {name} | {row['build_seconds']:.1f} | {100 * row['collision_rate_before']:.1f}% | {length} | {usage} | "
            f"{row['test']['recall@10']:.4f} | {row['test']['ndcg@10']:.4f} | {row['train_seconds'] / 60:.1f} |"
        )
    pop = payload["most_popular"]
    lines.append(f"| most popular | – | – | – | – | {pop['recall@10']:.4f} | {pop['ndcg@10']:.4f} | – |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
