"""Exact beam search for T5 that computes each history's cross-attention keys/values once and shares them by beams.

Stock ``generate`` copies every encoded history ``num_beams`` times, projects the copies to cross-attention keys and
values, and re-orders that cache after every step, although all beams of one history read the same encoder output.
Here the decoder's queries of all beams of a history attend to one shared copy in a single batched matmul, and only
the (tiny) self-attention cache is re-ordered. The search itself follows ``GenerationMixin._beam_search`` step for
step (2 x beams candidates, finished hypotheses, the early-stop heuristic), so the results are the same items with
the same scores, up to float rounding.

Decoder-only models (causal LMs) decode through the same search with `_CausalLMDecoder`: each history's prompt runs
once, not once per beam, and its key/value cache is copied to the beams after the first step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.nn import functional as F
from transformers import LogitsProcessor, PreTrainedModel

from .causal_lm_decoder import _CausalLMDecoder, supports_cached_prompt
from .trie import TrieIndex, allowed_logits


def _processors(processor: LogitsProcessor | None) -> list[LogitsProcessor]:
    """The members of a (possibly nested) `LogitsProcessorList`, or ``[processor]``."""
    if processor is None:
        return []
    if isinstance(processor, list):
        return [member for item in processor for member in _processors(item)]
    return [processor]


def _on_candidates(
    processor: LogitsProcessor | None, prefix: torch.Tensor, candidates: torch.Tensor, scores: torch.Tensor
) -> torch.Tensor:
    """``processor`` (each member of a list in turn) applied to the scores of each row's ``candidates``."""
    for member in _processors(processor):
        scores = member.candidate_scores(prefix, candidates, scores)
    return scores


def supports_shared_beam_search(model: PreTrainedModel) -> bool:
    """The fast path covers T5-style encoder-decoders (T5, mT5-like configs) and decoder-only causal LMs (GPT-2,
    Llama, Qwen2, ...: `_CausalLMDecoder`); others use stock ``generate``."""
    if supports_cached_prompt(model):
        return True
    needed = ("encoder", "decoder", "lm_head")
    return getattr(model.config, "model_type", None) in ("t5", "mt5", "hf_genrec_t5") and all(
        hasattr(model, n) for n in needed
    )


