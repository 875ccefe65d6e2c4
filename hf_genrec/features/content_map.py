"""`ContentMap`: semantic-ID codes for items that have content but no interactions yet, voted by look-alikes.

The default recipe builds semantic IDs from collaborative vectors (`hf_genrec.features.collaborative`), which exist only for
items people have used. An item with a title and a description but no interactions has none, so the quantiser cannot
place it, and `GenerativeRecommender.features_from_sequences` needs interactions too. A `ContentMap` keeps the
catalogue's content features (text embeddings, TF-IDF attribute vectors for catalogues without text, or any array
you compute the same way for new items) beside the
catalogue items' codes. A new item takes the codes its ``n_neighbors`` most similar catalogue items (cosine of
content) agree on, level by level: the first code with the most similarity-weighted votes, then the second code
among the neighbours that share that first code, and so on. Its ID lands beside the IDs of items that read alike.

Why a vote and not features: on Amazon Beauty (10% of items held out, RQ-KMeans 3x256 over collaborative vectors,
all-MiniLM-L6-v2 text), 10 neighbours' vote gave 18.7% of held-out items the first code their interactions give them
(chance: 0.8%) and 4.1% the first two; the mean of their decoded features did as well on those (18.0%, 3.8%) but put
10% of the items on one crowded prefix near the catalogue's centre (the vote: under 2%), and a ridge regression from
text to features gave 8-11% and 0.3-2%. A vote also needs no quantiser, so it works for any fixed-length IDs.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from . import item_features
from .item_features import AttributeEncoder

logger = logging.getLogger(__name__)

CONTENT_MAP_NAME = "content_map.safetensors"
DEFAULT_NEIGHBORS = 10


def _check_content(array, name: str = "content", width: int | None = None, rows: int | None = None) -> np.ndarray:
    matrix = np.asarray(array)
    if matrix.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n_items, d], got shape {tuple(matrix.shape)}.")
    if not np.issubdtype(matrix.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {matrix.dtype}.")
    if rows is not None and matrix.shape[0] != rows:
        raise ValueError(f"{name} has {matrix.shape[0]} rows, expected one per item ({rows}).")
    if width is not None and matrix.shape[1] != width:
        raise ValueError(
            f"{name} has width {matrix.shape[1]} but the content map was fitted on width {width}: compute the "
            "content features the way the catalogue's were (same text model and template, or the same pipeline)."
        )
    matrix = matrix.astype(np.float32)
    bad = ~np.isfinite(matrix).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{name} has NaN/inf values in {int(bad.sum())} rows (first: {np.flatnonzero(bad)[:5].tolist()})."
        )
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    if (norms == 0).any():
        zero = np.flatnonzero(norms[:, 0] == 0)
        raise ValueError(
            f"{name} has all-zero rows ({len(zero)}, first: {zero[:5].tolist()}): they have no direction to compare."
        )
    return matrix / norms


def _check_codes(array, rows: int) -> np.ndarray:
    codes = np.asarray(array)
    if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"codes must be an int array [n_items, levels], got {codes.dtype} of shape {codes.shape}.")
    if len(codes) != rows:
        raise ValueError(f"codes has {len(codes)} rows, expected one per item ({rows}).")
    if (codes < 0).any():
        raise ValueError(
            "codes hold negative values (padding of variable-length IDs): a content map needs fixed-length IDs."
        )
    return codes.astype(np.int64)


class ContentMap:
    """Catalogue content and codes side by side, to give new items codes by content (see the module docstring).

    Args:
        content (`np.ndarray`): ``[n_items, d]`` content features of the catalogue items (compared by cosine; any
            length).
        codes (`np.ndarray`): int ``[n_items, levels]`` those items' codes (without a collision level).
        n_neighbors (`int`): how many of the most similar catalogue items vote.
        text_model (`str`, *optional*): the sentence-transformers model that embedded the catalogue's text, so new
            items are embedded the same way; ``None`` when the map holds your own content arrays.
        template (`str`, *optional*): the item-text template of `hf_genrec.features.item_features.item_text` (``None``: default).
        attributes (`AttributeEncoder`, *optional*): instead of a text model, the attribute encoder that embedded the
            catalogue (its vocabulary, idf and projection), so new items with attributes are embedded the same way.
        diagnostics (`dict`, *optional*): facts about the fit (items, leave-one-out agreement).
    """

    def __init__(
        self,
        content: np.ndarray,
        codes: np.ndarray,
        *,
        n_neighbors: int = DEFAULT_NEIGHBORS,
        text_model: str | None = None,
        template: str | None = None,
        attributes: AttributeEncoder | None = None,
        diagnostics: dict | None = None,
    ):
        if text_model is not None and attributes is not None:
            raise ValueError("A content map embeds items one way: give text_model or attributes, not both.")
        self.content = _check_content(content)
        self.codes = _check_codes(codes, len(self.content))
        if not isinstance(n_neighbors, int | np.integer) or n_neighbors < 1:
            raise ValueError(f"n_neighbors must be a positive integer, got {n_neighbors!r}.")
        self.n_neighbors = int(n_neighbors)
        self.text_model = text_model
        self.template = template
        self.attributes = attributes
        if attributes is not None and attributes.output_dim != self.content.shape[1]:
            raise ValueError(
                f"The attribute encoder gives {attributes.output_dim}-dimensional features but the content has "
                f"width {self.content.shape[1]}: the content must be that encoder's transform of the catalogue."
            )
        self.diagnostics = dict(diagnostics or {})

    @property
    def input_dim(self) -> int:
        return self.content.shape[1]

    @property
    def n_levels(self) -> int:
        return self.codes.shape[1]

    def __len__(self) -> int:
        return len(self.content)

    @classmethod
    def fit(
        cls,
        content,
        codes,
        *,
        n_neighbors: int = DEFAULT_NEIGHBORS,
        text_model: str | None = None,
        template: str | None = None,
        attributes: AttributeEncoder | None = None,
    ) -> ContentMap:
        """Build the map from catalogue items and measure it: ``diagnostics`` holds, for each level, the share of
        items whose codes up to that level their neighbours' vote gives back (each item left out of its own vote),
        beside ``chance_first_code`` (the share two random items have the same first code): near chance, the
        content says little about where items sit."""
        content_map = cls(
            content, codes, n_neighbors=n_neighbors, text_model=text_model, template=template, attributes=attributes
        )
        if len(content_map) <= n_neighbors:
            raise ValueError(f"The catalogue has {len(content_map)} items; n_neighbors={n_neighbors} needs more.")
        voted = content_map._vote(content_map.content, leave_out_self=True)
        agree = np.cumprod(voted == content_map.codes, axis=1).mean(axis=0)
        share = np.unique(content_map.codes[:, 0], return_counts=True)[1] / len(content_map)
        content_map.diagnostics = {
            "items": len(content_map),
            "loo_agreement": {f"first_{n + 1}": float(a) for n, a in enumerate(agree)},
            "chance_first_code": float((share**2).sum()),
        }
        logger.info(
            "Content map of %d items, %d neighbours: leave-one-out, the vote gives back %.1f%% of first codes "
            "(chance %.1f%%).",
            len(content_map),
            n_neighbors,
            100 * agree[0],
            100 * content_map.diagnostics["chance_first_code"],
        )
        return content_map

    def predict(self, content) -> np.ndarray:
        """Codes int64 ``[n, levels]`` for items with content features ``[n, input_dim]``."""
        return self._vote(_check_content(content, width=self.input_dim))

    def _vote(self, x: np.ndarray, leave_out_self: bool = False, batch_size: int = 512) -> np.ndarray:
        k = min(self.n_neighbors, len(self) - int(leave_out_self))
        out = np.empty((len(x), self.n_levels), dtype=np.int64)
        for begin in range(0, len(x), batch_size):
            sim = x[begin : begin + batch_size] @ self.content.T
            n = len(sim)
            if leave_out_self:
                sim[np.arange(n), np.arange(begin, begin + n)] = -np.inf
            top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
            top_sim = np.take_along_axis(sim, top, axis=1)
            order = np.argsort(-top_sim, axis=1, kind="stable")  # most similar first: ties go to the nearest
            top, weight = np.take_along_axis(top, order, axis=1), np.take_along_axis(top_sim, order, axis=1)
            weight = weight.clip(min=0)
            weight[weight.sum(1) == 0] = 1.0  # nothing similar at all: every neighbour votes the same
            codes = self.codes[top]  # [n, k, levels]
            alive = np.ones((n, k), dtype=bool)
            for level in range(self.n_levels):
                level_codes = codes[:, :, level]
                same = level_codes[:, :, None] == level_codes[:, None, :]
                support = (same * (weight * alive)[:, None, :]).sum(axis=2)
                support[~alive] = -1.0
                winner = level_codes[np.arange(n), support.argmax(axis=1)]
                out[begin : begin + n, level] = winner
                alive &= level_codes == winner[:, None]
        return out

    def embed(self, items, **kwargs) -> np.ndarray:
        """Content features of ``items`` (an item table: rows with the catalogue's text or attribute fields) the way
        the map's catalogue was embedded: `hf_genrec.features.item_features.text_features` with the same model and template, or the
        same `hf_genrec.features.item_features.AttributeEncoder`."""
        if self.attributes is not None:
            return self.attributes.transform(items)
        if self.text_model is None:
            raise ValueError(
                "This content map holds your own content arrays, not item text or attribute embeddings, so it cannot "
                "embed items itself: pass content=<array [n_items, d]> computed the way the catalogue's was."
            )
        # looked up when called, so that a replaced text_features (a test's offline fake) is the one used
        return item_features.text_features(items, model_name_or_path=self.text_model, template=self.template, **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``content_map.safetensors`` (content as float16: only its directions are compared)."""
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        metadata = {
            "n_neighbors": str(self.n_neighbors),
            "text_model": json.dumps(self.text_model),
            "template": json.dumps(self.template),
            "diagnostics": json.dumps(self.diagnostics),
        }
        tensors = {"content": self.content.astype(np.float16), "codes": np.ascontiguousarray(self.codes)}
        if self.attributes is not None:
            metadata["attribute_tokens"] = json.dumps(self.attributes.tokens)
            tensors["attribute_idf"] = self.attributes.idf
            if self.attributes.basis is not None:
                tensors["attribute_basis"] = np.ascontiguousarray(self.attributes.basis)
        save_file(tensors, str(Path(save_directory) / CONTENT_MAP_NAME), metadata=metadata)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ContentMap:
        path = Path(directory) / CONTENT_MAP_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: this bundle holds no content map (fit one with fit_content_map)."
            )
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        missing = {"content", "codes"} - set(tensors)
        missing |= {"n_neighbors", "text_model", "template"} - set(metadata)
        if "attribute_tokens" in metadata and "attribute_idf" not in tensors:
            missing.add("attribute_idf")
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}: it was not written by ContentMap.")
        attributes = None
        if "attribute_tokens" in metadata:
            attributes = AttributeEncoder(
                json.loads(metadata["attribute_tokens"]), tensors["attribute_idf"], tensors.get("attribute_basis")
            )
        return cls(
            tensors["content"],
            tensors["codes"],
            n_neighbors=int(metadata["n_neighbors"]),
            text_model=json.loads(metadata["text_model"]),
            template=json.loads(metadata["template"]),
            attributes=attributes,
            diagnostics=json.loads(metadata.get("diagnostics", "{}")),
        )
