"""Train a tiny recommender and/or evaluate a saved one with GenRecTrainer, in one process or under
``accelerate launch`` (the test runs both).

    accelerate launch --multi_gpu --num_processes 2 -m tests.accelerate_eval BUNDLE OUT.json --train [--decoder]
    python -m tests.accelerate_eval BUNDLE OUT.json

With ``--train``, the recipes' model and training at a tiny size (a causal-encoder T5 with item positions, recency
embeddings and a last-state start, dropout, packed rows, the trie-normalised loss, a time budget with its cosine
schedule) on walks over 30 items, then the bundle is saved to BUNDLE, and every process writes its weights and the
rows it trained on beside OUT.json (``OUT.json.rank<r>.safetensors`` / ``.json``); then (in both modes) the test users
are ranked with `predict` and `evaluate`. The test split has 23 users, so with 2 processes and batches of 4 the last
batches are uneven: Trainer pads the shards and ``gather_for_metrics`` must drop the padding, or users would be
counted twice. With ``--decoder`` the model is a tiny Llama (`build_causal_lm`) trained on causal rows instead.
"""

from __future__ import annotations

import json
import sys

import datasets
import torch
from safetensors.torch import save_file

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.models.causal_lm import build_causal_lm
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RandomIDs
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.arguments import GenRecTrainingArguments
from hf_genrec.training.examples import tokenize_causal_sequences, tokenize_examples, tokenize_sequences
from hf_genrec.training.trainer import GenRecTrainer

N_USERS = 23
TINY_T5 = dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=2, num_decoder_layers=2, dropout_rate=0.0)


def test_split(item_ids: list[str]) -> datasets.Dataset:
    """User u's history is 1 to 5 consecutive items starting at u; the target the next one (a walk the model
    learns). Lengths differ, so `evaluate`'s length-sorted order differs from the dataset's."""
    n, lengths = len(item_ids), [1 + u % 5 for u in range(N_USERS)]
    return datasets.Dataset.from_dict(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "history": [[item_ids[(u + t) % n] for t in range(lengths[u])] for u in range(N_USERS)],
            "target": [item_ids[(u + lengths[u]) % n] for u in range(N_USERS)],
        }
    )


def train_walks(item_ids: list[str]) -> list[list[str]]:
    """40 walks of 6 items, each a user's training sequence (packed: every next item a target)."""
    n = len(item_ids)
    return [[item_ids[(s * 7 + t) % n] for t in range(6)] for s in range(40)]


def arguments(output_dir: str, **overrides) -> GenRecTrainingArguments:
    settings = dict(
        per_device_eval_batch_size=4, num_beams=8, eval_ks=[1, 5], use_cpu=True, eval_strategy="no",
        save_strategy="no", load_best_model_at_end=False, disable_tqdm=True, seed=0,
    )  # fmt: skip
    return GenRecTrainingArguments(output_dir=output_dir, **{**settings, **overrides})


def train(bundle: str, output: str, decoder: bool = False) -> GenRecTrainer:
    items = [f"item{i}" for i in range(30)]
    # item positions with fixed-length IDs: histories are spelled without EOS
    item_tokenizer = ItemTokenizer(
        minimal_t5_tokenizer(), RandomIDs(n_levels=2, codebook_size=4, seed=0).fit(None, items), history_eos=False
    )
    args = arguments(
        f"{output}.trainer", num_train_epochs=12, per_device_train_batch_size=4, learning_rate=1e-2, logging_steps=5,
        constrained_loss=True, max_train_minutes=30, lr_scheduler_type="cosine", warmup_steps=1,
    )  # fmt: skip
    model = build_t5_model(
        item_tokenizer, seed=0, causal_encoder=True, item_positions=True, recency_embeddings=True,
        start_from_last_state=True, **{**TINY_T5, "dropout_rate": 0.1},
    )  # fmt: skip
    rows = tokenize_sequences(train_walks(items), item_tokenizer, max_history=5)
    if decoder:  # a decoder-only Llama on causal rows (every next item of a walk in one pass), not the T5
        model = build_causal_lm(item_tokenizer, "llama", seed=0, d_model=32, num_layers=2, num_heads=2, d_ff=64)
        rows = tokenize_causal_sequences(train_walks(items), item_tokenizer, max_history=5)
    trainer = GenRecTrainer(
        model=model,
        args=args,
        item_tokenizer=item_tokenizer,
        train_dataset=rows,
        genrec_config=GenRecConfig(num_beams=8, top_k=5),
    )
    # the rows each process trains on: the processes must see different ones for equal weights to mean shared gradients
    seen = []
    training_step = trainer.training_step

    def recording_step(model, inputs, *args, **kwargs):
        seen.append(inputs["input_ids"].tolist())
        return training_step(model, inputs, *args, **kwargs)

    trainer.training_step = recording_step
    initial = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.train()
    rank = trainer.args.process_index
    # each process's own weights, unwrapped from DDP, after the last optimiser step
    weights = {name: p.detach().contiguous() for name, p in trainer.model.named_parameters()}
    save_file(weights, f"{output}.rank{rank}.safetensors")
    moved = max((weights[name] - initial[name]).abs().max().item() for name in weights)
    with open(f"{output}.rank{rank}.json", "w") as f:
        json.dump({"batches": seen, "largest_change": moved}, f)
    trainer.save_model(bundle)
    return trainer


def main(bundle: str, output: str, do_train: bool = False, decoder: bool = False) -> None:
    torch.set_num_threads(1)
    if do_train:
        trainer = train(bundle, output, decoder)
        item_tokenizer = trainer.item_tokenizer
    else:
        recommender = GenerativeRecommender.from_pretrained(bundle)
        item_tokenizer = recommender.item_tokenizer
        # the loss as training computed it: normalised over the tokens the trie allows (constrained_loss)
        args = arguments(f"{output}.trainer", constrained_loss=True)
        trainer = GenRecTrainer(model=recommender.model, args=args, item_tokenizer=item_tokenizer)
    test = tokenize_examples(test_split(item_tokenizer.item_ids), item_tokenizer)
    prediction = trainer.predict(test, metric_key_prefix="test")
    evaluated = trainer.evaluate(test, metric_key_prefix="test")
    if trainer.is_world_process_zero():
        kept = lambda metrics: {k: v for k, v in metrics.items() if k.split("_")[-1] not in ("runtime", "second")}  # noqa: E731
        result = {
            "world_size": trainer.args.world_size,
            "metrics": kept(prediction.metrics),
            "evaluate_metrics": kept(evaluated),
            "train_losses": [e["loss"] for e in trainer.state.log_history if "loss" in e],
            "predictions": prediction.predictions.tolist(),
            "labels": prediction.label_ids.tolist(),
            "expected_labels": [item_tokenizer.item_ids.index(t) for t in test["target"]],
        }
        with open(output, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], do_train="--train" in sys.argv[3:], decoder="--decoder" in sys.argv[3:])
