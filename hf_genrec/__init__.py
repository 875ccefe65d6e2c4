"""hf_genrec: generative recommendation with semantic IDs on Hugging Face Transformers."""

__version__ = "0.1.0"

from .baselines import MostPopular
from .beam_search import shared_beam_search
from .callbacks import TimeBudgetCallback
from .catalog import CatalogLog
from .causal_t5 import GenRecT5Config, GenRecT5ForConditionalGeneration
from .configuration import GenRecConfig
from .constraints import ItemTrie, prefix_allowed_tokens_fn
from .content_map import ContentMap
from .data import InteractionData, kcore_filter, leave_one_out, load_interactions
from .data.collator import GenRecCollator
from .decoding import build_trie, build_trie_index, generate_items
from .dropout import BitsDropout
from .examples import add_scorer_history, tokenize_examples, tokenize_sequences
from .exclude_items import ExcludeItemsLogitsProcessor
from .features import AttributeEncoder, attribute_features, build_item_features, text_features
from .hub import push_folder, resolve_bundle
from .hybrid import ScorerArguments, scorer_settings_for
from .item_scorer import fusion_processors, reindex_items, scorer_priors
from .metrics import make_compute_metrics, ndcg_at_k, ranking_metrics, recall_at_k
from .model_card import GenRecCardData, build_model_card
from .modeling import TIGER_T5_CONFIG, build_t5_model
from .pipeline import GenerativeRecommendationPipeline  # registers pipeline("generative-recommendation")
from .recommender import GenerativeRecommender
from .sasrec import BestValidationState, SASRecConfig, SASRecModel, rank_histories, train_sasrec
from .semantic_ids import (
    RQVAE,
    AtomicIDs,
    HierarchicalKMeans,
    ItemIDScheme,
    RandomIDs,
    RQKMeans,
    SemanticIDs,
    TitleIDs,
    from_codes,
    load_quantizer,
)
from .tokenization import ItemTokenizer, minimal_t5_tokenizer
from .trainer import GenRecTrainer, GenRecTrainingArguments
from .transitions import ItemTransitions, TransitionFusionLogitsProcessor
from .trie_logits import TrieIndex, TrieLogitsProcessor

__all__ = [
    "AttributeEncoder",
    "BitsDropout",
    "CatalogLog",
    "ContentMap",
    "GenRecT5Config",
    "GenRecT5ForConditionalGeneration",
    "tokenize_sequences",
    "SASRecConfig",
    "SASRecModel",
    "GenRecCardData",
    "GenerativeRecommendationPipeline",
    "build_model_card",
    "push_folder",
    "resolve_bundle",
    "AtomicIDs",
    "HierarchicalKMeans",
    "ItemIDScheme",
    "RandomIDs",
    "TitleIDs",
    "TrieIndex",
    "TrieLogitsProcessor",
    "ExcludeItemsLogitsProcessor",
    "ItemTransitions",
    "TransitionFusionLogitsProcessor",
    "reindex_items",
    "fusion_processors",
    "scorer_priors",
    "ScorerArguments",
    "scorer_settings_for",
    "train_sasrec",
    "rank_histories",
    "BestValidationState",
    "build_trie_index",
    "load_quantizer",
    "shared_beam_search",
    "GenRecCollator",
    "GenRecConfig",
    "GenRecTrainer",
    "GenRecTrainingArguments",
    "GenerativeRecommender",
    "InteractionData",
    "ItemTokenizer",
    "ItemTrie",
    "MostPopular",
    "RQKMeans",
    "RQVAE",
    "SemanticIDs",
    "TIGER_T5_CONFIG",
    "TimeBudgetCallback",
    "attribute_features",
    "build_item_features",
    "build_t5_model",
    "build_trie",
    "from_codes",
    "generate_items",
    "kcore_filter",
    "leave_one_out",
    "load_interactions",
    "make_compute_metrics",
    "minimal_t5_tokenizer",
    "ndcg_at_k",
    "prefix_allowed_tokens_fn",
    "ranking_metrics",
    "recall_at_k",
    "text_features",
    "tokenize_examples",
    "add_scorer_history",
]
