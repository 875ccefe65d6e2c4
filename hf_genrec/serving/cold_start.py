"""Cold start for a `GenerativeRecommender`: features and codes for items that were not in training."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from ..features import item_features
from ..features.collaborative import fold_in_features
from ..features.content_map import ContentMap
from ..features.item_features import DEFAULT_TEXT_MODEL, AttributeEncoder, _column, _columns
from .catalog import check_new_item_ids

logger = logging.getLogger(__name__)


class ColdStartMixin:
    """Features for new items from the sequences they appear in, or codes from their content alone (the content
    map), to pass to `add_items`. Mixed into `GenerativeRecommender`."""

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
            # looked up when called, so that a replaced text_features (a test's offline fake) is the one used
            content = item_features.text_features(
                items, model_name_or_path=text_model, template=template, show_progress_bar=False
            )
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
