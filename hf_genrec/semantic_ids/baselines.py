"""The two baselines every semantic-ID paper compares against: random codes and atomic (one token per item) IDs."""

from __future__ import annotations

import time

import numpy as np

from ._validation import check_codebook_sizes, check_collision_option, check_item_ids
from .base import ItemIDScheme
from .ids import SemanticIDs, build_semantic_ids


def _n_rows(features, item_ids) -> int:
    """Random and atomic IDs ignore the features; they only need to know how many items there are."""
    if features is None:
        return len(item_ids)
    n = len(features)
    if n != len(item_ids):
        raise ValueError(
            f"features has {n} rows but item_ids has {len(item_ids)} entries; they must be aligned row by row "
            "(random and atomic IDs ignore the features, so you may also pass features=None)."
        )
    return n


class RandomIDs(ItemIDScheme):
    """Uniformly random codes: IDs with the same shape as semantic IDs but no meaning in their prefixes.

    The control for every semantic-ID scheme: if semantic codes do not beat these, the model is not using what the
    codes share. Items that draw the same tuple get TIGER's collision level.

    Args:
        n_levels, codebook_size: shape of the codes (as for RQ-VAE).
        seed: the same seed gives the same codes.
        add_collision_level: as for RQ-VAE (default ``True``: every ID has the same length).
    """

    scheme = "random"
    _config_keys = ("n_levels", "codebook_size", "seed", "add_collision_level", "n_encoded")

    def __init__(
        self,
        n_levels: int = 3,
        codebook_size: int | list[int] = 256,
        seed: int = 0,
        add_collision_level: bool | str | None = True,
        n_encoded: int = 0,
    ):
        self.codebook_size = check_codebook_sizes(codebook_size, n_levels)
        self.n_levels = int(n_levels)
        self.seed = int(seed)
        self.add_collision_level = check_collision_option(add_collision_level)
        #: items given codes so far (fit + encode); seeds the next draw so that encode is reproducible
        self.n_encoded = int(n_encoded)

    @property
    def codebook_sizes(self) -> list[int]:
        return self.codebook_size

    @property
    def is_fitted(self) -> bool:
        return self.n_encoded > 0

    def _draw(self, n: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, self.n_encoded])
        codes = np.stack([rng.integers(size, size=n) for size in self.codebook_sizes], axis=1)
        self.n_encoded += n
        return codes.astype(np.int64)

    def fit(self, features, item_ids) -> SemanticIDs:
        """Draw every item's codes; ``features`` are ignored (pass ``None``) apart from their row count."""
        start = time.perf_counter()
        item_ids = check_item_ids(item_ids)
        n = _n_rows(features, item_ids)
        space = int(np.prod(np.asarray(self.codebook_sizes, dtype=np.float64)))
        if self.add_collision_level is False and space < n:
            raise ValueError(
                f"{self.n_levels} levels of {self.codebook_sizes} codes give {space} distinct IDs, fewer than the "
                f"{n} items, so some must collide; use more levels/codes or add_collision_level=True."
            )
        self.n_encoded = 0
        return build_semantic_ids(
            self._draw(n),
            item_ids,
            scheme=self.scheme,
            codebook_sizes=self.codebook_sizes,
            add_collision_level=self.add_collision_level,
            extra_diagnostics={"fit_seconds": time.perf_counter() - start, "quantizer": {"scheme": self.scheme}},
        )

    def encode(self, features) -> np.ndarray:
        """Fresh random codes for ``len(features)`` new items (reproducible from the seed and the items so far)."""
        self._require_fitted()
        return self._draw(len(features))

    def _state(self) -> dict[str, np.ndarray]:
        return {"n_encoded": np.asarray([self.n_encoded], dtype=np.int64)} if self.is_fitted else {}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        self.n_encoded = int(tensors["n_encoded"][0])


class AtomicIDs(ItemIDScheme):
    """One new token per item (SASRec/BERT4Rec-style item ids, as a one-level ID): no sharing between items at all.

    The output layer then has one row per item, as in a classic next-item classifier.
    """

    scheme = "atomic"
    _config_keys = ("n_encoded",)

    def __init__(self, n_encoded: int = 0):
        self.n_encoded = int(n_encoded)

    @property
    def is_fitted(self) -> bool:
        return self.n_encoded > 0

    def fit(self, features, item_ids) -> SemanticIDs:
        """Item ``i`` gets code ``i``; ``features`` are ignored (pass ``None``) apart from their row count."""
        start = time.perf_counter()
        item_ids = check_item_ids(item_ids)
        n = _n_rows(features, item_ids)
        self.n_encoded = n
        return build_semantic_ids(
            np.arange(n, dtype=np.int64)[:, None],
            item_ids,
            scheme=self.scheme,
            codebook_sizes=[n],
            add_collision_level=False,
            extra_diagnostics={"fit_seconds": time.perf_counter() - start, "quantizer": {"scheme": self.scheme}},
        )

    def encode(self, features) -> np.ndarray:
        """The next unused codes, one per new item (the tokenizer needs one new token for each)."""
        self._require_fitted()
        n = len(features)
        codes = np.arange(self.n_encoded, self.n_encoded + n, dtype=np.int64)[:, None]
        self.n_encoded += n
        return codes

    def _state(self) -> dict[str, np.ndarray]:
        return {"n_encoded": np.asarray([self.n_encoded], dtype=np.int64)} if self.is_fitted else {}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        self.n_encoded = int(tensors["n_encoded"][0])
