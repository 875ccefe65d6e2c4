"""The living catalogue of a `GenerativeRecommender`: items added and retired after training, without retraining."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np

from ..decoding.fusion import reindex_items
from ..decoding.generate import build_trie_index
from ..decoding.trie import TrieIndex
from ..tokenization import ItemTokenizer
from .catalog import IF_FULL_CHOICES, NewItemIndex, assign_codes, check_new_item_ids, grow, shrink

logger = logging.getLogger(__name__)


class LivingCatalogMixin:
    """Adds items to, and retires items from, a recommender's catalogue (`hf_genrec.serving.catalog`); the
    cold-start mode of `recommend` ranks the added ones. Mixed into `GenerativeRecommender`."""

    @property
    def new_item_trie_index(self) -> TrieIndex | None:
        """The trie of the items added since training only (``None`` when there are none), for the cold-start mode."""
        if self._new_trie_index is None and self.catalog.new_items:
            rows = self.item_tokenizer.index_of(self.catalog.new_items, context="catalogue log")
            self._new_trie_index = build_trie_index(self.item_tokenizer, rows=rows)
        return self._new_trie_index

    @property
    def new_item_index(self) -> NewItemIndex | None:
        """The items added since training, bucketed by code prefix, for the cold-start mode (``None``: none)."""
        if self._new_item_index is None and self.catalog.new_items:
            semantic_ids = self.item_tokenizer.semantic_ids
            levels = semantic_ids.n_levels - int(semantic_ids.has_collision_level)
            rows = self.item_tokenizer.index_of(self.catalog.new_items, context="catalogue log")
            self._new_item_index = NewItemIndex(self.catalog.new_items, semantic_ids.codes[rows, :levels])
        return self._new_item_index

    def retired_among(self, item_ids: Sequence[str]) -> list[str]:
        """Those of ``item_ids`` that `remove_items` retired (for errors about ids no longer in the catalogue)."""
        retired = {entry["item_id"] for entry in self.catalog.retired}
        return [item for item in item_ids if item in retired]

    @property
    def new_item_ids(self) -> list[str]:
        """Items added with `add_items` since training (the candidates of the cold-start mode), oldest first."""
        return list(self.catalog.new_items)

    def add_items(
        self,
        item_ids: Sequence[str],
        features=None,
        *,
        codes=None,
        if_full: str = "error",
        titles: Mapping[str, str] | None = None,
    ) -> dict[str, tuple[int, ...]]:
        """Add items to the catalogue without retraining: they can be recommended at once.

        The new items are encoded by the bundle's fitted quantiser (or take the ``codes`` you give), get the smallest
        free collision code under their prefix (never one of a retired item), and join the item map and the
        constraint index. No token is added; the model is unchanged. Save the recommender to keep the grown
        catalogue.

        Args:
            item_ids: ids of the new items; none may be in the catalogue already.
            features: float ``[len(item_ids), d]``, the same kind of features the quantiser was fitted on (e.g. the
                same text model's embeddings of the same text template).
            codes: instead of ``features``, int ``[len(item_ids), levels]`` quantiser codes (without the collision
                level).
            if_full: ``"error"`` (default) raises when an item's prefix has no free collision code left;
                ``"skip"`` adds the others, warns, and leaves those out (absent from the returned dict).
            titles: ``{item id: title}`` of new items, joined to ``item_titles`` for pages that show the items; an
                item added without one has no title.

        Returns:
            The full semantic ID of each added item, ``{item_id: (c0, c1, ..., collision)}``.
        """
        if if_full not in IF_FULL_CHOICES:
            raise ValueError(f"if_full must be one of {IF_FULL_CHOICES}, got {if_full!r}.")
        semantic_ids = self.item_tokenizer.semantic_ids
        ids = check_new_item_ids(self.item_tokenizer.item_to_index, item_ids)
        if (features is None) == (codes is None):
            raise ValueError("Pass exactly one of `features` (encoded by the quantiser) or `codes`.")
        if codes is None:
            base = self._encode(features, len(ids))
        else:
            base = np.asarray(codes)
            if base.ndim != 2 or base.shape[0] != len(ids):
                raise ValueError(
                    f"codes must be int [n_items, levels] with one row per item id ({len(ids)}), got shape "
                    f"{tuple(base.shape)}."
                )
        retired = self.catalog.retired_codes(semantic_ids.n_levels)
        full, placed = assign_codes(semantic_ids, base, retired, item_ids=ids, if_full=if_full)
        added = [item for item, ok in zip(ids, placed.tolist()) if ok]
        if added:
            self._set_item_tokenizer(self.item_tokenizer.with_appended_items(grow(semantic_ids, added, full)))
            self.catalog.new_items.extend(added)
            given = {item: str(titles[item]) for item in added if titles and titles.get(item)}
            if given:
                self.item_titles = {**(self.item_titles or {}), **given}
        return {item: tuple(int(c) for c in row if c >= 0) for item, row in zip(added, full.tolist())}

    def remove_items(self, item_ids: Sequence[str]) -> None:
        """Retire items: they are never generated again, and their semantic IDs are never given to another item.

        Their code tuples are kept in ``catalog.json``; histories that mention a removed item raise as for any
        unknown id.
        """
        if isinstance(item_ids, str | bytes):
            raise TypeError("item_ids must be a list of ids, not one string; for one item pass `[item_id]`.")
        ids = [str(item) for item in item_ids]
        if not ids:
            raise ValueError("item_ids is empty: there is nothing to remove.")
        lookup = self.item_tokenizer.item_to_index
        unknown = [item for item in ids if item not in lookup]
        if unknown:
            was = self.retired_among(unknown)
            raise ValueError(
                f"{len(unknown)} of the items to remove are not in the catalogue (first: {unknown[:5]})"
                + (f"; {was[:5]} were removed before" if was else "")
                + ". Nothing was removed."
            )
        if len(set(ids)) != len(ids):
            raise ValueError("item_ids repeats ids; list each item to remove once.")
        rows = np.fromiter((lookup[item] for item in ids), dtype=np.int64, count=len(ids))
        if len(rows) >= self.item_tokenizer.num_items:
            raise ValueError("Removing every item would leave an empty catalogue; keep at least one item.")
        semantic_ids = self.item_tokenizer.semantic_ids
        keep = np.ones(semantic_ids.n_items, dtype=bool)
        keep[rows] = False
        self.catalog.retired.extend(
            {"item_id": item, "codes": [int(c) for c in semantic_ids.codes[row] if c >= 0]}
            for item, row in zip(ids, rows.tolist())
        )
        gone = set(ids)
        self.catalog.new_items = [item for item in self.catalog.new_items if item not in gone]
        scored = [] if self._scorer is None else self.item_ids[: self._scorer.config.num_items]
        self._set_item_tokenizer(self.item_tokenizer.with_rows_kept(shrink(semantic_ids, keep), keep))
        if self._scorer is not None:
            # the catalogue's rows close up over the removed items; the scorer's must too (its items come first)
            self._scorer = reindex_items(self._scorer, scored, [item for item in scored if item not in gone])

    def _encode(self, features, n_items: int) -> np.ndarray:
        if self.quantizer is None:
            raise ValueError(
                "This recommender has no quantiser (no `quantizer/` in its bundle), so it cannot encode features; "
                "pass `codes=` computed with the scheme the IDs were made with."
            )
        array = np.asarray(features)
        if array.ndim != 2 or array.shape[0] != n_items:
            raise ValueError(
                f"features must be [n_items, d] with one row per item id ({n_items}), got shape {tuple(array.shape)}."
            )
        config = self.quantizer.get_config()
        dim = config.get("dim") or config.get("input_dim")
        if dim is not None and array.shape[1] != dim:
            raise ValueError(
                f"features have width {array.shape[1]} but the quantiser ({self.quantizer.scheme}) was fitted on "
                f"width {dim}: compute them the way the catalogue's features were made (same text model and "
                "template, or the same feature pipeline). If the catalogue's IDs came from collaborative features (the "
                "default recipe), give new items features from the histories they appear in "
                "(features_from_sequences; `hf-genrec catalog add --histories FILE`), or codes from their text through "
                "a content map (fit_content_map; the recipe's `content_map: true`)."
            )
        return np.asarray(self.quantizer.encode(array))

    def _set_item_tokenizer(self, item_tokenizer: ItemTokenizer) -> None:
        if len(item_tokenizer) != len(self.item_tokenizer):  # a guard: updates only use existing tokens
            raise RuntimeError("The catalogue update changed the tokenizer's vocabulary; this is a bug in hf_genrec.")
        self.item_tokenizer = item_tokenizer
        self._trie_index = None
        self._spellings = None
        self._item_paths = None
        self._new_trie_index = None
        self._new_item_index = None

    def _new_item_exclusions(self, exclude: list[list[int]] | None) -> list[list[int]] | None:
        """``exclude`` for the search over the new items alone: a history holding every new item excludes nothing
        there (that search would have nothing left); none of its items is inserted anyway."""
        if exclude is None:
            return None
        new_rows = set(self.item_tokenizer.index_of(self.catalog.new_items).tolist())
        return [[] if new_rows <= set(rows) else rows for rows in exclude]


def insert_new_items(
    ranked: list[tuple[str, float]],
    candidates: list[tuple[str, float]],
    new_items: set[str],
    k: int,
    slots: int,
) -> list[tuple[str, float]]:
    """The top ``k`` of ``ranked`` with at least ``slots`` new items: ``candidates`` (new items, best first) fill the
    last places, replacing the lowest-ranked items that are not new, as far as the candidates go."""
    ranked = list(ranked[:k])
    present = {item for item, _ in ranked}
    missing = slots - sum(item in new_items for item in present)
    extra = [c for c in candidates if c[0] not in present][: max(missing, 0)]
    if not extra:
        return ranked
    to_drop = max(0, len(ranked) + len(extra) - k)
    old = [item for item, _ in ranked if item not in new_items]
    dropped = set(old[len(old) - to_drop :]) if to_drop else set()
    return [r for r in ranked if r[0] not in dropped] + extra
