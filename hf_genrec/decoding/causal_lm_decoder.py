"""The fast path's decoder for decoder-only models (``AutoModelForCausalLM``: GPT-2, Llama, Qwen2, ...).

Stock ``generate`` copies every prompt (the history's spelling) ``num_beams`` times and runs all the copies through
the model before the first token. Here each history's prompt runs once, with its key/value cache; the cache is
copied to the beams only after the first step (which needs no more than the prompt's last logits), and every later
step feeds one token per beam with that cache. Between steps only the generated tokens' part of the cache is
re-ordered (beams never leave their history, whose prompt part is the same for all its beams), where ``generate``
copies all of it. Attention masks and position
ids are those ``generate`` computes from a left-padded prompt's attention mask, so the beam search of
`hf_genrec.decoding.beam_search.shared_beam_search` returns the same items with the same scores, up to float
rounding.
"""

from __future__ import annotations

import inspect

import torch
from transformers import PreTrainedModel

from ..models.causal_lm import PLAIN_OUTPUT_LAYER, is_decoder_only

#: what a causal LM's forward must accept for the fast path: an attention mask, explicit positions and a cache
_FORWARD_ARGUMENTS = ("input_ids", "attention_mask", "position_ids", "use_cache")


def _cache_argument(model: PreTrainedModel) -> str | None:
    """The name the model's forward gives its key/value cache (``cache``; ``past_key_values`` before
    Transformers 5), or `None` when it takes neither."""
    parameters = inspect.signature(model.forward).parameters
    if not all(name in parameters for name in _FORWARD_ARGUMENTS):
        return None
    return next((name for name in ("cache", "past_key_values") if name in parameters), None)


def supports_cached_prompt(model: PreTrainedModel) -> bool:
    """Whether `_CausalLMDecoder` can run ``model``: a decoder-only model whose forward takes an attention mask,
    position ids and a cache (every ``AutoModelForCausalLM`` of Transformers with a ``Cache``)."""
    return is_decoder_only(model) and hasattr(model, "get_output_embeddings") and _cache_argument(model) is not None


