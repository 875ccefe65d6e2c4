"""Constrained beam search that returns ranked items instead of token sequences."""

from __future__ import annotations

from collections.abc import Callable

import torch
from transformers import PreTrainedModel

from .constraints import ItemTrie, prefix_allowed_tokens_fn
from .tokenization import ItemTokenizer


def build_trie(item_tokenizer: ItemTokenizer) -> ItemTrie:
    """The trie of every item spelling in ``item_tokenizer``'s catalogue."""
    return ItemTrie(item_tokenizer.spellings())


@torch.no_grad()
def generate_items(
    model: PreTrainedModel,
    item_tokenizer: ItemTokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    num_beams: int = 20,
    k: int = 10,
    trie: ItemTrie | None = None,
    allowed_fn: Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items for each encoded history by trie-constrained beam search.

    Returns:
        `(indices, scores)`, both ``[batch, k]``: item row indices best first (``-1`` where beam search ran out of
        valid items, e.g. a catalogue smaller than ``num_beams``) and their log-probabilities under the model.
    """
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams; got num_beams={num_beams}. Set num_beams >= k.")
    if allowed_fn is None:
        trie = trie if trie is not None else build_trie(item_tokenizer)
        allowed_fn = prefix_allowed_tokens_fn(
            trie, item_tokenizer.pad_token_id, model.generation_config.decoder_start_token_id
        )
    was_training = model.training
    model.eval()
    out = model.generate(
        input_ids=input_ids,
        attention_mask=attention_mask,
        num_beams=num_beams,
        num_return_sequences=k,
        max_new_tokens=item_tokenizer.id_length,
        prefix_allowed_tokens_fn=allowed_fn,
        # No length normalisation: a spelling's score is its exact log-probability, also for variable-length IDs.
        length_penalty=0.0,
        # "never" + length_penalty=0 is exact beam search: a beam only stops when no running beam can still beat it,
        # which matters when spellings have different lengths (title IDs)
        early_stopping="never",
        do_sample=False,
        return_dict_in_generate=True,
        output_scores=True,
    )
    model.train(was_training)
    batch = input_ids.shape[0]
    sequences = out.sequences[:, 1:].tolist()
    indices = torch.tensor(item_tokenizer.decode_index(sequences), dtype=torch.long).view(batch, k)
    scores = out.sequences_scores.float().view(batch, k).cpu()
    scores = torch.where(indices >= 0, scores, torch.full_like(scores, float("-inf")))
    return indices, scores
