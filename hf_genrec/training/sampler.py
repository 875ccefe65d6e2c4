"""Evaluation order for `GenRecTrainer`: histories sorted by length for `evaluate`, the dataset's order for
`predict`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch.utils.data import Dataset, Sampler, SequentialSampler


class LengthSortedSampler(Sampler[int]):
    """Indices sorted by length, longest first (a stable sort: equal lengths keep their order); deterministic."""

    def __init__(self, lengths: Sequence[int]):
        self.order = np.argsort(-np.asarray(lengths), kind="stable").tolist()

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)


def eval_sampler(eval_dataset: Dataset | None, length_column: str, keep_order: bool) -> Sampler[int] | None:
    """A fixed evaluation order: by length (`LengthSortedSampler`) when ``eval_dataset`` has ``length_column`` and
    ``keep_order`` is off, else the dataset's own order; `None` for a dataset without a length.

    With ``train_sampling_strategy="group_by_length"`` (hf_genrec's default) Trainer groups evaluation batches by
    length in a shuffled order (transformers 5.x), so ``predict()``'s rows would not line up with the users. Metrics
    do not depend on the order, so `evaluate` keeps the speed of short padded batches with histories sorted by
    length (stable, no randomness); `predict` (``keep_order``) keeps the dataset's order.

    Trainer drops the columns the model does not take (``remove_unused_columns=True``, the default) before it asks
    for a sampler, so there the length column is gone and `evaluate` too runs in the dataset's order.
    """
    if eval_dataset is None or not hasattr(eval_dataset, "__len__"):
        return None
    if not keep_order and length_column in getattr(eval_dataset, "column_names", ()):
        return LengthSortedSampler(eval_dataset[length_column])
    return SequentialSampler(eval_dataset)
