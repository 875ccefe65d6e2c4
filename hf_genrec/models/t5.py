"""The seq2seq model: a T5 sized for semantic-ID vocabularies, plain or with a causal encoder."""

from __future__ import annotations

from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from ..tokenization import ItemTokenizer
from .causal_t5 import GenRecT5Config, GenRecT5ForConditionalGeneration

#: TIGER's encoder-decoder (Rajput et al. 2023, section 4): 4+4 layers, d_model 128, 6 heads of 64, MLP 1024.
TIGER_T5_CONFIG = dict(
    d_model=128, d_kv=64, d_ff=1024, num_layers=4, num_decoder_layers=4, num_heads=6, dropout_rate=0.1
)


def build_t5_model(
    item_tokenizer: ItemTokenizer,
    seed: int | None = 0,
    causal_encoder: bool = False,
    item_positions: bool = False,
    **config_overrides,
) -> T5ForConditionalGeneration:
    """A randomly initialised T5 whose vocabulary is ``item_tokenizer``'s (base tokens + ID tokens).

    ``causal_encoder=True`` builds a `GenRecT5ForConditionalGeneration`, which trains on every target of a user in
    one encoder pass (packed rows from `tokenize_sequences`); with ``item_positions=True`` its encoder reads one
    position per history item, and with ``recency_embeddings=True`` each encoder state carries how recent it is (see
    `GenRecT5Config`). ``config_overrides`` replace entries of `TIGER_T5_CONFIG` (e.g. ``num_layers=2``).

    Example:

    ```python
    >>> from hf_genrec import ItemTokenizer, build_t5_model, minimal_t5_tokenizer
    >>> from hf_genrec.semantic_ids.ids import from_codes
    >>> item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), from_codes([[0, 1], [0, 2], [1, 1]], ["a", "b", "c"]))
    >>> model = build_t5_model(item_tokenizer, num_layers=1, num_decoder_layers=1, d_model=32, d_ff=64, num_heads=2)
    >>> type(model).__name__, model.config.vocab_size == len(item_tokenizer)
    ('T5ForConditionalGeneration', True)
    ```
    """
    import torch

    if seed is not None:
        torch.manual_seed(seed)
    params = {**TIGER_T5_CONFIG, **config_overrides}
    for option in ("recency_embeddings", "start_from_last_state"):
        if params.get(option) and not causal_encoder:
            raise ValueError(f"{option}=True needs causal_encoder=True (a GenRecT5ForConditionalGeneration).")
        if not causal_encoder:
            params.pop(option, None)
    if item_positions:
        if not causal_encoder:
            raise ValueError("item_positions=True needs causal_encoder=True (a GenRecT5ForConditionalGeneration).")
        if item_tokenizer.is_variable_length:
            params.setdefault("item_width", None)  # each spelling ends with EOS
        elif item_tokenizer.history_eos:
            raise ValueError(
                "item_positions=True with fixed-length IDs splits histories every id_length - 1 tokens, so they must "
                "be spelled without a trailing EOS: build the ItemTokenizer with history_eos=False."
            )
        else:
            params.setdefault("item_width", item_tokenizer.id_length - 1)
        params["item_positions"] = True
    config = (GenRecT5Config if causal_encoder else T5Config)(
        vocab_size=len(item_tokenizer),
        pad_token_id=item_tokenizer.pad_token_id,
        eos_token_id=item_tokenizer.eos_token_id,
        decoder_start_token_id=item_tokenizer.pad_token_id,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
        **params,
    )
    model = (GenRecT5ForConditionalGeneration if causal_encoder else T5ForConditionalGeneration)(config)
    model.generation_config = default_generation_config(item_tokenizer)
    return model


def default_generation_config(item_tokenizer: ItemTokenizer, num_beams: int = 20) -> GenerationConfig:
    """Beam search over exactly one item spelling; scores are raw log-probabilities."""
    return GenerationConfig(
        decoder_start_token_id=item_tokenizer.pad_token_id,
        pad_token_id=item_tokenizer.pad_token_id,
        eos_token_id=item_tokenizer.eos_token_id,
        num_beams=num_beams,
        max_new_tokens=item_tokenizer.id_length,
        length_penalty=0.0,
        early_stopping="never",  # exact beam search with length_penalty=0 (variable-length IDs)
    )
