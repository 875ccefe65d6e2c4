"""The run's arguments: which data (`DataArguments`), which item IDs (`ItemIDArguments`), which model
(`ModelArguments`), and which shipped recipe a run starts from and which model kind it trains (`RecipeArguments`).

Each is a dataclass `transformers.HfArgumentParser` turns into command-line options (``hf-genrec train --help``) and
a YAML recipe's keys (``hf_genrec/recipes/*.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..features.item_features import DEFAULT_TEXT_MODEL
from ..semantic_ids import ItemIDScheme
from ..semantic_ids.factory import ID_SCHEMES, build_id_scheme
from .shipped import MODELS, NO_RECIPE


@dataclass
class DataArguments:
    """Which data to train on and how to split it."""

    dataset: str = field(
        default="ml-100k",
        metadata={
            "help": "ml-100k, ml-1m, amazon-beauty or amazon-<category> (an Amazon 2014 category); `hf-genrec train` "
            "starts from the recipe shipped for it."
        },
    )
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Data root holding <dataset>/ folders (default: $HF_GENREC_DATA_DIR or the cache)."},
    )
    max_history: int = field(default=20, metadata={"help": "Items of history the model reads (TIGER: 20)."})
    min_count: int | None = field(default=None, metadata={"help": "Optional k-core filter on users and items."})
    max_train_targets_per_user: int | None = field(
        default=None,
        metadata={"help": "Train on each user's most recent N next-item targets only (default: all, as TIGER)."},
    )
    max_eval_users: int | None = field(
        default=None,
        metadata={"help": "Validate during training on this many random users."},
    )
    rows_on_disk_above: int = field(
        default=2_000_000,
        metadata={
            "help": "Write the training rows to an Arrow file in the output dir and memory-map them, instead of "
            "holding them in memory, when the training sequences have more than this many interactions (0: always; "
            "-1: never). Resident memory then stays bounded by the data, not the rows (docs/scale.md)."
        },
    )
    max_test_users: int | None = field(
        default=None,
        metadata={"help": "Test on this many random users (default: all; the protocol string says which)."},
    )

    def __post_init__(self):
        if self.rows_on_disk_above < -1:
            raise ValueError(
                f"rows_on_disk_above must be -1 (never), 0 (always) or a count of interactions, got "
                f"{self.rows_on_disk_above}."
            )


@dataclass
class ItemIDArguments:
    """How items get their IDs (see ``hf_genrec.semantic_ids``)."""

    id_scheme: str = field(
        default="rqkmeans",
        metadata={
            "help": "rqvae (TIGER), rqkmeans (residual k-means), hierarchical (recursive k-means), title (title "
            "tokens, variable length), random (random codes) or atomic (one token per item).",
            "choices": list(ID_SCHEMES),
        },
    )
    item_features: str = field(
        default="auto",
        metadata={
            "help": "auto (text, else attributes), text, attributes, collaborative (vectors learned from the training "
            "interactions), content+collaborative (both side by side), sasrec (the item embeddings of a SASRec "
            "trained on the training interactions first), or a path to a .npy / .safetensors array [n_items, d]."
        },
    )
    collaborative_dim: int = field(default=64, metadata={"help": "collaborative and sasrec features: vector size."})
    sasrec_epochs: int = field(
        default=15, metadata={"help": "sasrec features: epochs the SASRec trains before its embeddings are read."}
    )
    collaborative_window: int = field(
        default=3, metadata={"help": "collaborative features: items this many steps apart count as co-occurring."}
    )
    text_model: str = field(default=DEFAULT_TEXT_MODEL, metadata={"help": "sentence-transformers model for text."})
    content_map: bool = field(
        default=False,
        metadata={
            "help": "Also save a content map in the bundle (hf_genrec.features.content_map): items with text (or attributes) "
            "but no interactions can then be added from those alone (`hf-genrec catalog add` with item fields). "
            "Embeds every item's text with text_model after training (their attribute tokens when most items have "
            "no title); needs item text or attributes and a feature-based scheme."
        },
    )
    n_levels: int = field(default=3, metadata={"help": "Code levels before the collision level."})
    collision_codes: str = field(
        default="shared",
        metadata={
            "help": "shared (TIGER: the collision level numbers the items that share a code tuple) or per_item (it "
            "numbers every item, so each has a token of its own to memorise what is particular to it; the "
            "vocabulary grows by the catalogue). See SemanticIDs.with_item_collision_codes.",
            "choices": ["shared", "per_item"],
        },
    )
    codebook_size: int = field(default=256, metadata={"help": "Codes per level (hierarchical: clusters per node)."})
    id_seed: int = field(default=0, metadata={"help": "Seed of the ID scheme."})
    balanced: bool = field(default=False, metadata={"help": "rqkmeans: equal-size clusters at every level."})
    pca_dim: int | None = field(
        default=32,
        metadata={"help": "rqkmeans/hierarchical: project features on this many principal axes first (0: none)."},
    )
    rqvae_epochs: int = field(default=100, metadata={"help": "rqvae: training epochs of the autoencoder."})
    max_title_tokens: int = field(default=16, metadata={"help": "title: pieces of the title kept per ID."})
    title_vocab_size: int = field(
        default=8000, metadata={"help": "title: pieces learnt on the titles when no --base_tokenizer is given."}
    )
    missing_titles: str = field(
        default="error",
        metadata={"help": "title: 'error' on items without a title, or 'item_id' to spell them by id.",
                  "choices": ["error", "item_id"]},
    )  # fmt: skip

    def __post_init__(self):
        if self.collision_codes not in ("shared", "per_item"):
            raise ValueError(f"collision_codes must be 'shared' or 'per_item', got {self.collision_codes!r}.")
        if self.collision_codes == "per_item" and self.id_scheme in ("title", "atomic"):
            raise ValueError(
                f"collision_codes='per_item' renumbers the collision level, and {self.id_scheme} IDs have none "
                "(title IDs are variable-length; atomic IDs are one token per item already)."
            )

    def build_scheme(self, tokenizer=None) -> ItemIDScheme:
        """The unfitted ID scheme these arguments describe (`hf_genrec.semantic_ids.factory.build_id_scheme`);
        ``tokenizer`` spells title IDs (`None`: learn one on the titles)."""
        return build_id_scheme(
            self.id_scheme,
            n_levels=self.n_levels,
            codebook_size=self.codebook_size,
            seed=self.id_seed,
            pca_dim=self.pca_dim or None,  # 0 on the command line: no projection
            balanced=self.balanced,
            epochs=self.rqvae_epochs,
            tokenizer=tokenizer,
            max_tokens=self.max_title_tokens,
            vocab_size=self.title_vocab_size,
            missing_titles=self.missing_titles,
        )


@dataclass
class ModelArguments:
    """Which model is trained and its size (defaults: TIGER's T5, trained from scratch)."""

    backbone: str = field(
        default="t5",
        metadata={
            "help": "t5 (the default: GenRecT5), or a decoder-only backbone: a model type (llama, gpt2, qwen2, ...) "
            "built from scratch with d_model/num_layers/num_heads/d_ff, or a path/Hub id of a pretrained causal LM "
            "(its embeddings resized to the item tokens). d_kv, num_decoder_layers and the causal_encoder options "
            "are the T5's; --model decoder turns those off."
        },
    )
    base_tokenizer: str | None = field(
        default=None, metadata={"help": "A T5 tokenizer to extend (id or path); default: a minimal one built offline."}
    )
    d_model: int = 128
    d_ff: int = 1024
    d_kv: int = 64
    num_heads: int = 6
    num_layers: int = 4
    num_decoder_layers: int = 4
    dropout_rate: float = 0.1
    embedding_dropout: float = field(
        default=0.0,
        metadata={
            "help": "Dropout on the input token embeddings while training, besides the backbone's own (0: off). A "
            "Llama's dropout_rate drops only attention weights, so this is how a decoder-only model's inputs are "
            "regularised as SASRec's item embeddings are."
        },
    )
    causal_encoder: bool = field(
        default=False,
        metadata={
            "help": "Read histories causally and train every next-item target of a user in one encoder pass "
            "(GenRecT5ForConditionalGeneration); False trains one history prefix per row, as TIGER."
        },
    )
    item_positions: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: one encoder position per history item (the sum of its ID tokens' "
            "embeddings) instead of one per token."
        },
    )
    item_embedding_buckets: int = field(
        default=0,
        metadata={
            "help": "With item_positions: add a learned embedding of each history item's whole ID, hashed into this "
            "many buckets (0: off). Items unseen in training add nothing (the buckets start at zero)."
        },
    )
    recency_embeddings: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: add to each encoder state a learned embedding of its distance from the end "
            "of the history, so the decoder can tell recent items from old ones."
        },
    )
    start_from_last_state: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: the decoder's start token also gets the encoder state of the most recent "
            "history item (the causal encoder's summary of the history)."
        },
    )

    def __post_init__(self):
        if not 0.0 <= self.embedding_dropout < 1.0:
            raise ValueError(f"embedding_dropout must be in [0, 1) (0: off), got {self.embedding_dropout}.")


@dataclass
class RecipeArguments:
    """Which shipped recipe a run starts from and which model it trains (``hf-genrec recipes`` lists them)."""

    model: str = field(
        default="tiger",
        metadata={
            "help": "tiger: the generative recommender (semantic IDs, a T5, constrained beam search); hybrid: it with "
            "a SASRec fused into its ranking (the hybrid overlay); decoder: a decoder-only causal LM (a Llama) in "
            "the T5's place (the decoder overlay); sasrec: SASRec alone, under the same split, budget and protocol.",
            "choices": list(MODELS),
        },
    )

    recipe: str | None = field(
        default=None,
        metadata={
            "help": "The shipped recipe under the --config files and flags: a name `hf-genrec recipes` lists, or "
            f"{NO_RECIPE} for the options' own defaults (TIGER's sizes). Default: the recipe shipped for --dataset."
        },
    )