class _T5Decoder:
    """One decoding step of a T5 decoder over ``batch * beams`` rows with cross-attention shared per history."""

    def __init__(self, model: PreTrainedModel, encoder_states: torch.Tensor, attention_mask: torch.Tensor | None):
        self.model = model
        self.decoder = model.decoder
        self.blocks = list(self.decoder.block)
        first = self.blocks[0].layer[0].SelfAttention
        self.bias_module = first  # T5 computes the relative position bias in layer 0 and shares it
        self.n_heads, self.d_kv = first.n_heads, first.key_value_proj_dim
        batch, length, _ = encoder_states.shape
        self.batch = batch
        # cross-attention keys/values: once per history, not once per beam
        self.cross = []
        for block in self.blocks:
            attention = block.layer[1].EncDecAttention
            k = attention.k(encoder_states).view(batch, length, self.n_heads, self.d_kv).transpose(1, 2)
            v = attention.v(encoder_states).view(batch, length, self.n_heads, self.d_kv).transpose(1, 2)
            self.cross.append((k, v))
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.long, device=encoder_states.device)
        dtype = encoder_states.dtype
        self.cross_mask = torch.zeros(batch, 1, 1, length, dtype=dtype, device=encoder_states.device)
        self.cross_mask.masked_fill_(attention_mask[:, None, None, :] == 0, torch.finfo(dtype).min)
        self.self_cache: list[tuple[torch.Tensor, torch.Tensor]] = []
        #: ``[batch, d_model]`` added to the start token's embedding (one row per history), or `None`
        self.start_state: torch.Tensor | None = None
        scale = getattr(model.config, "scale_decoder_outputs", model.config.tie_word_embeddings)
        self.output_scale = model.config.d_model**-0.5 if scale else 1.0

    def reorder(self, rows: torch.Tensor) -> None:
        self.self_cache = [(k.index_select(0, rows), v.index_select(0, rows)) for k, v in self.self_cache]

    @property
    def output_layer(self) -> torch.nn.Module:
        """The layer that turns `hidden_states` into logits."""
        return self.model.lm_head

    def step(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """Logits ``[rows, vocab]`` for the next token after ``tokens`` ``[rows]`` at decoder ``position``.

        ``rows`` is ``batch`` (first step, one row per history) or ``batch * beams`` (beams of a history adjacent).
        """
        return self.output_layer(self.hidden_states(tokens, position))

    def hidden_states(self, tokens: torch.Tensor, position: int) -> torch.Tensor:
        """The states ``[rows, d_model]`` the output layer reads for the token after ``tokens`` (see `step`)."""
        rows = tokens.shape[0]
        beams = rows // self.batch
        hidden = self.decoder.embed_tokens(tokens)[:, None, :]
        if position == 0 and self.start_state is not None:
            hidden = hidden + self.start_state.repeat_interleave(beams, dim=0)[:, None, :]
        bias = self.bias_module.compute_bias(1, position + 1, device=hidden.device, past_seen_tokens=position)
        first_step = not self.self_cache
        new_cache = []
        for i, block in enumerate(self.blocks):
            # self-attention over this beam's own tokens (cached keys/values + the new one)
            layer = block.layer[0]
            attention = layer.SelfAttention
            normed = layer.layer_norm(hidden)
            q = attention.q(normed).view(rows, 1, self.n_heads, self.d_kv).transpose(1, 2)
            k = attention.k(normed).view(rows, 1, self.n_heads, self.d_kv).transpose(1, 2)
            v = attention.v(normed).view(rows, 1, self.n_heads, self.d_kv).transpose(1, 2)
            if not first_step:
                past_k, past_v = self.self_cache[i]
                k, v = torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)
            new_cache.append((k, v))
            weights = torch.softmax(q @ k.transpose(-1, -2) + bias, dim=-1)  # T5 does not scale q.k
            out = (weights @ v).transpose(1, 2).reshape(rows, 1, -1)
            hidden = hidden + attention.o(out)
            # cross-attention: the beams of one history are queries against that history's single key/value copy
            layer = block.layer[1]
            attention = layer.EncDecAttention
            normed = layer.layer_norm(hidden)
            q = attention.q(normed).view(self.batch, beams, self.n_heads, self.d_kv).transpose(1, 2)
            cross_k, cross_v = self.cross[i]
            weights = torch.softmax(q @ cross_k.transpose(-1, -2) + self.cross_mask, dim=-1)
            out = (weights @ cross_v).transpose(1, 2).reshape(rows, 1, -1)
            hidden = hidden + attention.o(out)
            hidden = block.layer[-1](hidden)  # feed-forward (plain or gated), with its residual
        self.self_cache = new_cache
        return self.decoder.final_layer_norm(hidden)[:, 0, :] * self.output_scale


def _start_decoder(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None, pad_token_id: int
) -> _T5Decoder | _CausalLMDecoder:
    """Encode the histories once and set up ``model``'s decoder over them (a causal LM: run its prompts once)."""
    if supports_cached_prompt(model):
        return _CausalLMDecoder(model, input_ids, attention_mask, pad_token_id)
    encoded = model.encoder(input_ids=input_ids, attention_mask=attention_mask)
    # An item-position encoder (GenRecT5Config.item_positions) returns states per item, with their own mask.
    item_mask = getattr(encoded, "item_attention_mask", None)
    cross_mask = attention_mask if item_mask is None else item_mask
    decoder = _T5Decoder(model, encoded.last_hidden_state, cross_mask)
    if hasattr(model, "decoder_start_state"):  # GenRecT5Config.start_from_last_state
        decoder.start_state = model.decoder_start_state(encoded.last_hidden_state, cross_mask)
    return decoder


