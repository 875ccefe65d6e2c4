"""`GenerativeRecommender`: one object that holds the model, the item spellings and the trie, and recommends."""

from __future__ import annotations

import copy
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList, PreTrainedModel

from ..bundle.catalog_log import CatalogLog
from ..bundle.config import GenRecConfig
from ..bundle.hub import push_folder
from ..bundle.io import BundleContents, load_bundle, save_bundle
from ..bundle.model_card import GenRecCardData
from ..decoding.fusion import FusionConfig, check_scorer_items, fusion_processors, reindex_items
from ..decoding.generate import build_trie_index, generate_items, item_spellings
from ..decoding.trie import TrieIndex
from ..features.collaborative import fold_in_features
from ..features.content_map import ContentMap
from ..features.item_features import DEFAULT_TEXT_MODEL
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel
from ..semantic_ids import ItemIDScheme
from ..tokenization import ItemTokenizer
from ..training.collator import GenRecCollator
from .catalog import IF_FULL_CHOICES, NewItemIndex, assign_codes, check_new_item_ids, grow, shrink

logger = logging.getLogger(__name__)


class GenerativeRecommender:
    """A trained generative recommender, ready to serve.

    Args:
        model (`PreTrainedModel`): an encoder-decoder (`T5ForConditionalGeneration`).
        item_tokenizer (`ItemTokenizer`): the catalogue and its semantic-ID spellings.
        config (`GenRecConfig`, *optional*): beams, default K and history cap.
        quantizer (`ItemIDScheme`, *optional*): the fitted ID scheme, saved with the bundle so new items can be
            given IDs the same way.
        card_data (`GenRecCardData`, *optional*): metrics and training facts for the model card.
        catalog (`CatalogLog`, *optional*): items added and retired since training (``catalog.json``).
        transitions (`ItemTransitions`, *optional*): successor counts of the training sequences, for the fused
            prior of ``config.fusion.transition_weight`` (``transitions.safetensors``).
        content_map (`ContentMap`, *optional*): item content → codes, for new items with no interactions
            (``content_map.safetensors``; see `fit_content_map`).
        scorer (`SASRecModel`, *optional*): a dense next-item scorer over the same item rows, fused into the beam
            search with ``config.fusion.scorer_weight`` (the hybrid recommender, `hf_genrec.decoding.fusion`; ``scorer/``).

    Example:
    ```python
    >>> rec = GenerativeRecommender.from_pretrained("outputs/ml-100k")
    >>> rec.recommend([["50", "181", "100"]], k=3)  # per history: (item id, log-probability), best first
    [[('...', -...), ('...', -...), ('...', -...)]]
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        item_tokenizer: ItemTokenizer,
        config: GenRecConfig | None = None,
        quantizer: ItemIDScheme | None = None,
        card_data: GenRecCardData | None = None,
        catalog: CatalogLog | None = None,
        transitions: ItemTransitions | None = None,
        content_map: ContentMap | None = None,
        scorer: SASRecModel | None = None,
    ):
        self.model = model.eval()
        #: the models whose next-token distributions are averaged (`ensemble`); ``[model]`` for one model
        self.models: list[PreTrainedModel] = [self.model]
        self.transitions = transitions
        self.content_map = content_map
        self.item_tokenizer = item_tokenizer
        self.config = config or GenRecConfig()
        self.quantizer = quantizer
        self.card_data = card_data or GenRecCardData(dataset=self.config.dataset)
        self.catalog = catalog or CatalogLog()
        self.scorer = scorer
        self._trie_index: TrieIndex | None = None
        self._spellings: torch.Tensor | None = None
        self._item_paths: torch.Tensor | None = None
        self._new_trie_index: TrieIndex | None = None
        self._new_item_index: NewItemIndex | None = None
        self._collator = GenRecCollator(pad_token_id=item_tokenizer.pad_token_id)

    @property
    def scorer(self) -> SASRecModel | None:
        """The dense next-item scorer fused into the search with ``config.fusion.scorer_weight`` (`None`: none)."""
        return self._scorer

    @scorer.setter
    def scorer(self, scorer: SASRecModel | None) -> None:
        if scorer is not None:
            check_scorer_items(scorer, self.item_tokenizer.num_items, len(self.catalog.new_items))
            scorer.eval()
        self._scorer = scorer

    @classmethod
    def ensemble(cls, members: Sequence[GenerativeRecommender]) -> GenerativeRecommender:
        """One recommender that decodes with the mean of several models' next-token distributions.

        The members must share one catalogue and one spelling of it (e.g. runs of one recipe with different seeds
        over the same semantic IDs, or checkpoints of one run); each keeps its own weights and architecture. The
        ensemble uses the first member's settings (beams, history cap, fusion, catalogue log, transitions), and
        `recommend` runs every member's decoder at each step of one beam search (`shared_beam_search`), so it costs
        about the members' decoding times added together.

        Example:
        ```python
        >>> first = GenerativeRecommender.from_pretrained("outputs/ml-100k")
        >>> second = GenerativeRecommender.from_pretrained("outputs/ml-100k")  # in practice: another seed's run
        >>> GenerativeRecommender.ensemble([first, second]).recommend([["50", "181", "100"]], k=3)
        [[('...', -...), ('...', -...), ('...', -...)]]
        ```
        """
        members = list(members)
        if not members:
            raise ValueError("ensemble needs at least one GenerativeRecommender.")
        first = members[0]
        for i, member in enumerate(members[1:], start=1):
            same_items = member.item_ids == first.item_ids and np.array_equal(
                member.item_tokenizer.item_token_ids, first.item_tokenizer.item_token_ids
            )
            if not same_items or len(member.item_tokenizer) != len(first.item_tokenizer):
                raise ValueError(
                    f"Member {i} spells a different catalogue than member 0 (other items, codes or vocabulary): an "
                    "ensemble's models must be trained on the same semantic IDs (the same ID scheme, features and "
                    "id_seed; only the training seed may differ)."
                )
            if member.config.max_history != first.config.max_history:
                raise ValueError(
                    f"Member {i} reads {member.config.max_history} history items and member 0 "
                    f"{first.config.max_history}: an ensemble encodes each history once, so they must agree."
                )
            if member.model.device != first.model.device:
                raise ValueError(
                    f"Member {i} is on {member.model.device} and member 0 on {first.model.device}: load them on one "
                    "device (from_pretrained(..., device=...))."
                )
        combined = cls(
            first.model,
            first.item_tokenizer,
            config=first.config,
            quantizer=first.quantizer,
            card_data=first.card_data,
            # its own copy: add_items / remove_items on the ensemble must not change member 0's log
            catalog=copy.deepcopy(first.catalog),
            transitions=first.transitions,
            content_map=first.content_map,
            scorer=first.scorer,
        )
        combined.models = [member.model.eval() for member in members]
        return combined

    @property
    def trie_index(self) -> TrieIndex:
        """The vectorised trie of the catalogue (built on first use)."""
        if self._trie_index is None:
            self._trie_index = build_trie_index(self.item_tokenizer)
        return self._trie_index

    @property
    def spellings(self) -> torch.Tensor:
        """``[n_items, max_length]`` every item's spelling (built on first use, like the trie), for the fusion."""
        if self._spellings is None:
            self._spellings = torch.from_numpy(item_spellings(self.item_tokenizer))
        return self._spellings

    @property
    def item_paths(self) -> torch.Tensor:
        """``[n_items, max_length]`` the trie nodes along every item's spelling (built on first use), so the fusion
        does not walk the trie for each history's successors."""
        if self._item_paths is None:
            self._item_paths = self.trie_index.item_paths(self.spellings, torch.arange(len(self.spellings)))[1]
        return self._item_paths

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

    @property
    def item_ids(self) -> list[str]:
        return self.item_tokenizer.item_ids

    @property
    def new_item_ids(self) -> list[str]:
        """Items added with `add_items` since training (the candidates of the cold-start mode), oldest first."""
        return list(self.catalog.new_items)

    # ------------------------------------------------------------------ the living catalogue
    def add_items(
        self,
        item_ids: Sequence[str],
        features=None,
        *,
        codes=None,
        if_full: str = "error",
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
        return {item: tuple(int(c) for c in row if c >= 0) for item, row in zip(added, full.tolist())}

    def features_from_sequences(
        self, item_ids: Sequence[str], sequences: Sequence[Sequence[str]], window: int = 3
    ) -> np.ndarray:
        """Features for new items that have interactions but no features of their own, to pass to `add_items`.

        Each new item gets the weighted mean of the features its catalogue neighbours in ``sequences`` stand for
        (their codes decoded by the bundle's quantiser; see `hf_genrec.features.collaborative.fold_in_features`). This is
        how new items join a catalogue whose IDs were built from collaborative features (the default recipe),
        which no feature pipeline can compute for an item outside the training data.

        Example:

        ```python
        ids = ["new-lipstick"]
        features = recommender.features_from_sequences(ids, [["old-1", "new-lipstick", "old-7"]])
        recommender.add_items(ids, features)
        ```
        """
        self._require_quantizer()
        ids = check_new_item_ids(self.item_tokenizer.item_to_index, item_ids)
        if isinstance(sequences, str) or (len(sequences) > 0 and isinstance(sequences[0], str)):
            raise TypeError("`sequences` must be a list of histories (lists of item ids); for one pass `[history]`.")
        sequences = [[str(item) for item in sequence] for sequence in sequences]  # ids are strings, as elsewhere
        lookup = self.item_tokenizer.item_to_index
        neighbours = sorted({item for sequence in sequences for item in sequence} - set(ids))
        unknown = [item for item in neighbours if item not in lookup]
        if unknown:
            raise ValueError(
                f"{len(unknown)} items in `sequences` are neither in the catalogue nor among the new items (first: "
                f"{unknown[:5]}); add them in the same call, or leave them out."
            )
        rows = np.fromiter((lookup[item] for item in neighbours), dtype=np.int64, count=len(neighbours))
        return fold_in_features(ids, sequences, neighbours, self._decoded_features(rows), window=window)

    def fit_content_map(
        self,
        items,
        *,
        content=None,
        method: str = "text",
        text_model: str = DEFAULT_TEXT_MODEL,
        template: str | None = None,
        attribute_dim: int = 64,
        **kwargs,
    ) -> ContentMap:
        """Learn to give codes to items that have content (text) but no interactions; sets and returns
        ``self.content_map``.

        Keeps the catalogue items' content features beside their codes; a new item then takes the codes its most
        similar catalogue items agree on (`hf_genrec.features.content_map`), and `codes_from_content` gives them from its text
        alone, for ``add_items(ids, codes=...)``. Save the recommender to keep the map (``content_map.safetensors``).
        Items on the code prefix of an all-zero feature vector (collaborative vectors of items that co-occurred with
        nothing in training) are left out: their codes say nothing about where items like them belong.

        Args:
            items: the catalogue's item table (a `datasets.Dataset`, a list of dicts, a dict of columns or a pandas
                DataFrame) with an ``item_id`` column and the text fields; every item must be in the catalogue.
            content: instead of embedding the items, your own content features ``[len(items), d]`` (new items
                then need ``content=`` computed the same way).
            method: ``"text"`` (default) embeds the items' text; ``"attributes"`` embeds their ``attributes``,
                ``categories`` and ``brand`` tokens (`hf_genrec.features.item_features.AttributeEncoder`), for catalogues without
                item text.
            text_model, template: how the text is embedded (`hf_genrec.features.item_features.text_features`); recorded in the
                map so new items are embedded the same way.
            attribute_dim: with ``method="attributes"``, the truncated-SVD axes the TF-IDF vectors are projected on
                (the vocabulary, idf and axes are saved with the map).
            kwargs: passed on to `ContentMap.fit` (``n_neighbors``, default 10).

        Example:

        ```python
        recommender.fit_content_map(data.items)  # catalogue texts, embedded with all-MiniLM-L6-v2
        new = [{"item_id": "new-lipstick", "title": "Matte lipstick, deep red", "brand": "Acme"}]
        recommender.add_items(["new-lipstick"], codes=recommender.codes_from_content(new))
        ```
        """
        from ..features.item_features import AttributeEncoder, _column, _columns, text_features

        if "item_id" not in _columns(items):
            raise ValueError(f"items must be an item table with an `item_id` column; it has {_columns(items)}.")
        ids = [str(item) for item in _column(items, "item_id")]
        if not ids:
            raise ValueError("items is empty: pass the catalogue's item table.")
        rows = self.item_tokenizer.index_of(ids, context="item table")
        semantic_ids = self.item_tokenizer.semantic_ids
        if semantic_ids.is_variable_length:
            raise ValueError("A content map needs fixed-length IDs; title IDs already come from each item's text.")
        if method not in ("text", "attributes"):
            raise ValueError(f"method must be 'text' or 'attributes', got {method!r}.")
        if content is None and method == "attributes":
            encoder = AttributeEncoder.fit(items, max_dim=attribute_dim)
            content = encoder.transform(items)
            source = {"attributes": encoder}
        elif content is None:
            content = text_features(items, model_name_or_path=text_model, template=template, show_progress_bar=False)
            source = {"text_model": str(text_model), "template": template}
        else:
            source = {}
        content = np.asarray(content)
        if content.ndim != 2 or len(content) != len(ids):
            raise ValueError(
                f"content must be an array [len(items), d] = [{len(ids)}, d], one row per item; got shape "
                f"{tuple(content.shape)}."
            )
        levels = self._code_levels
        codes = semantic_ids.codes[rows, :levels]
        keep = np.ones(len(ids), dtype=bool)
        if self.quantizer is not None:
            width = self._decoded_features(rows[:1]).shape[1]
            origin = self.quantizer.encode(np.zeros((1, width), dtype=np.float32))[0, :levels]
            keep = ~(codes == origin).all(axis=1)
            if not keep.all():
                logger.info(
                    "Content map: %d items on the zero vector's code prefix %s are left out.",
                    int((~keep).sum()),
                    origin,
                )
        self.content_map = ContentMap.fit(content[keep], codes[keep], **source, **kwargs)
        self.content_map.diagnostics["left_out_on_zero_prefix"] = int((~keep).sum())
        return self.content_map

    def codes_from_content(self, items=None, *, content=None) -> np.ndarray:
        """Codes for new items from their content alone (no interactions needed), to pass to
        ``add_items(ids, codes=...)``.

        Pass the new items' table (``items``: rows with the same text or attribute fields the catalogue had, embedded
        the way `fit_content_map` embedded the catalogue) or their content features (``content``).
        """
        if self.content_map is None:
            raise ValueError(
                "This recommender has no content map: fit one with recommender.fit_content_map(catalogue item table) "
                "and save the recommender, or place new items from interactions (features_from_sequences)."
            )
        if (items is None) == (content is None):
            raise ValueError(
                "Pass exactly one of `items` (an item table with text or attribute fields) or `content` (an array)."
            )
        if content is None:
            content = self.content_map.embed(items, show_progress_bar=False)
        return self.content_map.predict(content)

    def _require_quantizer(self) -> None:
        if self.quantizer is None:
            raise ValueError(
                "This recommender has no quantiser (no `quantizer/` in its bundle), so it cannot decode its items' "
                "codes into features; pass `codes=` to add_items instead."
            )

    @property
    def _code_levels(self) -> int:
        """Code levels an item's features decide (all but the collision level)."""
        semantic_ids = self.item_tokenizer.semantic_ids
        return semantic_ids.n_levels - int(semantic_ids.has_collision_level)

    def _decoded_features(self, rows: np.ndarray) -> np.ndarray:
        """The features the codes of catalogue rows ``rows`` stand for (decoded by the quantiser)."""
        return self.quantizer.decode(self.item_tokenizer.semantic_ids.codes[rows, : self._code_levels])

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
            retired = {entry["item_id"] for entry in self.catalog.retired}
            was = [item for item in unknown if item in retired]
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
                "template, or the same feature pipeline)."
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

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int | None = None,
        num_beams: int | None = None,
        batch_size: int = 64,
        method: str = "auto",
        new_item_slots: int | None = None,
        fusion: FusionConfig | Mapping[str, Any] | None = None,
        **fusion_overrides: Any,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` items for each history (item ids, oldest first), with their log-probabilities, best first.

        ``method`` picks the constrained beam search (see :func:`generate_items`); the default shares each
        history's cross-attention across beams, several times faster than stock ``generate`` with the same results.

        Every returned item is in the catalogue: decoding is constrained to the item trie.

        ``new_item_slots`` (default ``config.new_item_slots``, 0: off) turns on the cold-start mode: the items added
        since training (`add_items`) that share the deepest code prefix with the history's items (the most recent
        first; ties broken by a second beam search constrained to the new items' trie, the model's own ranking of
        them) take the last ``new_item_slots`` places of the top ``k``, when fewer new items made the top ``k`` on
        their own; items of the history itself are not inserted. An inserted item carries its score from that
        second search (normalised over the new items only when the model decodes with renormalised scores), or NaN
        when the search did not reach it: these scores are not comparable with the others.

        ``fusion`` (default ``config.fusion``, a `FusionConfig`) says what the search bans and fuses, and any of its
        fields passed as a keyword (``exclude_history=True``, ``transition_weight=0``, ...) overrides it for this call:
        ``exclude_history`` keeps every item of each given history (all of it, not only the ``max_history`` items the
        model reads) out of the results, banned inside the beam search, so each history still gets ``k`` items;
        ``transition_weight`` fuses the successor prior of the training sequences (`hf_genrec.models.prior`) and
        ``scorer_weight`` the bundle's dense next-item scorer (the hybrid): an item gains ``weight * log(1 +
        P(item | history) / smoothing)``, which the returned scores then include.
        """
        if isinstance(histories, str) or (len(histories) > 0 and isinstance(histories[0], str)):
            raise TypeError(
                "`histories` must be a list of histories (a list of lists of item ids); for one user pass `[history]`."
            )
        k = k or self.config.top_k
        if num_beams is not None and num_beams < k:
            raise ValueError(
                f"num_beams={num_beams} is smaller than k={k}: beam search returns at most num_beams items. Pass "
                f"num_beams >= {k} (or leave it unset: the bundle's num_beams, raised to k when smaller)."
            )
        if num_beams is None and self.config.num_beams < k:
            logger.info(
                "k=%d is larger than the bundle's num_beams=%d; searching with %d beams.", k, self.config.num_beams, k
            )
        num_beams = max(num_beams or self.config.num_beams, k)
        if k > self.item_tokenizer.num_items:
            raise ValueError(f"k={k} is larger than the catalogue ({self.item_tokenizer.num_items} items).")
        # the bundle's default gives way to a smaller k; an explicit value must fit
        slots = min(self.config.new_item_slots, k) if new_item_slots is None else new_item_slots
        if isinstance(slots, bool) or not isinstance(slots, int) or not 0 <= slots <= k:
            raise ValueError(f"new_item_slots must be an int in [0, k={k}], got {slots!r}.")
        unknown = sorted(set(fusion_overrides) - set(FusionConfig.field_names()))
        if unknown:
            raise TypeError(
                f"recommend() got unknown keyword arguments {unknown}; besides its own it takes the FusionConfig "
                f"fields {list(FusionConfig.field_names())}."
            )
        fusion = FusionConfig.from_dict(self.config.fusion if fusion is None else fusion).replace(**fusion_overrides)
        if fusion.transition_weight and self.transitions is None:
            raise ValueError(
                "transition_weight needs the item transitions of the training sequences, and this recommender has "
                "none: fit them with ItemTransitions.fit(training sequences as item rows, num_items) and set "
                "`recommender.transitions`, or pass transition_weight=0."
            )
        if fusion.scorer_weight and self.scorer is None:
            raise ValueError(
                "scorer_weight needs a dense next-item scorer, and this recommender has none: set "
                "`recommender.scorer` to a SASRecModel trained on its item rows, or pass scorer_weight=0."
            )
        excluding = fusion.exclude_history
        new_index = self.new_item_trie_index if slots else None
        new_items = set(self.catalog.new_items) if new_index is not None else set()
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(histories), batch_size):
            chunk = histories[start : start + batch_size]
            features = []
            for i, history in enumerate(chunk):
                try:
                    ids = self.item_tokenizer.encode_history(
                        [str(x) for x in history], max_items=self.config.max_history
                    )
                except ValueError as err:
                    raise ValueError(f"History {start + i}: {err}") from err
                features.append({"input_ids": ids})
            batch = self._collator(features)
            input_ids = batch["input_ids"].to(self.model.device)
            attention_mask = batch["attention_mask"].to(self.model.device)
            # each whole history's item rows, once for both the exclusion and the prior
            history_rows = None
            if excluding or fusion.fuses:
                history_rows = [self.item_tokenizer.index_of([str(x) for x in h]).tolist() for h in chunk]
            exclude = history_rows if excluding else None
            indices, scores = generate_items(
                self.models,
                self.item_tokenizer,
                input_ids,
                attention_mask,
                num_beams=num_beams,
                k=k,
                method=method,
                index=self.trie_index,
                exclude_items=exclude,
                fusion=self._fusion(history_rows, fusion),
            )
            item_ids = self.item_tokenizer.item_ids
            rows = [
                [(item_ids[i], s) for i, s in zip(row_idx, row_scores) if i >= 0]
                for row_idx, row_scores in zip(indices.tolist(), scores.tolist())
            ]
            if new_index is not None:
                new_indices, new_scores = generate_items(
                    self.models,
                    self.item_tokenizer,
                    input_ids,
                    attention_mask,
                    num_beams=num_beams,
                    k=min(num_beams, len(new_index)),
                    method=method,
                    index=new_index,
                    exclude_items=self._new_item_exclusions(exclude),
                )
                codes = self.item_tokenizer.semantic_ids.codes
                for row, history, row_idx, row_scores in zip(rows, chunk, new_indices.tolist(), new_scores.tolist()):
                    scored = {item_ids[i]: s for i, s in zip(row_idx, row_scores) if i >= 0}
                    history = [str(x) for x in history]
                    window = history[-self.config.max_history :]
                    # with exclude_history none of the history is inserted, else none of what the model read of it
                    banned = set(history) if exclude is not None else set(window)
                    ranked = self.new_item_index.rank(
                        codes[self.item_tokenizer.index_of(window)], list(scored), slots + k, exclude=banned
                    )
                    candidates = [(item, scored.get(item, float("nan"))) for item in ranked]
                    row[:] = insert_new_items(row, candidates, new_items, k, slots)
            results.extend(rows)
        return results

    def _fusion(self, history_rows: list[list[int]] | None, fusion: FusionConfig) -> LogitsProcessorList | None:
        """What ``fusion`` fuses into the search for histories given as item rows (`None`: nothing)."""
        if not fusion.fuses:
            return None
        return fusion_processors(
            history_rows,
            self.trie_index,
            self.spellings,
            self.item_paths,
            fusion,
            transitions=self.transitions,
            scorer=self.scorer,
        )

    def _new_item_exclusions(self, exclude: list[list[int]] | None) -> list[list[int]] | None:
        """``exclude`` for the search over the new items alone: a history holding every new item excludes nothing
        there (that search would have nothing left); none of its items is inserted anyway."""
        if exclude is None:
            return None
        new_rows = set(self.item_tokenizer.index_of(self.catalog.new_items).tolist())
        return [[] if new_rows <= set(rows) else rows for rows in exclude]

    def bundle_contents(self) -> BundleContents:
        """This recommender's parts, as a bundle holds them."""
        return BundleContents(
            model=self.model,
            item_tokenizer=self.item_tokenizer,
            config=self.config,
            quantizer=self.quantizer,
            transitions=self.transitions,
            scorer=self.scorer,
            catalog=self.catalog,
            content_map=self.content_map,
            card_data=self.card_data,
        )

    def save_pretrained(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> None:
        """Write the bundle (`hf_genrec.bundle.layout`): model, tokenizer, item map, config, quantiser, prior, scorer,
        catalogue log, content map and model card, whichever this recommender has."""
        if len(self.models) > 1:
            raise ValueError(
                f"This recommender is an ensemble of {len(self.models)} models, and a bundle holds one: save each "
                "member's bundle and build the ensemble again after loading them (GenerativeRecommender.ensemble)."
            )
        save_bundle(self.bundle_contents(), save_directory, repo_id=repo_id)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload hf_genrec recommender",
        create_pr: bool = False,
    ):
        """Save the bundle and upload it to ``repo_id`` on the Hub as one commit (created if needed)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, repo_id=repo_id)
            return push_folder(
                tmp,
                repo_id,
                token=token,
                private=private,
                revision=revision,
                commit_message=commit_message,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        model: PreTrainedModel | None = None,
    ) -> GenerativeRecommender:
        """Load a bundle, every part of it, from a local folder or a Hub repo id; the trie is rebuilt from the item map.

        Args:
            path_or_repo_id: a folder written by `save_pretrained` / `hf-genrec train`, or ``"user/repo"``.
            device: where to put the model (default: CPU).
            revision, token, cache_dir, local_files_only: as for ``huggingface_hub.snapshot_download``.
            model (`PreTrainedModel`, *optional*): the bundle's model when it is already loaded (the pipeline's).
        """
        contents = load_bundle(
            path_or_repo_id,
            model=model,
            device=device,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls.from_bundle_contents(contents)

    @classmethod
    def from_bundle_contents(cls, contents: BundleContents) -> GenerativeRecommender:
        """A recommender of a bundle's parts (`hf_genrec.bundle.io.load_bundle`)."""
        return cls(
            contents.model,
            contents.item_tokenizer,
            contents.config,
            quantizer=contents.quantizer,
            card_data=contents.card_data,
            catalog=contents.catalog,
            transitions=contents.transitions,
            content_map=contents.content_map,
            scorer=contents.scorer,
        )


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
