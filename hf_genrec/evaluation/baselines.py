"""Non-generative baselines evaluated under the same protocol as the model."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np


class MostPopular:
    """Recommends the items seen most often in training, the same list for every user.

    Args:
        item_to_index (`Mapping[str, int]`): the catalogue; rankings are returned as its row indices.

    Example:

    ```python
    >>> from hf_genrec import MostPopular
    >>> popular = MostPopular({"a": 0, "b": 1, "c": 2}).fit([["a", "b"], ["b", "c"], ["b"]])
    >>> popular.predict(num_users=2, k=2).tolist()  # "b" (3 times), then "a" (first of the ties)
    [[1, 0], [1, 0]]
    ```
    """

    def __init__(self, item_to_index: Mapping[str, int]):
        self.item_to_index = item_to_index
        self.ranking: np.ndarray | None = None

    def fit(self, sequences: Iterable[Sequence[str]]) -> MostPopular:
        """Count item occurrences in the training interactions (ties broken by catalogue order)."""
        counts = Counter()
        for seq in sequences:
            counts.update(seq)
        unknown = [item for item in counts if item not in self.item_to_index]
        if unknown:
            raise ValueError(f"{len(unknown)} training items are not in the catalogue, e.g. {unknown[:3]}.")
        scores = np.zeros(len(self.item_to_index), dtype=np.int64)
        for item, count in counts.items():
            scores[self.item_to_index[item]] = count
        self.ranking = np.argsort(-scores, kind="stable")
        return self

    def predict(self, num_users: int, k: int, exclude: Sequence[Iterable[int]] | None = None) -> np.ndarray:
        """``[num_users, k]`` item indices, best first; ``exclude`` (one collection of item indices per user, e.g.
        the user's history) keeps those items out of that user's list (``-1`` fills a list the catalogue cannot)."""
        if self.ranking is None:
            raise RuntimeError("Call MostPopular.fit(...) before predict(...).")
        if exclude is None:
            return np.tile(self.ranking[:k], (num_users, 1))
        if len(exclude) != num_users:
            raise ValueError(f"exclude has {len(exclude)} entries for {num_users} users; give one per user.")
        out = np.full((num_users, k), -1, dtype=np.int64)
        for user, items in enumerate(exclude):
            banned = set(items)
            # the top k + |banned| of the ranking always hold k items that are not banned (when there are k)
            kept = [i for i in self.ranking[: k + len(banned)].tolist() if i not in banned][:k]
            out[user, : len(kept)] = kept
        return out
