"""hf_genrec: generative recommendation with semantic IDs on Hugging Face Transformers.

Importing the package is cheap: each public name is imported from its stage on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .models import causal_t5 as _causal_t5  # noqa: F401  registers model_type hf_genrec_t5 with the Auto classes
from .serving import pipeline as _pipeline  # noqa: F401  registers pipeline("generative-recommendation")
from .version import __version__  # noqa: F401

# public name -> the module (relative to this package) that holds it, grouped by stage
_PUBLIC: dict[str, str] = {
    # data
    "InteractionData": "data",
    "load_interactions": "data",
    "leave_one_out": "data",
    # item features
    "build_item_features": "features.item_features",
    "text_features": "features.item_features",
    "ContentMap": "features.content_map",
    # semantic IDs
    "SemanticIDs": "semantic_ids",
    "RQKMeans": "semantic_ids",
    "RQVAE": "semantic_ids",
    "HierarchicalKMeans": "semantic_ids",
    "TitleIDs": "semantic_ids",
    "load_quantizer": "semantic_ids",
    # tokenizer
    "ItemTokenizer": "tokenization",
    "minimal_t5_tokenizer": "tokenization",
    # models
    "build_t5_model": "models.t5",
    "build_causal_lm": "models.causal_lm",
    "GenRecT5Config": "models.causal_t5",
    "GenRecT5ForConditionalGeneration": "models.causal_t5",
    "SASRecConfig": "models.sasrec",
    "SASRecModel": "models.sasrec",
    "ItemTransitions": "models.prior",
    # decoding
    "TrieIndex": "decoding.trie",
    "TrieLogitsProcessor": "decoding.trie",
    "prefix_allowed_tokens_fn": "decoding.prefix_allowed",
    "ExcludeItemsLogitsProcessor": "decoding.exclude_history",
    "TransitionFusionLogitsProcessor": "decoding.fusion",
    "FusionConfig": "decoding.fusion",
    "generate_items": "decoding.generate",
    # training
    "GenRecTrainer": "training.trainer",
    "GenRecTrainingArguments": "training.arguments",
    "GenRecCollator": "training.collator",
    "tokenize_examples": "training.examples",
    "train_sasrec": "training.sasrec",
    # bundle
    "GenRecConfig": "bundle.config",
    "GenRecCardData": "bundle.model_card",
    # serving
    "GenerativeRecommender": "serving.recommender",
    "GenerativeRecommendationPipeline": "serving.pipeline",
    # evaluation
    "ranking_metrics": "evaluation.metrics",
    "MostPopular": "evaluation.baselines",
    # recipes
    "run_recipe": "recipes.launch",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'hf_genrec' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
