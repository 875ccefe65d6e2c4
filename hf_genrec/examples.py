"""Turns leave-one-out rows (``history`` → ``target`` item ids) into model inputs."""

from __future__ import annotations

import datasets

from .tokenization import ItemTokenizer


def tokenize_examples(
    split: datasets.Dataset, item_tokenizer: ItemTokenizer, max_history: int | None = 20
) -> datasets.Dataset:
    """Adds ``input_ids`` (history spelling + EOS), ``labels`` (target spelling + EOS) and ``length``.

    Unknown item ids raise (naming the id) rather than being skipped, so a history is never silently shortened.
    ``length`` feeds the length-grouped sampler (``train_sampling_strategy="group_by_length"``).
    """
    for column in ("history", "target"):
        if column not in split.column_names:
            raise ValueError(
                f"The split has no `{column}` column (columns: {split.column_names}). Build splits with "
                "`hf_genrec.data.leave_one_out`, or name your columns `history` (list of item ids) and `target`."
            )

    def encode(batch):
        input_ids = [item_tokenizer.encode_history(h, max_items=max_history) for h in batch["history"]]
        return {
            "input_ids": input_ids,
            "labels": [item_tokenizer.encode_target(t) for t in batch["target"]],
            "length": [len(x) for x in input_ids],
        }

    return split.map(encode, batched=True, batch_size=2048, desc="Tokenizing examples")
