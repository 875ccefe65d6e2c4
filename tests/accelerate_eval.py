"""Evaluate a saved bundle with GenRecTrainer, in one process or under ``accelerate launch`` (the test runs both).

    accelerate launch --num_processes 2 --cpu -m tests.accelerate_eval BUNDLE OUT.json
    python -m tests.accelerate_eval BUNDLE OUT.json

The test split has 23 users, so with 2 processes and batches of 4 the last batches are uneven: Trainer pads the
shards and ``gather_for_metrics`` must drop the padding, or users would be counted twice.
"""

from __future__ import annotations

import json
import sys

import datasets
import torch

from hf_genrec.examples import tokenize_examples
from hf_genrec.recommender import GenerativeRecommender
from hf_genrec.trainer import GenRecTrainer, GenRecTrainingArguments

N_USERS = 23


def test_split(item_ids: list[str]) -> datasets.Dataset:
    """User u's history is 1 to 5 consecutive items starting at u; the target the next one (a walk the model
    learnt). Lengths differ, so `evaluate`'s length-sorted order differs from the dataset's."""
    n, lengths = len(item_ids), [1 + u % 5 for u in range(N_USERS)]
    return datasets.Dataset.from_dict(
        {
            "user_id": [f"u{u}" for u in range(N_USERS)],
            "history": [[item_ids[(u + t) % n] for t in range(lengths[u])] for u in range(N_USERS)],
            "target": [item_ids[(u + lengths[u]) % n] for u in range(N_USERS)],
        }
    )


def main(bundle: str, output: str) -> None:
    torch.set_num_threads(1)
    recommender = GenerativeRecommender.from_pretrained(bundle)
    item_tokenizer = recommender.item_tokenizer
    test = tokenize_examples(test_split(item_tokenizer.item_ids), item_tokenizer)
    args = GenRecTrainingArguments(
        output_dir=f"{output}.trainer", per_device_eval_batch_size=4, num_beams=8, eval_ks=[1, 5], use_cpu=True,
        eval_strategy="no", save_strategy="no", load_best_model_at_end=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = GenRecTrainer(model=recommender.model, args=args, item_tokenizer=item_tokenizer)
    prediction = trainer.predict(test, metric_key_prefix="test")
    evaluated = trainer.evaluate(test, metric_key_prefix="test")
    if trainer.is_world_process_zero():
        result = {
            "world_size": trainer.args.world_size,
            "metrics": {k: v for k, v in prediction.metrics.items() if k.split("_")[-1] not in ("runtime", "second")},
            "evaluate_metrics": {k: v for k, v in evaluated.items() if k.split("_")[-1] not in ("runtime", "second")},
            "predictions": prediction.predictions.tolist(),
            "labels": prediction.label_ids.tolist(),
            "expected_labels": [item_tokenizer.item_ids.index(t) for t in test["target"]],
        }
        with open(output, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
