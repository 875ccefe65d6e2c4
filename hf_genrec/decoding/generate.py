"""Constrained beam search that returns ranked items instead of token sequences.

Three interchangeable ways to keep beam search on the catalogue, all with the same results:

- ``"fast"`` (the default): :func:`~hf_genrec.decoding.beam_search.shared_beam_search`, cross-attention shared by beams
  (T5) or each prompt run once for all its beams (decoder-only models), masked by
  :class:`~hf_genrec.decoding.trie.TrieLogitsProcessor`;
- ``"vectorised"``: stock ``model.generate`` with the ``TrieLogitsProcessor``;
- ``"reference"``: stock ``model.generate`` with the Python ``prefix_allowed_tokens_fn``.

A decoder-only model (``AutoModelForCausalLM``: GPT-2, Llama, Qwen2, ...) reads the history's spelling as its prompt
and spells the next item after it; the histories are left-padded for it here, whichever side they were padded on.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList, PreTrainedModel

from ..models.causal_lm import is_decoder_only
from ..tokenization import ItemTokenizer
from .beam_search import shared_beam_search, supports_shared_beam_search
from .causal_lm_decoder import left_pad
from .exclude_history import ExcludeItemsLogitsProcessor
from .prefix_allowed import ItemTrie, prefix_allowed_tokens_fn
from .trie import TrieIndex, TrieLogitsProcessor

DECODING_METHODS = ("auto", "fast", "vectorised", "reference")
#: generate marks the beams it must keep but that are not real candidates with scores near -1e9
_NOT_A_CANDIDATE = -1.0e8


def _fsdp_managed(model: torch.nn.Module) -> bool:
    """Whether ``model`` is sharded by FSDP (1 or 2; accelerate's FSDP2 makes the model an ``FSDPModule``)."""
    from transformers.integrations.fsdp import is_fsdp_managed_module

    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without FSDP2
        FSDPModule = ()  # noqa: N806
    return bool(is_fsdp_managed_module(model) or isinstance(model, FSDPModule))


def needs_synced_gpus(model: torch.nn.Module) -> bool:
    """Whether decoding must keep all processes in step: DeepSpeed ZeRO-3 or FSDP with more than one process."""
    import torch.distributed as dist
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return False
    return bool(is_deepspeed_zero3_enabled() or _fsdp_managed(model))


def build_trie(item_tokenizer: ItemTokenizer) -> ItemTrie:
    """The (Python, reference) trie of every item spelling in ``item_tokenizer``'s catalogue."""
    return ItemTrie(item_tokenizer.spellings())


def build_trie_index(item_tokenizer: ItemTokenizer, rows: np.ndarray | None = None) -> TrieIndex:
    """The compact, vectorised trie of every item spelling (or of the items at ``rows``), for
    :class:`TrieLogitsProcessor`."""
    spellings = item_spellings(item_tokenizer)
    if rows is not None:
        spellings = spellings[rows]
    return TrieIndex(spellings, len(item_tokenizer), item_tokenizer.pad_token_id)


def item_spellings(item_tokenizer: ItemTokenizer) -> np.ndarray:
    """``[n_items, max_length]`` token ids of every item's spelling (EOS included), ``-1`` after it."""
    table, lengths = item_tokenizer.item_token_ids, item_tokenizer.item_lengths
    return np.where(np.arange(table.shape[1])[None, :] < lengths[:, None], table, -1)


def _reading_from(processor: LogitsProcessor, start_length: int) -> LogitsProcessor:
    """``processor`` (each of a list) reading the spelling after ``start_length`` tokens of every sequence: a copy
    with that ``decoder_start_length`` (a decoder-only model's sequences start with its prompt), the caller's
    processor left as it was."""
    if isinstance(processor, LogitsProcessorList):
        return LogitsProcessorList(_reading_from(member, start_length) for member in processor)
    if not hasattr(processor, "decoder_start_length"):
        return processor
    shifted = copy.copy(processor)
    shifted.decoder_start_length = start_length
    return shifted


class _LogSoftmax(LogitsProcessor):
    """Normalise scores over the tokens left, as ``renormalize_logits=True`` does at the end of ``generate``."""

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return torch.log_softmax(scores, dim=-1)


@torch.no_grad()
def generate_items(
    model: PreTrainedModel | Sequence[PreTrainedModel],
    item_tokenizer: ItemTokenizer,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    *,
    num_beams: int = 20,
    k: int = 10,
    method: str = "auto",
    index: TrieIndex | None = None,
    trie: ItemTrie | None = None,
    synced_gpus: bool | None = None,
    exclude_items: Sequence[Sequence[int]] | None = None,
    fusion: LogitsProcessor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` items for each encoded history by trie-constrained beam search.

    Args:
        model: the seq2seq model or decoder-only causal LM, or several trained on the same item tokenizer (an
            ensemble, e.g. seeds of one recipe): each decoding step then follows the mean of their next-token
            distributions (`shared_beam_search`; ensembles need the ``"fast"`` method, which ``"auto"`` picks).
        input_ids: ``[batch, length]`` the encoded histories (`ItemTokenizer.encode_history`), padded on either
            side (a decoder-only model's prompts are left-padded here).
        method: ``"auto"`` (``"fast"`` for T5 models and causal LMs, else ``"vectorised"``), ``"fast"``,
            ``"vectorised"`` or ``"reference"`` (see the module docstring); all return the same items and scores.
        index: a prebuilt :class:`TrieIndex` (built from ``item_tokenizer`` when missing).
        trie: a prebuilt :class:`ItemTrie` for ``method="reference"``.
        synced_gpus: keep every process decoding until all are done, as DeepSpeed ZeRO-3 and FSDP need (each forward
            pass gathers weights from all processes). Default: on when either is active with more than one process,
            as in ``generate``.
        exclude_items: for each history, item rows the search must not return (e.g. the history's own items, see
            `ItemTokenizer.decode_history`), banned inside the search (`ExcludeItemsLogitsProcessor`), so each
            history still gets ``k`` items while the catalogue has that many left.
        fusion: a processor that adds a bonus to the normalised, constrained log-probabilities, applied after
            everything else on every path (e.g. `hf_genrec.models.prior.TransitionFusionLogitsProcessor`); the
            returned scores then include it. Built as for T5 (``decoder_start_length=1``): for a decoder-only model
            a copy reading after the prompt is used.

    Returns:
        `(indices, scores)`, both ``[batch, k]``: item row indices best first (``-1`` where beam search ran out of
        valid items, e.g. a catalogue smaller than ``num_beams``) and their log-probabilities under the model.
    """
    if k > num_beams:
        raise ValueError(f"k={k} needs at least as many beams; got num_beams={num_beams}. Set num_beams >= k.")
    if method not in DECODING_METHODS:
        raise ValueError(f"method must be one of {DECODING_METHODS}, got {method!r}.")
    models = list(model) if isinstance(model, (Sequence, torch.nn.ModuleList)) else [model]
    if not models:
        raise ValueError("generate_items needs a model (or a non-empty list of models for an ensemble).")
    if method == "auto":
        # FSDP gathers the root module's weights (embeddings, LM head) only inside the root's own forward, which the
        # fast path does not call: under FSDP decode with stock generate
        fast = all(supports_shared_beam_search(m) and not _fsdp_managed(m) for m in models)
        method = "fast" if fast or len(models) > 1 else "vectorised"
    if len(models) > 1:
        if method != "fast":
            raise ValueError(
                f"An ensemble of {len(models)} models decodes with method='fast' (hf_genrec's beam search, which "
                f"mixes the models' distributions at every step); stock generate ({method!r}) takes one model."
            )
        flags = {bool(getattr(m.generation_config, "renormalize_logits", False)) for m in models}
        if len(flags) > 1:
            raise ValueError(
                "An ensemble's models must all decode with renormalised scores or all without "
                "(generation_config.renormalize_logits differs): mix models trained with the same loss."
            )
    model = models[0]
    if synced_gpus is None:
        synced_gpus = any(needs_synced_gpus(m) for m in models)
    start_id = model.generation_config.decoder_start_token_id
    if start_id is None:
        start_id = item_tokenizer.pad_token_id
    decoder_only = is_decoder_only(model)
    # the tokens in front of the spelling in every sequence the processors see: T5's decoder start token (the fast
    # path keeps one as a placeholder for causal LMs too), or the left-padded prompt stock generate keeps in front
    start_length = 1
    if decoder_only and method != "fast":
        input_ids, attention_mask = left_pad(input_ids, attention_mask, item_tokenizer.pad_token_id)
        start_length = input_ids.shape[1]
    if decoder_only and fusion is not None:
        fusion = _reading_from(fusion, start_length)
    if index is None and (method != "reference" or exclude_items is not None):
        index = build_trie_index(item_tokenizer)
    extra = []
    if exclude_items is not None:
        if len(exclude_items) != input_ids.shape[0]:
            raise ValueError(
                f"exclude_items has {len(exclude_items)} lists for {input_ids.shape[0]} histories; give one list of "
                "item rows per history (an empty one to exclude nothing)."
            )
        spellings = torch.from_numpy(item_spellings(item_tokenizer))
        extra.append(ExcludeItemsLogitsProcessor(index, spellings, exclude_items, decoder_start_length=start_length))
    renormalize = bool(getattr(model.generation_config, "renormalize_logits", False))
    overrides = {}
    if decoder_only:  # a pretrained checkpoint's generation config names its own text's end and padding tokens
        overrides.update(pad_token_id=item_tokenizer.pad_token_id, eos_token_id=item_tokenizer.eos_token_id)
    if fusion is not None and method != "fast":
        # generate normalises after every custom processor, which would undo the bonus: normalise before it here
        extra += [_LogSoftmax()] if renormalize else []
        # generate refuses a LogitsProcessorList nested in another (fusion_processors returns one): flatten it
        extra += list(fusion) if isinstance(fusion, LogitsProcessorList) else [fusion]
        overrides["renormalize_logits"] = False
    was_training = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        if method != "reference":
            processor = LogitsProcessorList([TrieLogitsProcessor(index, decoder_start_length=start_length), *extra])
        if method == "fast":
            sequences, scores = shared_beam_search(
                models if len(models) > 1 else model,
                input_ids,
                attention_mask,
                processor,
                num_beams=num_beams,
                num_return_sequences=k,
                max_new_tokens=item_tokenizer.id_length,
                decoder_start_token_id=start_id,
                eos_token_id=item_tokenizer.eos_token_id,
                pad_token_id=item_tokenizer.pad_token_id,
                renormalize=renormalize,
                synced_gpus=synced_gpus,
                score_processor=fusion,
                index=index,
            )
        else:
            if method == "vectorised":
                constraint = {"logits_processor": processor}
            else:
                trie = trie if trie is not None else build_trie(item_tokenizer)
                allowed = prefix_allowed_tokens_fn(
                    trie, item_tokenizer.pad_token_id, start_id, prompt_length=start_length if decoder_only else None
                )
                constraint = {"prefix_allowed_tokens_fn": allowed, "logits_processor": LogitsProcessorList(extra)}
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention_mask,
                num_beams=num_beams,
                num_return_sequences=k,
                max_new_tokens=item_tokenizer.id_length,
                # No length normalisation and "never" stopping early: exact beam search, where a spelling's score is
                # its log-probability, also for variable-length IDs.
                length_penalty=0.0,
                early_stopping="never",
                do_sample=False,
                return_dict_in_generate=True,
                output_scores=True,
                synced_gpus=synced_gpus,
                **constraint,
                **overrides,
            )
            sequences, scores = out.sequences, out.sequences_scores
    finally:
        for m, mode in zip(models, was_training):
            m.train(mode)
    batch = input_ids.shape[0]
    spelled = sequences[:, start_length:].tolist()
    indices = torch.tensor(item_tokenizer.decode_index(spelled), dtype=torch.long).view(batch, k)
    scores = scores.float().view(batch, k).cpu()
    # When the catalogue offers fewer spellings than beams, beam search fills the rest with copies of the start
    # beam that it scores -1e9 (and with dead beams at -inf): those are not recommendations.
    valid = (indices >= 0) & (scores > _NOT_A_CANDIDATE)
    indices = torch.where(valid, indices, torch.full_like(indices, -1))
    scores = torch.where(valid, scores, torch.full_like(scores, float("-inf")))
    return indices, scores