def _gather(tensor: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``tensor[b, index[b, j], ...]`` for ``[batch, beams, ...]`` tensors."""
    view = index.view(*index.shape, *([1] * (tensor.dim() - 2))).expand(*index.shape, *tensor.shape[2:])
    return tensor.gather(1, view)


@torch.no_grad()
def _all_processes_done(done: bool, device: torch.device) -> bool:
    """Whether every process of the default group is done (an all-reduce, as generate does with synced_gpus)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return done
    flag = torch.tensor(0.0 if done else 1.0, device=device)
    dist.all_reduce(flag)
    return flag.item() == 0.0


def shared_beam_search(
    model: PreTrainedModel | Sequence[PreTrainedModel],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    logits_processor: LogitsProcessor,
    *,
    num_beams: int,
    num_return_sequences: int,
    max_new_tokens: int,
    decoder_start_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    length_penalty: float = 0.0,
    early_stopping: bool | str = "never",
    renormalize: bool = False,
    synced_gpus: bool = False,
    score_processor: LogitsProcessor | None = None,
    index: TrieIndex | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Beam search with cross-attention shared by the beams of each history.

    ``synced_gpus=True`` (DeepSpeed ZeRO-3 / FSDP, where every forward pass gathers weights from all processes)
    keeps this process running decoder steps, with their results unused, until every process has finished.

    ``renormalize=True`` takes the log-softmax again after the logits processor, as ``generate`` does with
    ``renormalize_logits=True`` (for models trained with the trie-normalised loss).

    ``score_processor`` runs after that, on the normalised log-probabilities: for bonuses that must not be
    normalised away (`hf_genrec.models.prior.TransitionFusionLogitsProcessor`).

    ``index``, the item trie the processors keep the beams on, lets a search with ``renormalize=True`` compute the
    logits of only the tokens that continue each beam on the trie (`allowed_logits`): 256 codes per step rather than
    the whole vocabulary, or a beam's few children where every item has a token of its own (per-item collision
    codes). The processors then act on those candidates (each needs a ``candidate_scores`` method, as hf_genrec's
    have); the results are the same. Without it, or with a processor or a model that cannot (a causal LM outside
    `PLAIN_OUTPUT_LAYER`), every step scores the whole vocabulary.

    A decoder-only ``model`` (a causal LM) reads ``input_ids`` as its prompts (padded on either side; they are
    left-padded here); the returned sequences then start with ``decoder_start_token_id`` as a placeholder, and
    ``logits_processor`` sees that one token before the spelling, as for T5 (``decoder_start_length=1``).

    ``model`` may be several models over the same vocabulary (an ensemble, e.g. seeds of one recipe): each step's
    next-token distribution is then the mean of theirs, each taken after ``logits_processor`` (and ``renormalize``),
    so a spelling's score is the log of the product over its steps of the averaged probabilities, as ensembles of
    translation models decode. ``score_processor`` applies once, to the mixture.

    Returns:
        `(sequences, scores)`: ``[batch * num_return_sequences, 1 + steps]`` token ids (decoder start first) and
        ``[batch * num_return_sequences]`` sequence scores, ordered as ``generate(..., num_return_sequences=...)``.
    """
    models = list(model) if isinstance(model, (Sequence, torch.nn.ModuleList)) else [model]
    if not models:
        raise ValueError("shared_beam_search needs a model (or a non-empty list of models for an ensemble).")
    for member in models:
        if not supports_shared_beam_search(member):
            raise ValueError(
                f"shared_beam_search supports T5 encoder-decoders and causal LMs, not {type(member).__name__}."
            )
    vocab_sizes = {member.config.vocab_size for member in models}
    if len(vocab_sizes) > 1:
        raise ValueError(
            f"An ensemble's models must share one vocabulary (the same item tokenizer); got vocab sizes "
            f"{sorted(vocab_sizes)}."
        )
    if num_return_sequences > num_beams:
        raise ValueError(f"num_return_sequences={num_return_sequences} > num_beams={num_beams}.")
    device = input_ids.device
    batch = input_ids.shape[0]
    decoders = [_start_decoder(member, input_ids, attention_mask, pad_token_id) for member in models]
    # without renormalising, a token's log-probability is relative to the whole vocabulary: every logit is needed
    sparse = (
        index is not None
        and renormalize
        and all(getattr(decoder, "output_layer", None) is not None for decoder in decoders)
        and all(hasattr(p, "candidate_scores") for p in _processors(logits_processor) + _processors(score_processor))
    )
    if sparse and index.keys.device != device:
        index.to(device)

    def candidate_log_probs(prefix: torch.Tensor, position: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`next_log_probs` over each row's candidate tokens only: `(log_probs, candidates)`, both ``[rows, K + 1]``;
        the last column is the pad token, the one choice of a row that nothing continues (as the trie processor
        leaves a finished or dead beam)."""
        spelled = prefix[:, 1:]  # the decoder start (or a causal LM's placeholder) is not part of the spelling
        per_model, candidates = [], None
        for decoder in decoders:
            hidden = decoder.hidden_states(prefix[:, -1], position=position)
            logits, candidates, allowed = allowed_logits(hidden, decoder.output_layer, index, spelled)
            scores = _on_candidates(
                logits_processor, prefix, candidates, logits.float().masked_fill(~allowed, -math.inf)
            )
            dead = ~torch.isfinite(scores).any(dim=1, keepdim=True)
            pad = torch.zeros_like(dead, dtype=scores.dtype).masked_fill(~dead, -math.inf)
            per_model.append(F.log_softmax(torch.cat([scores, pad], dim=1), dim=-1))
        candidates = torch.cat([candidates, torch.full_like(candidates[:, :1], pad_token_id)], dim=1)
        if len(per_model) == 1:
            log_probs = per_model[0]
        else:
            log_probs = torch.logsumexp(torch.stack(per_model), dim=0) - math.log(len(per_model))
        if score_processor is not None:
            log_probs = torch.cat([_on_candidates(score_processor, prefix, candidates[:, :-1], log_probs[:, :-1]),
                                   log_probs[:, -1:]], dim=1)  # fmt: skip
        return log_probs, candidates

    def next_log_probs(prefix: torch.Tensor, position: int) -> torch.Tensor:
        """The (ensemble's) normalised, constrained next-token log-probabilities after each row of ``prefix``."""
        per_model = []
        for decoder in decoders:
            log_probs = logits_processor(
                prefix, F.log_softmax(decoder.step(prefix[:, -1], position=position).float(), dim=-1)
            )
            per_model.append(F.log_softmax(log_probs, dim=-1) if renormalize else log_probs)
        if len(per_model) == 1:
            log_probs = per_model[0]
        else:  # the mean of the members' probabilities, in log space
            log_probs = torch.logsumexp(torch.stack(per_model), dim=0) - math.log(len(per_model))
        return log_probs if score_processor is None else score_processor(prefix, log_probs)

    max_length = 1 + max_new_tokens
    beams_to_keep = 2 * num_beams
    top_num_beam_mask = torch.arange(beams_to_keep, device=device) < num_beams
    neg = -1.0e9

    running = torch.full((batch, num_beams, max_length), pad_token_id, dtype=torch.long, device=device)
    running[:, :, 0] = decoder_start_token_id
    finished = running.clone()
    running_scores = torch.zeros(batch, num_beams, device=device)
    running_scores[:, 1:] = neg  # as generate: only the first copy of each history may start beams
    finished_scores = torch.full((batch, num_beams), neg, device=device)
    is_finished = torch.zeros(batch, num_beams, dtype=torch.bool, device=device)
    unsatisfied = torch.ones(batch, 1, dtype=torch.bool, device=device)
    offsets = (torch.arange(batch, device=device) * num_beams)[:, None]

    cur_len = 1
    peer_done = False  # synced_gpus: this process is done but others still decode
    while True:
        if peer_done:  # keep the collective forward passes in step with the other processes
            for decoder in decoders:
                decoder.step(running[:, :, cur_len - 1].reshape(-1), position=cur_len - 1)
            cur_len += 1
            if _all_processes_done(True, device):
                break
            continue
        candidates = None  # the token of each column of log_probs, when not the whole vocabulary
        if cur_len == 1:  # every beam of a history is the decoder start: score it once and broadcast
            if sparse:
                log_probs, candidates = candidate_log_probs(running[:, 0, :1], position=0)
                candidates = candidates[:, None, :].expand(batch, num_beams, -1)
            else:
                log_probs = next_log_probs(running[:, 0, :1], position=0)
            log_probs = log_probs[:, None, :].expand(batch, num_beams, -1)
        else:
            flat = running[:, :, :cur_len].reshape(batch * num_beams, cur_len)
            if sparse:
                log_probs, candidates = candidate_log_probs(flat, position=cur_len - 1)
                candidates = candidates.view(batch, num_beams, -1)
            else:
                log_probs = next_log_probs(flat, position=cur_len - 1)
            log_probs = log_probs.view(batch, num_beams, -1)
        vocab = log_probs.shape[-1]
        accumulated = (log_probs + running_scores[:, :, None]).reshape(batch, -1)
        topk_scores, topk_index = torch.topk(accumulated, k=beams_to_keep)
        origin = topk_index // vocab
        topk_sequences = _gather(running, origin)
        column = topk_index % vocab
        if candidates is not None:
            column = candidates.reshape(batch, -1).gather(1, topk_index)
        topk_sequences[:, :, cur_len] = column
        hits = (topk_sequences[:, :, cur_len] == eos_token_id) | (cur_len + 1 >= max_length)

        # running beams for the next step: the best that did not finish
        running_candidates = topk_scores + hits.float() * neg
        keep = torch.topk(running_candidates, k=num_beams).indices
        running = _gather(topk_sequences, keep)
        running_scores = _gather(running_candidates, keep)
        running_origin = _gather(origin, keep)

        # finished hypotheses: merge the newly finished among the top num_beams candidates
        just_finished = hits & top_num_beam_mask[None, :]
        candidate_scores = topk_scores / ((cur_len + 1 - 1) ** length_penalty)
        full = is_finished.all(dim=-1, keepdim=True) & (early_stopping is True)
        candidate_scores = candidate_scores + full.float() * neg
        candidate_scores = candidate_scores + (~unsatisfied).float() * neg
        candidate_scores = candidate_scores + (~just_finished).float() * neg
        merged_sequences = torch.cat([finished, topk_sequences], dim=1)
        merged_scores = torch.cat([finished_scores, candidate_scores], dim=1)
        merged_finished = torch.cat([is_finished, just_finished], dim=1)
        best = torch.topk(merged_scores, k=num_beams).indices
        finished = _gather(merged_sequences, best)
        finished_scores = _gather(merged_scores, best)
        is_finished = _gather(merged_finished, best)

        if cur_len == 1:  # the cache has one row per history; every beam continues from it
            rows = torch.arange(batch, device=device).repeat_interleave(num_beams)
        else:
            rows = (running_origin + offsets).reshape(-1)
        for decoder in decoders:
            decoder.reorder(rows)
        cur_len += 1

        # generate's stopping rules: can a running beam still beat the worst finished one?
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - 1
        else:
            best_length = cur_len - 1
        best_running = running_scores[:, :1] / (best_length**length_penalty)
        worst_finished = torch.where(is_finished, finished_scores.min(dim=1, keepdim=True).values, neg)
        unsatisfied = unsatisfied & (best_running > worst_finished).any(dim=-1, keepdim=True)
        open_beam = not (bool(is_finished.all()) and early_stopping is True)
        done = not (bool(unsatisfied.any()) and open_beam and not bool(hits.all()))
        if synced_gpus:
            if _all_processes_done(done, device):
                break
            peer_done = done
        elif done:
            break

    sequences = finished[:, :num_return_sequences].reshape(batch * num_return_sequences, max_length)
    return sequences, finished_scores[:, :num_return_sequences].reshape(-1)
