"""Batches of history → next-item examples, padded to the longest row of each batch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

#: the eval-example column with the (longer) history a run's dense scorer reads, as item rows
SCORER_HISTORY = "scorer_history"


@dataclass
class GenRecCollator:
    """Pads ``input_ids`` with the pad token and ``labels`` with -100 to the longest row in the batch.

    Packed rows (from `hf_genrec.tokenize_sequences`: ``target_ends`` and a list of spellings as ``labels``) become
    ``labels`` ``[batch, n * width]`` (each target in a block of ``width`` tokens, missing targets all -100) and
    ``target_ends`` ``[batch, n]``, what `GenRecT5ForConditionalGeneration` trains on.

    A ``scorer_history`` column (eval rows of a hybrid run) passes through as a list of item-row lists.

    Dynamic padding matters here: most real histories are far shorter than the history cap, so padding every row to
    the cap wastes most of the encoder's work.

    Args:
        pad_token_id (`int`): the tokenizer's pad token id.
        label_pad_token_id (`int`, defaults to -100): ignored by the loss.
    """

    pad_token_id: int
    label_pad_token_id: int = -100

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if not features:
            raise ValueError("GenRecCollator got an empty batch.")
        batch_size = len(features)
        max_in = max(len(f["input_ids"]) for f in features)
        input_ids = torch.full((batch_size, max_in), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((batch_size, max_in), dtype=torch.long)
        for i, f in enumerate(features):
            row = torch.as_tensor(f["input_ids"], dtype=torch.long)
            input_ids[i, : len(row)] = row
            attention_mask[i, : len(row)] = 1
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if SCORER_HISTORY in features[0]:  # item rows a dense scorer reads (hf_genrec.add_scorer_history); unpadded
            batch[SCORER_HISTORY] = [list(f[SCORER_HISTORY]) for f in features]
        if "target_ends" in features[0]:
            batch.update(self._packed_targets(features))
        elif "labels" in features[0]:
            max_out = max(len(f["labels"]) for f in features)
            labels = torch.full((batch_size, max_out), self.label_pad_token_id, dtype=torch.long)
            for i, f in enumerate(features):
                row = torch.as_tensor(f["labels"], dtype=torch.long)
                labels[i, : len(row)] = row
            batch["labels"] = labels
        return batch

    def _packed_targets(self, features: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        n_targets = max(len(f["target_ends"]) for f in features)
        width = max(len(spelling) for f in features for spelling in f["labels"])
        labels = torch.full((len(features), n_targets, width), self.label_pad_token_id, dtype=torch.long)
        # a missing target reads one history token: it has no loss, and no query row is left with nothing to read
        target_ends = torch.ones((len(features), n_targets), dtype=torch.long)
        for i, f in enumerate(features):
            if len(f["labels"]) != len(f["target_ends"]):
                raise ValueError(
                    f"A packed row has {len(f['labels'])} target spellings but {len(f['target_ends'])} target_ends; "
                    "build packed rows with hf_genrec.tokenize_sequences."
                )
            target_ends[i, : len(f["target_ends"])] = torch.as_tensor(f["target_ends"], dtype=torch.long)
            for j, spelling in enumerate(f["labels"]):
                labels[i, j, : len(spelling)] = torch.as_tensor(spelling, dtype=torch.long)
        return {"labels": labels.view(len(features), -1), "target_ends": target_ends}
