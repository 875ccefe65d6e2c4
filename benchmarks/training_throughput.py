"""Training throughput on real histories: GenRecTrainer (dynamic padding, length-grouped batches) against a plain
Seq2SeqTrainer fed inputs padded to the history cap, same model, same examples, same number of steps; and the
causal-encoder T5 trained on packed rows (every next-item target of a user in one encoder pass), at TIGER's size
and at width 128 with 4+2 layers, the latter also with one encoder position per item (with recency embeddings,
without them, and with item embeddings), and at the default recipe's depth of 2+1 layers.

    python benchmarks/training_throughput.py --data_dir ../shared/data

Writes ``benchmarks/results/training_throughput.json``: next-item targets (sequences) per second of each run, and
the ratios to the plain Seq2SeqTrainer.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine  # benchmarks/machine.py (scripts run from benchmarks/)
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from hf_genrec import GenRecTrainer, GenRecTrainingArguments, ItemTokenizer, leave_one_out, minimal_t5_tokenizer
from hf_genrec.data import load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.models.t5 import TIGER_T5_CONFIG, build_t5_model
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.training.examples import tokenize_examples, tokenize_sequences

#: width 128, MLP 512, 4+2 layers: the default recipe's T5 until its depth went to 2+1 (``DEFAULT_DEPTH``)
RECIPE_T5_CONFIG = dict(
    d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=4, num_decoder_layers=2, dropout_rate=0.1
)
#: the default recipe's depth (hf_genrec/recipes/amazon-default.yaml)
DEFAULT_DEPTH = dict(num_layers=2, num_decoder_layers=1)


class StepTimer(TrainerCallback):
    """Wall time of the steps after ``warmup`` (the first steps pay for allocation and thread start-up)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        elif state.global_step == state.max_steps and self.start is not None:
            self.seconds = time.perf_counter() - self.start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--features", default="outputs/id_schemes/amazon-beauty_text_features.npy",
                        help="Item features .npy (random features are used when missing: IDs do not change speed).")  # fmt: skip
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument(
        "--packed_batch_size", type=int, default=32, help="Users (windows) per packed batch (the recipe's)."
    )
    parser.add_argument("--output", default="benchmarks/results/training_throughput.json")
    args = parser.parse_args()

    data = load_interactions(args.dataset, args.data_dir)
    item_ids = data.items["item_id"][:]
    if Path(args.features).exists():
        features = np.load(args.features)
    else:
        features = np.random.default_rng(0).normal(size=(len(item_ids), 32)).astype(np.float32)
    semantic_ids = RQKMeans(3, 256).fit(features, item_ids)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids)
    train = tokenize_examples(leave_one_out(data, max_history=20)["train"], item_tokenizer)
    causal_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids, history_eos=False)
    packed = tokenize_sequences(training_part(data.sequences["item_ids"][:]), causal_tokenizer, max_history=20)
    targets_per_row = float(np.mean([len(ends) for ends in packed["target_ends"]]))
    packed = packed.shuffle(seed=0).select(range(min(len(packed), args.steps * args.packed_batch_size * 2)))
    train = train.shuffle(seed=0).select(range(min(len(train), args.steps * args.batch_size * 2)))
    cap = 20 * (item_tokenizer.id_length - 1) + 1
    runs = {}
    variants = {  # the 4+2 model with one encoder position per item, with recency embeddings, without them, and
        # with item embeddings; and the default recipe (recency embeddings at 2+1 layers)
        "causal_packed_recipe_items_recency_2x1": dict(item_positions=True, recency_embeddings=True, **DEFAULT_DEPTH),
        "causal_packed_recipe_items_recency": dict(item_positions=True, recency_embeddings=True),
        "causal_packed_recipe_items": dict(item_positions=True),
        "causal_packed_recipe_items_embedded": dict(item_positions=True, item_embedding_buckets=65536),
    }
    names = ("causal_packed_recipe", *variants, "causal_packed", "genrec_trainer", "plain_padded_to_cap")
    for name in names:
        size = RECIPE_T5_CONFIG if name.startswith("causal_packed_recipe") else TIGER_T5_CONFIG
        tokenizer = causal_tokenizer if name.startswith("causal") else item_tokenizer
        model = build_t5_model(
            tokenizer, seed=0, causal_encoder=name.startswith("causal"), **{**size, **variants.get(name, {})}
        )
        timer = StepTimer(args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            common = dict(
                output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=1e-3,
                save_strategy="no", eval_strategy="no", report_to="none", logging_steps=10_000, use_cpu=True,
                disable_tqdm=True, seed=0,
            )  # fmt: skip
            if name.startswith("causal"):
                common["per_device_train_batch_size"] = args.packed_batch_size
                # the recipe's rows train as the recipe does: with the trie-normalised loss
                recipe = name.startswith("causal_packed_recipe")
                trainer = GenRecTrainer(
                    model=model,
                    args=GenRecTrainingArguments(load_best_model_at_end=False, constrained_loss=recipe, **common),
                    item_tokenizer=causal_tokenizer,
                    train_dataset=packed,
                )
            elif name == "genrec_trainer":
                trainer = GenRecTrainer(
                    model=model,
                    args=GenRecTrainingArguments(load_best_model_at_end=False, **common),
                    item_tokenizer=item_tokenizer,
                    train_dataset=train,
                )
            else:
                collator = DataCollatorForSeq2Seq(
                    item_tokenizer.tokenizer, padding="max_length", max_length=cap, label_pad_token_id=-100
                )
                plain = train.remove_columns([c for c in train.column_names if c not in ("input_ids", "labels")])
                plain = plain.map(lambda b: {"labels": [row + [-100] * (item_tokenizer.id_length - len(row)) for row in b["labels"]]}, batched=True)  # fmt: skip
                trainer = Seq2SeqTrainer(
                    model=model,
                    args=Seq2SeqTrainingArguments(**common),
                    train_dataset=plain,
                    data_collator=collator,
                )
            trainer.add_callback(timer)
            trainer.train()
        sequences = (args.steps - args.warmup) * args.batch_size
        if name.startswith("causal"):  # targets, on average, of the sampled windows
            sequences = (args.steps - args.warmup) * args.packed_batch_size * targets_per_row
        runs[name] = {"seconds": timer.seconds, "sequences_per_second": sequences / timer.seconds}
        print(f"{name:<36} {runs[name]['sequences_per_second']:.1f} sequences/s", flush=True)
    lengths = np.asarray(train["length"][:])
    payload = {
        "dataset": args.dataset,
        "model": f"TIGER-sized T5 ({build_t5_model(item_tokenizer, **TIGER_T5_CONFIG).num_parameters():,} parameters)",
        "batch_size": args.batch_size,
        "timed_steps": args.steps - args.warmup,
        "history_tokens": {"cap": cap, "mean": float(lengths.mean()), "median": float(np.median(lengths))},
        "runs": runs,
        "packed": {"users_per_batch": args.packed_batch_size, "targets_per_window": targets_per_row},
        "speedup": runs["genrec_trainer"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_causal_packed": runs["causal_packed"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_causal_packed_over_genrec_trainer": runs["causal_packed"]["sequences_per_second"]
        / runs["genrec_trainer"]["sequences_per_second"],
        "speedup_recipe_over_plain": runs["causal_packed_recipe"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_recipe_items_over_recipe": runs["causal_packed_recipe_items"]["sequences_per_second"]
        / runs["causal_packed_recipe"]["sequences_per_second"],
        "speedup_recipe_items_recency_over_plain": runs["causal_packed_recipe_items_recency"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_default_recipe_over_plain": runs["causal_packed_recipe_items_recency_2x1"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_recipe_items_embedded_over_recipe": runs["causal_packed_recipe_items_embedded"][
            "sequences_per_second"
        ]
        / runs["causal_packed_recipe"]["sequences_per_second"],
        "recipe_model": RECIPE_T5_CONFIG,
        "default_depth": DEFAULT_DEPTH,
        "machine": describe_machine(),
        "command": "python benchmarks/training_throughput.py",
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps({k: v for k, v in payload.items() if k.startswith("speedup")}, indent=2))


if __name__ == "__main__":
    torch.manual_seed(0)
    main()
