"""Decoder-only backbones: any `AutoModelForCausalLM` (GPT-2, Llama, Qwen2, ...) over an item vocabulary.

A decoder-only model reads one sequence: the history's spelling, then the target's. There is no BOS token: every row
(training, evaluation and the prompt of `generate`) starts with the first history token, at position 0, so the
positions a target reads at training are those it reads at ranking. Fixed-length IDs are spelled without an EOS
between items (``ItemTokenizer(..., history_eos=False)``), as the causal-encoder T5's are: a packed row (see
`hf_genrec.training.examples.tokenize_causal_sequences`) is then every prefix of a history at once. In such a row the
token after an item's last code is the next item's first code, so the EOS that ends a fixed-length target is never
trained; it is forced by the trie, and ranking renormalises each step over the tokens the trie allows
(``generation_config.renormalize_logits=True``), which gives that step a log-probability of exactly 0.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PretrainedConfig, PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..tokenization import ItemTokenizer
from .t5 import default_generation_config

#: generic size → the field names architectures give it (every one a config has is set)
_SIZE_FIELDS = {
    "d_model": ("hidden_size", "n_embd", "d_model"),
    "num_layers": ("num_hidden_layers", "n_layer", "num_layers"),
    "num_heads": ("num_attention_heads", "n_head", "num_heads"),
    "num_key_value_heads": ("num_key_value_heads",),
    "d_ff": ("intermediate_size", "n_inner", "ffn_dim"),
    "max_positions": ("max_position_embeddings", "n_positions"),
    "dropout": (
        "attention_dropout",
        "resid_pdrop",
        "embd_pdrop",
        "attn_pdrop",
        "hidden_dropout",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "dropout",
    ),
}


#: causal LMs whose logits are exactly ``get_output_embeddings()(base_model(...).last_hidden_state)`` (no final
#: scaling or soft-capping), so training and ranking can score the trie's tokens alone; others take the full logits
PLAIN_OUTPUT_LAYER = frozenset({"llama", "gpt2", "qwen2", "qwen3", "mistral"})


def is_decoder_only(model: PreTrainedModel | Any) -> bool:
    """Whether ``model`` reads one sequence (history then target) rather than an encoder input and decoder labels."""
    return not getattr(model.config, "is_encoder_decoder", False)


def build_causal_lm(
    item_tokenizer: ItemTokenizer,
    backbone: str | PretrainedConfig = "llama",
    *,
    seed: int | None = 0,
    d_model: int = 64,
    num_layers: int = 2,
    num_heads: int = 2,
    d_ff: int = 256,
    dropout: float = 0.1,
    max_positions: int | None = None,
    **config_overrides: Any,
) -> PreTrainedModel:
    """A decoder-only model whose vocabulary is ``item_tokenizer``'s (base tokens + ID tokens).

    Args:
        item_tokenizer (`ItemTokenizer`): the catalogue and its spellings; its tokenizer's length is the vocabulary.
        backbone (`str` or `PretrainedConfig`): a model type Transformers knows (``"llama"``, ``"gpt2"``,
            ``"qwen2"``, ``"mistral"``, ...), built from scratch with the sizes below mapped onto the architecture's
            own field names (GPT-2's ``n_embd``/``n_layer``/``n_head``/``n_inner``, Llama's ``hidden_size``/...); or a
            config instance, used as given except for its vocabulary and special tokens; or a folder or Hub id of a
            pretrained causal LM, loaded with its weights and its embeddings resized to the item vocabulary (the sizes
            are then ignored).
        seed (`int`, *optional*): seeds the initialisation (and the new embedding rows of a pretrained model).
        d_model, num_layers, num_heads, d_ff, dropout: the sizes of a model built from a type name.
            ``num_key_value_heads`` (Llama, Qwen2, ...) defaults to ``num_heads``.
        max_positions (`int`, *optional*): positions the model can read (default 1024); a row holds ``max_history``
            history items and one target, ``id_length`` tokens or fewer each.
        config_overrides: any other config field (e.g. ``tie_word_embeddings=True``, ``num_key_value_heads=1``);
            for a pretrained checkpoint, passed to ``from_pretrained``.

    Example:

    ```python
    >>> from hf_genrec import ItemTokenizer, minimal_t5_tokenizer
    >>> from hf_genrec.models.causal_lm import build_causal_lm
    >>> from hf_genrec.semantic_ids.ids import from_codes
    >>> ids = from_codes([[0, 1], [0, 2], [1, 1]], ["a", "b", "c"])
    >>> item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    >>> model = build_causal_lm(item_tokenizer, "gpt2", d_model=32, d_ff=64)
    >>> type(model).__name__, model.config.vocab_size == len(item_tokenizer)
    ('GPT2LMHeadModel', True)
    ```
    """
    tokenizer = item_tokenizer.tokenizer
    special = dict(
        pad_token_id=item_tokenizer.pad_token_id,
        eos_token_id=item_tokenizer.eos_token_id,
        # no row starts with BOS; a config still needs an id inside the vocabulary (GPT-2's default is 50256)
        bos_token_id=tokenizer.bos_token_id if tokenizer.bos_token_id is not None else item_tokenizer.eos_token_id,
    )
    generator_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    try:
        if isinstance(backbone, str) and backbone not in CONFIG_MAPPING and _looks_like_checkpoint(backbone):
            model = AutoModelForCausalLM.from_pretrained(backbone, **config_overrides)
            model.resize_token_embeddings(len(tokenizer))
            for name, value in special.items():
                setattr(model.config, name, value)
        else:
            config = _config(backbone, len(tokenizer), special, d_model, num_layers, num_heads, d_ff, dropout,
                             max_positions, config_overrides)  # fmt: skip
            model = _from_config(config)
    finally:
        if seed is not None:  # seeding here must not reset the caller's stream
            torch.random.set_rng_state(generator_state)
    if not is_decoder_only(model):
        raise ValueError(
            f"{type(model).__name__} is an encoder-decoder: build it with build_t5_model, or pass a decoder-only "
            "backbone (llama, gpt2, qwen2, ...)."
        )
    model.generation_config = causal_generation_config(item_tokenizer)
    return model


def causal_generation_config(item_tokenizer: ItemTokenizer, num_beams: int = 20) -> GenerationConfig:
    """Beam search over exactly one item spelling after the history prompt.

    Fixed-length IDs decode with renormalised scores: their closing EOS is never trained (see the module docstring),
    and renormalising over the trie's tokens gives it log-probability 0 for every item instead of an untrained value.
    """
    config = default_generation_config(item_tokenizer, num_beams)
    config.decoder_start_token_id = None  # the prompt is the history itself
    config.renormalize_logits = not item_tokenizer.is_variable_length
    return config


def causal_rows(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    pad_token_id: int,
    eos_token_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """One decoder-only row per history → target example: the history's tokens, then the target's.

    Args:
        input_ids (`torch.Tensor`): ``[batch, history]`` histories, right-padded (as `GenRecCollator` pads them).
        attention_mask (`torch.Tensor`, *optional*): their mask (default: every token that is not ``pad_token_id``).
        labels (`torch.Tensor`): ``[batch, target]`` target spellings, padded with -100.
        pad_token_id (`int`): the pad token of the rows.
        eos_token_id (`int`, *optional*): fixed-length IDs: the EOS closing each target, kept in the row but given no
            label, as packed rows (`tokenize_causal_sequences`) never train it. Leave it out for variable-length IDs,
            whose histories spell each item's EOS too.

    Returns:
        ``input_ids``, ``attention_mask`` and ``labels``, ``[batch, longest row]``, right-padded; ``labels`` are
        -100 on the history and the padding. The model shifts them itself (token ``t`` is predicted at ``t - 1``).
    """
    if attention_mask is None:
        attention_mask = (input_ids != pad_token_id).long()
    history_lengths = attention_mask.sum(dim=1)
    target_mask = labels != -100
    target_lengths = target_mask.sum(dim=1)
    batch, width = len(input_ids), int((history_lengths + target_lengths).max())
    device = input_ids.device
    rows = torch.full((batch, width), pad_token_id, dtype=input_ids.dtype, device=device)
    row_labels = torch.full((batch, width), -100, dtype=labels.dtype, device=device)
    mask = torch.zeros((batch, width), dtype=attention_mask.dtype, device=device)
    for i in range(batch):
        n, m = int(history_lengths[i]), int(target_lengths[i])
        target = labels[i][target_mask[i]]
        rows[i, :n] = input_ids[i, :n]
        rows[i, n : n + m] = target
        row_labels[i, n : n + m] = target
        if eos_token_id is not None and m and int(target[-1]) == eos_token_id:
            row_labels[i, n + m - 1] = -100
        mask[i, : n + m] = 1
    return {"input_ids": rows, "attention_mask": mask, "labels": row_labels}


def _looks_like_checkpoint(name: str) -> bool:
    return os.path.isdir(name) or "/" in name


def _config(
    backbone: str | PretrainedConfig,
    vocab_size: int,
    special: dict[str, int],
    d_model: int,
    num_layers: int,
    num_heads: int,
    d_ff: int,
    dropout: float,
    max_positions: int | None,
    overrides: dict[str, Any],
) -> PretrainedConfig:
    if isinstance(backbone, PretrainedConfig):
        config = backbone.__class__.from_dict({**backbone.to_dict(), **overrides})
        config.vocab_size = vocab_size
        for name, value in special.items():
            setattr(config, name, value)
        return config
    if not isinstance(backbone, str) or backbone not in CONFIG_MAPPING:
        raise ValueError(
            f"Unknown backbone {backbone!r}: pass a model type Transformers knows (llama, gpt2, qwen2, mistral, ...), "
            "a PretrainedConfig, or a folder or Hub id (owner/name) of a pretrained causal LM."
        )
    defaults = CONFIG_MAPPING[backbone]().to_dict()
    sizes = dict(
        d_model=d_model,
        num_layers=num_layers,
        num_heads=num_heads,
        num_key_value_heads=num_heads,
        d_ff=d_ff,
        max_positions=max_positions or 1024,
        dropout=dropout,
    )
    fields: dict[str, Any] = {}
    for generic, value in sizes.items():
        present = [name for name in _SIZE_FIELDS[generic] if name in defaults]
        if generic != "dropout":
            present = present[:1]
        fields.update(dict.fromkeys(present, value))
    if "is_decoder" in defaults:  # an encoder with a language-model head (BERT, ...) reads causally only if told
        fields["is_decoder"] = True
    return AutoConfig.for_model(backbone, vocab_size=vocab_size, **special, **{**fields, **overrides})


def _from_config(config: PretrainedConfig) -> PreTrainedModel:
    try:
        return AutoModelForCausalLM.from_config(config)
    except ValueError as error:  # Transformers' own message lists every causal LM config class: too long to read
        raise ValueError(
            f"Transformers has no causal LM for the model type {config.model_type!r}. Pass a decoder-only "
            "backbone: llama, gpt2, qwen2, mistral, ... (an encoder-decoder T5 is build_t5_model's)."
        ) from error
