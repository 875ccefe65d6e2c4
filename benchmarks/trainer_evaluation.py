"""Trainer evaluation of a saved checkpoint with each constrained-decoding method: same metrics, how long each takes.

    python benchmarks/trainer_evaluation.py outputs/amazon-beauty --data_dir ../shared/data --max_users 2000

Writes ``benchmarks/results/trainer_evaluation.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM

from hf_genrec import GenRecConfig, GenRecTrainer, GenRecTrainingArguments, ItemTokenizer, leave_one_out
from hf_genrec.data import load_interactions
from hf_genrec.training.examples import tokenize_examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="A folder written by `hf-genrec train`.")
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--max_users", type=int, default=2000, help="Test users evaluated (a fixed random sample).")
    parser.add_argument("--methods", nargs="+", default=["reference", "fast"])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--output", default="benchmarks/results/trainer_evaluation.json")
    args = parser.parse_args()

    config = GenRecConfig.from_pretrained(args.checkpoint)
    item_tokenizer = ItemTokenizer.from_pretrained(args.checkpoint)
    model = AutoModelForSeq2SeqLM.from_pretrained(args.checkpoint).eval()
    data = load_interactions(config.dataset, args.data_dir)
    test = tokenize_examples(leave_one_out(data, max_history=config.max_history)["test"], item_tokenizer)
    if args.max_users and args.max_users < len(test):
        test = test.shuffle(seed=0).select(range(args.max_users))
    runs = {}
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            training_args = GenRecTrainingArguments(
                output_dir=tmp,
                per_device_eval_batch_size=args.batch_size,
                num_beams=config.num_beams,
                decoding_method=method,
                eval_strategy="no",
                save_strategy="no",
                load_best_model_at_end=False,
                use_cpu=not torch.cuda.is_available(),
            )
            trainer = GenRecTrainer(model=model, args=training_args, item_tokenizer=item_tokenizer)
            start = time.perf_counter()
            metrics = trainer.evaluate(test, metric_key_prefix="test")
            runs[method] = {"seconds": time.perf_counter() - start, "metrics": metrics}
        print(f"{method:<11} {runs[method]['seconds']:.1f} s  recall@10 {metrics['test_recall@10']:.4f}", flush=True)
    first = next(iter(runs.values()))["metrics"]
    ranking = [k for k in first if k.split("_", 1)[-1].split("@")[0] in ("recall", "ndcg", "mrr", "hit")]
    payload = {
        "checkpoint": args.checkpoint,
        "dataset": config.dataset,
        "users": len(test),
        "num_beams": config.num_beams,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "same_metrics": all(abs(run["metrics"][k] - first[k]) <= 1e-9 for run in runs.values() for k in ranking),
    }
    if "reference" in runs and "fast" in runs:
        payload["speedup_fast"] = runs["reference"]["seconds"] / runs["fast"]["seconds"]
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({k: v for k, v in payload.items() if k != "runs"}, indent=2))


if __name__ == "__main__":
    main()