def left_pad(
    input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` with every row's tokens moved to the right end (left padding, which a
    decoder-only model's prompt needs: the next token follows the last column), trimmed to the longest row.

    Rows may arrive padded on either side (the collator and the recommender pad on the right); the order of each
    row's real tokens is kept.
    """
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    mask = attention_mask.long()
    lengths = mask.sum(dim=1)
    empty = (lengths == 0).nonzero()
    if len(empty):
        raise ValueError(
            f"History {int(empty[0, 0])} is empty (its attention mask is all zeros): a decoder-only model reads the "
            "next item after the history's last token, so every history needs at least one item. Rank users "
            "without a history by popularity instead."
        )
    # a stable sort of the mask puts each row's padding first and keeps its tokens in order after it
    order = torch.sort(mask, dim=1, stable=True).indices
    width = int(lengths.max())
    order = order[:, order.shape[1] - width :]
    mask = mask.gather(1, order)
    input_ids = torch.where(mask.bool(), input_ids.gather(1, order), torch.full_like(order, pad_token_id))
    return input_ids, mask


class _CausalLMDecoder:
    """One decoding step of a decoder-only model over ``batch * beams`` rows, the prompt run once per history.

    The interface of `hf_genrec.decoding.beam_search._T5Decoder`: ``step(tokens, position)`` returns the logits
    after ``tokens`` (``[rows]``, the tokens at decoder ``position``; position 0 is the decoder start token, which a
    causal LM does not read: its logits are the prompt's last ones) and ``reorder(rows)`` re-orders the cache
    (``rows`` of ``batch`` histories after the first step: the cache is then copied to the beams).

    Args:
        model: the causal LM.
        input_ids: ``[batch, length]`` the prompts (histories' spellings), padded on either side.
        attention_mask: ``[batch, length]`` 1 on the prompts' tokens.
        pad_token_id: the token the left padding takes.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        pad_token_id: int,
    ):
        self.model = model
        self.cache_argument = _cache_argument(model)
        if not is_decoder_only(model) or self.cache_argument is None:
            raise ValueError(
                f"{type(model).__name__} is not a decoder-only model whose forward takes attention_mask, "
                "position_ids and a cache; decode it with stock generate (method='vectorised')."
            )
        input_ids, mask = left_pad(input_ids, attention_mask, pad_token_id)
        self.batch = input_ids.shape[0]
        #: interface of the T5 decoder (a state added to the start token): a causal LM has none
        self.start_state: torch.Tensor | None = None
        #: the layer that turns `hidden_states` into logits, where the logits are exactly that (`PLAIN_OUTPUT_LAYER`):
        #: the beam search may then score the trie's tokens alone; `None` for other architectures
        plain = getattr(model.config, "model_type", None) in PLAIN_OUTPUT_LAYER
        self.output_layer = model.get_output_embeddings() if plain else None
        # as generate computes them: the cumulative count of real tokens, 0 on the padding
        positions = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 0)
        self.prompt_last = self._forward(input_ids=input_ids, attention_mask=mask, position_ids=positions)
        self.mask = mask
        self.prompt_length = mask.shape[1]
        self.last_position = positions[:, -1]

    def _forward(self, **inputs: torch.Tensor) -> torch.Tensor:
        """Run the model on ``inputs`` with the cache and keep the new cache; return the last position's states (a
        plain output layer: the body alone runs) or logits."""
        if self.output_layer is not None:
            out = self.model.base_model(**inputs, use_cache=True, return_dict=True)
            self.cache = self._cache_of(out)
            return out.last_hidden_state[:, -1, :]
        extra = {}
        if "logits_to_keep" in inspect.signature(self.model.forward).parameters:
            extra["logits_to_keep"] = 1  # only the last position's logits are read (generate does the same)
        out = self.model(**inputs, use_cache=True, return_dict=True, **extra)
        self.cache = self._cache_of(out)
        return out.logits[:, -1, :]

    def _cache_of(self, out) -> object:
        cache = getattr(out, "cache", None)
        return cache if cache is not None else out.past_key_values

    def reorder(self, rows: torch.Tensor) -> None:
        """Beam ``i`` continues from row ``rows[i]``: the cache, mask and positions follow."""
        rows = rows.to(self.mask.device)
        if self._within_histories(rows):
            # every beam continues a beam of its own history, whose prompt keys/values, mask and positions are the
            # same: only the generated tokens' part of the cache moves (stock generate copies all of it every step)
            prompt = self.prompt_length
            for layer in self.cache.layers:
                for states in (layer.keys, layer.values):
                    states[:, :, prompt:] = states[:, :, prompt:].index_select(0, rows)
            return
        if hasattr(self.cache, "reorder_cache"):
            self.cache.reorder_cache(rows)
        else:  # a legacy tuple of (key, value) per layer
            self.cache = tuple(tuple(t.index_select(0, rows) for t in layer) for layer in self.cache)
        self.mask = self.mask.index_select(0, rows)
        self.last_position = self.last_position.index_select(0, rows)

    def _within_histories(self, rows: torch.Tensor) -> bool:
        """Whether ``rows`` only moves beams among the beams of one history, in a cache of plain growing layers
        (``DynamicLayer``: keys and values ``[rows, heads, length, dim]``, the prompt first) already copied to the
        beams."""
        current = self.mask.shape[0]
        if current == self.batch or len(rows) != current or type(self.cache).__name__ != "DynamicCache":
            return False
        if any(type(layer).__name__ != "DynamicLayer" for layer in self.cache.layers):
            return False
        beams = current // self.batch
        return bool((rows // beams == torch.arange(current, device=rows.device) // beams).all())

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Logits ``[rows, vocab]`` for the token after ``tokens`` ``[rows]``, the decoder's tokens at ``position``.

        At position 0 (the decoder start, one row per history) these are the prompt's last logits; after that
        ``rows`` is ``batch * beams`` (beams of a history adjacent) and the tokens are fed with the cache.
        """
        last = self._advance(tokens, position)
        return last if self.output_layer is None else self.output_layer(last)

    def hidden_states(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """The states ``[rows, d_model]`` `output_layer` reads for the token after ``tokens`` (see `step`); only for
        a model with a plain output layer."""
        if self.output_layer is None:
            raise ValueError(f"{type(self.model).__name__}'s logits are not its output layer on its states.")
        return self._advance(tokens, position)

    def _advance(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        if position == 0:
            return self.prompt_last
        rows = tokens.shape[0]
        if rows != self.mask.shape[0]:
            raise ValueError(f"{rows} rows to decode but the cache holds {self.mask.shape[0]}: reorder it first.")
        # the prompt's mask, then one column per token generated so far (the one fed now included)
        ones = torch.ones(rows, position, dtype=self.mask.dtype, device=self.mask.device)
        return self._forward(
            input_ids=tokens[:, None],
            attention_mask=torch.cat([self.mask, ones], dim=1),
            position_ids=(self.last_position + position)[:, None],
            **{self.cache_argument: self.cache},
        )
