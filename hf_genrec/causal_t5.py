"""A T5 whose encoder reads histories causally, so one encoder pass trains every next-item target of a user.

TIGER trains one (history prefix → next item) example per position, so a user with ``n`` items costs ``n`` encoder
passes over ever longer prefixes: the cost grows with the square of the history length. With a causal encoder (each
history token attends only to itself and earlier tokens) the encoder state of a prefix does not depend on what
follows it, so the encoder runs once over the user's whole sequence and each target's decoder block cross-attends
to its own prefix only. All targets of a user are packed into one decoder row, with a block-diagonal causal
self-attention mask; T5's relative position bias makes each block see exactly the positions a lone target would.
The loss is the same as training each prefix as its own example with this model (a test checks it), at the cost
of one encoder pass per user instead of one per target.

Generation is unchanged: `generate` (and hf_genrec's fast beam search) encode a history causally and let the
decoder read all of it.
"""

from __future__ import annotations

import torch
from torch.nn import CrossEntropyLoss
from transformers import AutoConfig, AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import Seq2SeqLMOutput
from transformers.models.t5.modeling_t5 import T5Stack


class GenRecT5Config(T5Config):
    """`T5Config` of a `GenRecT5ForConditionalGeneration` (a T5 with a causal encoder); takes T5Config's arguments."""

    model_type = "hf_genrec_t5"


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``allowed`` (bool, ``[..., q, k]``) as the additive float mask T5 attention takes (eager and SDPA alike).

    A query with no allowed key (padding rows) gets a uniform softmax instead of NaN: the mask value is finite.
    """
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


class CausalT5Stack(T5Stack):
    """A T5 encoder stack in which token ``i`` attends to tokens ``<= i`` (and never to padding)."""

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("You must specify exactly one of input_ids or inputs_embeds")
        batch, length = reference.shape[:2]
        device = reference.device
        if attention_mask is None:
            attention_mask = torch.ones(batch, length, dtype=torch.bool, device=device)
        if attention_mask.dim() == 2:
            causal = torch.ones(length, length, dtype=torch.bool, device=device).tril_()
            allowed = causal[None] & attention_mask.bool()[:, None, :]
            attention_mask = additive_mask(allowed[:, None], self.embed_tokens.weight.dtype)
        return super().forward(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds, **kwargs
        )


class GenRecT5ForConditionalGeneration(T5ForConditionalGeneration):
    """`T5ForConditionalGeneration` with a causal encoder and a packed all-targets training mode.

    ``forward`` takes the usual T5 arguments. For packed training it also takes ``target_ends`` ``[batch, n]``:
    row ``b`` holds ``n`` targets (padding targets have all labels -100), ``labels`` ``[batch, n * width]`` holds
    their spellings in blocks of ``width`` tokens, and target ``j`` reads the first ``target_ends[b, j]`` history
    tokens. `hf_genrec.tokenize_sequences` and `GenRecCollator` build such batches.
    """

    config_class = GenRecT5Config

    def __init__(self, config: GenRecT5Config):
        super().__init__(config)
        # Same weights and names as T5's encoder (checkpoints stay plain T5 weights); only the mask differs.
        self.encoder = CausalT5Stack(self.encoder.config)
        self.encoder.set_input_embeddings(self.shared)
        self.post_init()

    def forward(self, input_ids=None, attention_mask=None, labels=None, target_ends=None, **kwargs):
        if target_ends is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask, labels=labels, **kwargs)
        if labels is None or input_ids is None:
            raise ValueError("Packed training (target_ends=...) needs input_ids and labels.")
        batch, n_targets = target_ends.shape
        if labels.shape[1] % n_targets:
            raise ValueError(
                f"labels has {labels.shape[1]} columns, not a multiple of the {n_targets} targets in target_ends."
            )
        width = labels.shape[1] // n_targets
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        encoded = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

        # Each block is a lone target: its decoder input is the start token and its spelling shifted right.
        blocks = labels.view(batch, n_targets, width)
        start = torch.full_like(blocks[..., :1], self.config.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, blocks[..., :-1]], dim=-1).reshape(batch, -1)
        decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == -100, self.config.pad_token_id)

        dtype = encoded.dtype
        positions = torch.arange(n_targets * width, device=labels.device)
        block_of = positions // width
        self_allowed = (block_of[:, None] == block_of[None, :]) & (positions[:, None] >= positions[None, :])
        ends = target_ends.gather(1, block_of.expand(batch, -1))  # [batch, decoder length]
        history = torch.arange(input_ids.shape[1], device=labels.device)
        cross_allowed = (history[None, None, :] < ends[:, :, None]) & attention_mask.bool()[:, None, :]
        decoded = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=additive_mask(self_allowed[None, None], dtype),
            encoder_hidden_states=encoded,
            encoder_attention_mask=additive_mask(cross_allowed[:, None], dtype),
        ).last_hidden_state
        if getattr(self.config, "scale_decoder_outputs", self.config.tie_word_embeddings):  # as T5's forward
            decoded = decoded * (self.model_dim**-0.5)
        logits = self.lm_head(decoded)
        loss = CrossEntropyLoss(ignore_index=-100)(logits.view(-1, logits.size(-1)), labels.reshape(-1))
        return Seq2SeqLMOutput(loss=loss, logits=logits, encoder_last_hidden_state=encoded)


AutoConfig.register(GenRecT5Config.model_type, GenRecT5Config)
AutoModelForSeq2SeqLM.register(GenRecT5Config, GenRecT5ForConditionalGeneration)
