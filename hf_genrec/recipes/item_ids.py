"""The IDs stage of a run: item features → a fitted ID scheme → semantic IDs and the tokenizer that spells them
(`build_item_ids`), and what the content map a run can save needs of the items (`content_map_method`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file
from transformers import AutoTokenizer

from ..features.item_features import (
    _ATTRIBUTE_COLUMNS,
    METHODS,
    TEXT_TITLE_SHARE,
    _columns,
    _rows,
    build_item_features,
    item_text,
    titled_share,
)
from ..semantic_ids import ItemIDScheme, SemanticIDs, TitleIDs, load_quantizer
from ..semantic_ids.factory import FEATURE_SCHEMES
from ..tokenization import ItemTokenizer, minimal_t5_tokenizer
from ..training.sasrec import train_sasrec_for_features
from ..utils.saving import check_checkpoint
from .arguments import ItemIDArguments, ModelArguments
from .backbone import is_decoder_backbone, pretrained_backbone

logger = logging.getLogger(__name__)

#: item_features values that name a method of `build_item_features` (anything else is a path to an array)
FEATURE_METHODS = tuple(method for method in METHODS if method != "array")


def fit_item_ids(
    items, id_args: ItemIDArguments, base_tokenizer=None, sequences=None
) -> tuple[ItemIDScheme, SemanticIDs, dict[str, float]]:
    """Item features (when the scheme reads them) → fitted scheme → semantic IDs, with the seconds each took.

    ``sequences`` (each user's training items, no validation or test items) feed the collaborative features."""
    timings = {}
    start = time.perf_counter()
    features = None
    if id_args.id_scheme == "title":
        features = items["title"][:]
    elif id_args.id_scheme in FEATURE_SCHEMES:
        if id_args.item_features in FEATURE_METHODS:
            sasrec_model = None
            if id_args.item_features == "sasrec" and sequences is not None:
                # features/ trains nothing: the SASRec whose item embeddings become the features trains here
                sequences = list(sequences)
                sasrec_model = train_sasrec_for_features(
                    sequences,
                    [str(item) for item in items["item_id"][:]],
                    dim=id_args.collaborative_dim,
                    epochs=id_args.sasrec_epochs,
                )
            features = build_item_features(
                items,
                method=id_args.item_features,
                model_name_or_path=id_args.text_model,
                sequences=sequences,
                collaborative_dim=id_args.collaborative_dim,
                collaborative_window=id_args.collaborative_window,
                sasrec_model=sasrec_model,
            )
        else:
            array = load_feature_array(id_args.item_features)
            features = build_item_features(items, method="array", features=array)
    timings["features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scheme = id_args.build_scheme(base_tokenizer)
    semantic_ids = scheme.fit(features, items["item_id"][:])
    if id_args.collision_codes == "per_item":
        semantic_ids = semantic_ids.with_item_collision_codes()
    timings["semantic_ids_s"] = time.perf_counter() - start
    return scheme, semantic_ids, timings


def load_feature_array(path: str) -> np.ndarray:
    """A user's item features from ``.npy`` (no pickle) or ``.safetensors`` (first tensor)."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".safetensors"):
        tensors = load_file(path)
        if len(tensors) != 1:
            raise ValueError(f"{path} holds {len(tensors)} tensors ({sorted(tensors)}); save exactly one.")
        return next(iter(tensors.values()))
    raise ValueError(f"Item features file {path!r} must end in .npy or .safetensors (pickle is not accepted).")


def id_scheme_text(id_args: ItemIDArguments) -> str:
    """The item IDs a run builds, in words."""
    if id_args.id_scheme == "title":
        return f"title IDs (the first {id_args.max_title_tokens} pieces of each title)"
    if id_args.id_scheme == "atomic":
        return "atomic IDs (one token per item)"
    codes = f"{id_args.n_levels} levels of {id_args.codebook_size} codes, then a collision level"
    if id_args.id_scheme == "random":
        return f"random IDs ({codes})"
    return f"{id_args.id_scheme} over {id_args.item_features} item features ({codes})"


@dataclass
class RunIDs:
    """The IDs stage's output: the items' IDs, the scheme that encodes new items, and the tokenizer."""

    item_tokenizer: ItemTokenizer
    semantic_ids: SemanticIDs
    #: the fitted scheme (`None` for a checkpoint saved without one)
    quantizer: ItemIDScheme | None


def build_item_ids(
    items,
    train_sequences: list[list[str]],
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    checkpoint: str | None,
    timings: dict,
) -> RunIDs:
    """Fit the item IDs on the catalogue (features from ``train_sequences``, the training part, where the scheme
    reads collaborative ones) and build the tokenizer; a resumed run reads both back from its ``checkpoint``
    instead, since its model was trained on them. The seconds each step took go into ``timings``."""
    if checkpoint:
        check_checkpoint(checkpoint)
        logger.info("[ids] Reading the item IDs back from %s", checkpoint)
        item_tokenizer = ItemTokenizer.from_pretrained(checkpoint)
        semantic_ids = item_tokenizer.semantic_ids
        quantizer = (
            load_quantizer(Path(checkpoint) / "quantizer") if (Path(checkpoint) / "quantizer").is_dir() else None
        )
        logger.info("Resuming from %s", checkpoint)
        return RunIDs(item_tokenizer, semantic_ids, quantizer)
    logger.info("[ids] Building item IDs: %s", id_scheme_text(id_args))
    base_tokenizer = None
    # a pretrained causal LM's own tokenizer, unless another is named: the item tokens are added to its vocabulary
    base_name = model_args.base_tokenizer or pretrained_backbone(model_args)
    if base_name:
        base_tokenizer = AutoTokenizer.from_pretrained(base_name)
    quantizer, semantic_ids, id_timings = fit_item_ids(items, id_args, base_tokenizer, sequences=train_sequences)
    timings.update(id_timings)
    logger.info("Semantic IDs:\n%s", semantic_ids.summary())
    if isinstance(quantizer, TitleIDs):
        base_tokenizer = quantizer.tokenizer  # title IDs are spelled with this tokenizer's pieces
    # the causal encoder and a decoder-only backbone read histories as bare spellings (their rows hold targets too)
    history_eos = not (model_args.causal_encoder or is_decoder_backbone(model_args))
    item_tokenizer = ItemTokenizer(base_tokenizer or minimal_t5_tokenizer(), semantic_ids, history_eos=history_eos)
    return RunIDs(item_tokenizer, semantic_ids, quantizer)


def content_map_method(items) -> str:
    """How `fit_content_map` embeds these items: ``"text"`` when most have a title (as ``item_features: auto``
    decides), else ``"attributes"`` when the table has attribute, category or brand columns, else ``"text"`` when any
    item has text; raises when the items have neither."""
    if titled_share(items) >= TEXT_TITLE_SHARE:
        return "text"
    if any(name in _columns(items) for name in _ATTRIBUTE_COLUMNS):
        return "attributes"
    if any(item_text(row) for row in _rows(items)):
        return "text"
    raise ValueError(
        "content_map needs item text (titles, brands, categories, ...) or attribute columns "
        f"({', '.join(_ATTRIBUTE_COLUMNS)}); these items have neither."
    )


def check_content_map_possible(id_args: ItemIDArguments, items) -> None:
    """Fail before training, not after it, when ``content_map`` cannot be built for these items and IDs."""
    if id_args.id_scheme not in FEATURE_SCHEMES:
        raise ValueError(
            f"content_map needs an ID scheme that encodes features ({', '.join(FEATURE_SCHEMES)}); "
            f"{id_args.id_scheme!r} does not (title IDs already come from item text)."
        )
    content_map_method(items)
