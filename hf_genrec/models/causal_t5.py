"""A T5 whose encoder reads histories causally, so one encoder pass trains every next-item target of a user.

TIGER trains one (history prefix → next item) example per position, so a user with ``n`` items costs ``n`` encoder
passes over ever longer prefixes: the cost grows with the square of the history length. With a causal encoder (each
history token attends only to itself and earlier tokens) the encoder state of a prefix does not depend on what
follows it, so the encoder runs once over the user's whole sequence, and each target is decoded as its own short
row that cross-attends to its own prefix of those states, so each target can see its own distances from the end
of its prefix (`recency_embeddings`). The cross-attention projects each user's states once for all of that user's
targets (`PackedCrossAttention`). The loss and its gradients are the same as training each prefix as its own
example with this model (a test checks both), at the cost of one encoder pass per user instead of one per target.

Generation is unchanged: `generate` (and hf_genrec's fast beam search) encode a history causally and let the
decoder read all of it.

With ``item_positions=True`` the encoder reads one position per item instead of one per ID token: the embeddings of
an item's tokens are summed into its position (the ID tokens of each level are distinct, so the sum keeps which code
sits at which level). Histories stay token sequences everywhere else (tokenizer, collator, bundle); only the
encoder pools them, so its sequence is ``id_length - 1`` times shorter, and cross-attention reads item states.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import CrossEntropyLoss
from transformers import AutoConfig, AutoModelForSeq2SeqLM, T5Config, T5ForConditionalGeneration
from transformers.modeling_outputs import BaseModelOutputWithPastAndCrossAttentions, Seq2SeqLMOutput
from transformers.models.t5.modeling_t5 import T5Attention, T5LayerCrossAttention, T5Stack

from .dropout import BitsDropout, bits_dropout, use_bits_dropout


class GenRecT5Config(T5Config):
    """`T5Config` of a `GenRecT5ForConditionalGeneration` (a T5 with a causal encoder).

    Args:
        item_positions (`bool`, *optional*, defaults to `False`):
            Give the encoder one position per history item (the sum of its tokens' embeddings) instead of one per
            token.
        item_width (`int`, *optional*):
            With ``item_positions``: every item takes exactly this many history tokens (fixed-length IDs spelled
            without EOS). `None` means each item's spelling ends with the EOS token (variable-length IDs).
        item_embedding_buckets (`int`, *optional*, defaults to 0):
            With ``item_positions``: also add a learned embedding of the item itself (of its whole ID, hashed into
            this many buckets) to each item position, as ID-based models such as SASRec have. 0 turns it off.
            The buckets start at zero, so an item never seen in training adds nothing until it is trained.
        recency_embeddings (`bool`, *optional*, defaults to `False`):
            Add to each encoder state a learned embedding of how far it lies from the end of the history (bucketed
            as T5's relative positions: exact up to ``relative_attention_num_buckets / 2``, then logarithmic up to
            ``relative_attention_max_distance``). A causal encoder's states cannot know this (state ``i`` never
            sees what follows it) and T5's cross-attention has no position bias, so without it the decoder reads
            the history as a bag of states and cannot tell the most recent item from an old one. The embeddings
            start at zero.
        start_from_last_state (`bool`, *optional*, defaults to `False`):
            Add the encoder's state of the most recent history position to the decoder's start-token embedding, so
            the decoder starts from the causal encoder's summary of the whole history (the vector SASRec scores
            items with) rather than finding it by cross-attention among all the states.
        kwargs: `T5Config`'s arguments.
    """

    model_type = "hf_genrec_t5"

    def __init__(
        self,
        item_positions: bool = False,
        item_width: int | None = None,
        item_embedding_buckets: int = 0,
        recency_embeddings: bool = False,
        start_from_last_state: bool = False,
        **kwargs,
    ):
        if item_width is not None and item_width < 1:
            raise ValueError(f"item_width must be a positive number of tokens per item or None, got {item_width}.")
        if item_embedding_buckets < 0 or (item_embedding_buckets and not item_positions):
            raise ValueError(
                f"item_embedding_buckets={item_embedding_buckets}: it must be >= 0, and it needs item_positions=True."
            )
        self.item_positions = item_positions
        self.item_width = item_width
        self.item_embedding_buckets = item_embedding_buckets
        self.recency_embeddings = recency_embeddings
        self.start_from_last_state = start_from_last_state
        super().__init__(**kwargs)


@dataclass
class ItemEncoderOutput(BaseModelOutputWithPastAndCrossAttentions):
    """The encoder's output with one state per item, and the mask over those item positions.

    Args:
        item_attention_mask (`torch.LongTensor` of shape `(batch_size, num_items)`):
            1 for the items of each history, 0 for padding; what cross-attention must use instead of the token mask.
        token_item_index (`torch.LongTensor` of shape `(batch_size, num_tokens)`):
            The item position each history token was pooled into (``num_items`` for padding tokens).
    """

    item_attention_mask: torch.LongTensor | None = None
    token_item_index: torch.LongTensor | None = None


# Odd multipliers, one per token of an item's spelling, that hash the spelling into a bucket (int64 never overflows:
# token ids < 2^20, multipliers < 2^31, spellings far shorter than 2^12 tokens).
_HASH_MULTIPLIERS = [pow(1_000_003, k, 2**31) | 1 for k in range(64)]


def pool_items(
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    embeddings: torch.nn.Embedding,
    eos_token_id: int,
    item_width: int | None,
    item_embeddings: torch.nn.Embedding | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum the token embeddings of each history item into one position.

    With ``item_embeddings``, each position also gets the embedding of the bucket its whole spelling hashes to.

    Returns:
        `(inputs_embeds [B, items, d], item_mask [B, items], token_item_index [B, tokens])`, with items left-aligned.
    """
    batch, length = input_ids.shape
    real = attention_mask.bool()
    rank = real.long().cumsum(dim=1) - 1  # of each real token among its row's real tokens (padding on either side)
    if item_width is not None:
        counts = real.sum(dim=1)
        if bool((counts % item_width).any()):
            bad = int(counts[(counts % item_width) != 0][0])
            raise ValueError(
                f"A history has {bad} tokens, not a multiple of item_width={item_width}: item_positions with "
                "fixed-length IDs needs histories spelled without EOS (ItemTokenizer(history_eos=False))."
            )
        item_index = rank.clamp(min=0) // item_width
        ends = real & (rank % item_width == item_width - 1)
    else:
        ends = real & (input_ids == eos_token_id)
        item_index = ends.long().cumsum(dim=1) - ends.long()
        after_last = real & (item_index >= ends.sum(dim=1, keepdim=True))
        if bool(after_last.any()):
            raise ValueError(
                "A history does not end with EOS: with variable-length IDs, item_positions needs every item's "
                "spelling to end with EOS, as ItemTokenizer.encode_history writes it."
            )
    n_items = ends.sum(dim=1)
    width = max(int(n_items.max()), 1) if batch else 1
    item_index = item_index.masked_fill(~real, width)  # padding tokens go to a spare slot, dropped below
    embedded = embeddings(input_ids) * real[..., None]
    pooled = embedded.new_zeros(batch, width + 1, embedded.shape[-1])
    pooled.scatter_add_(1, item_index[..., None].expand_as(embedded), embedded)
    item_mask = (torch.arange(width, device=input_ids.device)[None] < n_items[:, None]).long()
    pooled = pooled[:, :width]
    if item_embeddings is not None:
        # Position of each token inside its item's spelling: its rank minus the rank of the item's first token.
        first = torch.full((batch, width + 1), length, dtype=torch.long, device=input_ids.device)
        first.scatter_reduce_(1, item_index, rank, reduce="amin")
        offset = (rank - first.gather(1, item_index)).clamp(0, len(_HASH_MULTIPLIERS) - 1)
        multipliers = torch.tensor(_HASH_MULTIPLIERS, device=input_ids.device)[offset]
        hashed = torch.zeros(batch, width + 1, dtype=torch.long, device=input_ids.device)
        hashed.scatter_add_(1, item_index, (input_ids.long() + 1) * multipliers * real)
        buckets = hashed[:, :width] % item_embeddings.num_embeddings
        pooled = pooled + item_embeddings(buckets) * item_mask[..., None]
    return pooled, item_mask, item_index


def last_state(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``states[b, i]`` at the last position ``i`` where ``mask[b]`` is 1 (padding on either side): ``[batch, d]``."""
    positions = torch.arange(mask.shape[1], device=mask.device)
    last = torch.where(mask.bool(), positions, -1).amax(dim=1).clamp(min=0)
    return states[torch.arange(states.shape[0], device=states.device), last]


def add_to_start(embeds: torch.Tensor, summary: torch.Tensor) -> torch.Tensor:
    """Decoder input embeddings ``[rows, length, d]`` with ``summary`` ``[rows, d]`` added at the start position."""
    return torch.cat([embeds[:, :1] + summary[:, None], embeds[:, 1:]], dim=1)


def additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``allowed`` (bool, ``[..., q, k]``) as the additive float mask T5 attention takes (eager and SDPA alike).

    A query with no allowed key (padding rows) gets a uniform softmax instead of NaN: the mask value is finite.
    """
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(
        ~allowed, torch.finfo(dtype).min
    )


@dataclass
class PackedMemory:
    """What packed training's cross-attention reads: each window's encoder states once, and which of them each
    target may read.

    Decoder rows are targets; target ``n`` belongs to window ``row[n]`` and sits in slot ``target[n]`` of it.
    ``allowed[b, j]`` marks the states target ``j`` of window ``b`` reads (its prefix), ``bucket[b, j]`` their
    recency buckets, and ``recency_table`` the recency embeddings of buckets ``0 .. bucket.max()`` (both `None`
    without recency embeddings).
    """

    states: torch.Tensor
    row: torch.Tensor
    target: torch.Tensor
    allowed: torch.Tensor
    bucket: torch.Tensor | None = None
    recency_table: torch.Tensor | None = None


class PackedCrossAttention(T5LayerCrossAttention):
    """T5's cross-attention layer (same weights and names); with ``packed_memory`` it projects each window's states
    once for all of its targets instead of once per target.

    Each target's memory is its window's states plus the recency embedding of each state's distance from the end
    of that target's prefix. Keys and values are linear in the memory, so both split into the window's projected
    states (shared by its targets) and the projected recency table (a few dozen rows): a query's score for a state
    is ``q · k(state) + q · k(recency[bucket])``, and its output is ``Σ p v(state) + Σ_bucket p_bucket
    v(recency[bucket])``. This is the same attention as on per-target memories, without the per-target copies.
    """

    def forward(self, hidden_states, key_value_states=None, attention_mask=None, position_bias=None, cache=None,
                packed_memory: PackedMemory | None = None, **kwargs):  # fmt: skip
        if packed_memory is None:
            return super().forward(
                hidden_states, key_value_states, attention_mask=attention_mask, position_bias=position_bias,
                cache=cache, **kwargs,
            )  # fmt: skip
        memory, attention = packed_memory, self.EncDecAttention
        heads, head_dim = attention.n_heads, attention.key_value_proj_dim
        rows, length = hidden_states.shape[:2]
        batch, n_targets, n_states = memory.allowed.shape
        query = attention.q(self.layer_norm(hidden_states)).view(rows, length, heads, head_dim)
        # Queries in window layout [batch, heads, n_targets * length, head_dim]; padding targets stay zero.
        blocked = query.new_zeros(batch, n_targets, length, heads, head_dim)
        blocked = blocked.index_put((memory.row, memory.target), query)
        blocked = blocked.view(batch, n_targets * length, heads, head_dim).transpose(1, 2)
        key = attention.k(memory.states).view(batch, n_states, heads, head_dim).transpose(1, 2)
        value = attention.v(memory.states).view(batch, n_states, heads, head_dim).transpose(1, 2)
        scores = blocked @ key.transpose(-1, -2)  # [batch, heads, n_targets * length, n_states]
        if memory.bucket is not None:
            bucket = memory.bucket[:, None, :, None, :].expand(batch, heads, n_targets, length, n_states)
            bucket = bucket.reshape(batch, heads, n_targets * length, n_states)
            table = memory.recency_table
            recency_key = attention.k(table).view(-1, heads, head_dim).permute(1, 2, 0)  # [heads, head_dim, n]
            scores = scores + (blocked @ recency_key).gather(-1, bucket)
        allowed = memory.allowed[:, :, None, :].expand(batch, n_targets, length, n_states)
        mask = additive_mask(allowed.reshape(batch, 1, n_targets * length, n_states), scores.dtype)
        scores = scores * attention.scaling + mask
        # in float32 at least, as T5's attention does for half-precision models
        weights = torch.softmax(scores, dim=-1, dtype=torch.promote_types(scores.dtype, torch.float32)).to(query.dtype)
        # the layer's dropout module decides how masks are drawn (BitsDropout, unless someone swapped it back)
        drop = bits_dropout if isinstance(self.dropout, BitsDropout) else torch.nn.functional.dropout
        weights = drop(weights, attention.dropout, attention.training)
        output = weights @ value
        if memory.bucket is not None:
            per_bucket = weights.new_zeros(*weights.shape[:-1], len(table)).scatter_add(-1, bucket, weights)
            recency_value = attention.v(table).view(-1, heads, head_dim).transpose(0, 1)  # [heads, n, head_dim]
            output = output + per_bucket @ recency_value
        output = output.transpose(1, 2).reshape(batch, n_targets, length, heads * head_dim)
        output = attention.o(output[memory.row, memory.target])
        return hidden_states + self.dropout(output), None, None


class CausalT5Stack(T5Stack):
    """A T5 encoder stack in which token ``i`` attends to tokens ``<= i`` (and never to padding).

    With ``config.item_positions`` it first pools each item's tokens into one position and returns an
    `ItemEncoderOutput`, whose ``item_attention_mask`` is the mask cross-attention needs.
    """

    def __init__(self, config):
        super().__init__(config)
        buckets = getattr(config, "item_embedding_buckets", 0)
        self.item_embeddings = torch.nn.Embedding(buckets, config.d_model) if buckets else None
        if self.item_embeddings is not None:
            self._init_weights(self.item_embeddings)
        recency = getattr(config, "recency_embeddings", False)
        self.recency = torch.nn.Embedding(config.relative_attention_num_buckets, config.d_model) if recency else None
        if self.recency is not None:
            self._init_weights(self.recency)

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is getattr(self, "item_embeddings", None) or module is getattr(self, "recency", None):
            # Zero: an item that training never showed adds nothing to its position, and a new model starts as one
            # without recency embeddings.
            torch.nn.init.zeros_(module.weight)

    def recency_bucket(self, distance: torch.Tensor) -> torch.Tensor:
        """The recency bucket of states ``distance`` positions before the end of their history (0: the most
        recent): T5's relative-position buckets, fine for recent states and logarithmic for old ones."""
        return T5Attention._relative_position_bucket(
            -distance.clamp(min=0),
            bidirectional=False,
            num_buckets=self.config.relative_attention_num_buckets,
            max_distance=self.config.relative_attention_max_distance,
        )

    def recency_embedding(self, distance: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The recency embeddings ``[..., d_model]`` of states ``distance`` positions before the end of their
        history (0: the most recent), zero where ``mask`` is 0."""
        return self.recency(self.recency_bucket(distance)) * mask[..., None].to(self.recency.weight.dtype)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, add_recency=True, **kwargs):
        """Encode a history causally; with ``add_recency`` (and ``config.recency_embeddings``) each state also gets
        the embedding of its distance from the end of its history. Packed training passes ``add_recency=False``
        and adds it per target instead."""
        out = self._encode(input_ids, attention_mask, inputs_embeds, **kwargs)
        if self.recency is not None and add_recency:
            mask = getattr(out, "item_attention_mask", None)
            if mask is None:
                if attention_mask is None:
                    reference = input_ids if input_ids is not None else inputs_embeds
                    attention_mask = torch.ones(reference.shape[:2], dtype=torch.long, device=reference.device)
                mask = attention_mask
            mask = mask.long()
            # Real states after each position (padding on either side counts for nothing).
            distance = mask.flip(1).cumsum(1).flip(1) - mask
            out.last_hidden_state = out.last_hidden_state + self.recency_embedding(distance, mask)
        return out

    def _encode(self, input_ids=None, attention_mask=None, inputs_embeds=None, **kwargs):
        if getattr(self.config, "item_positions", False) and input_ids is not None:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            pooled, item_mask, token_item_index = pool_items(
                input_ids,
                attention_mask,
                self.embed_tokens,
                self.config.eos_token_id,
                self.config.item_width,
                self.item_embeddings,
            )
            out = self._causal_forward(None, item_mask, pooled, **kwargs)
            return ItemEncoderOutput(
                **{k: v for k, v in out.items()}, item_attention_mask=item_mask, token_item_index=token_item_index
            )
        return self._causal_forward(input_ids, attention_mask, inputs_embeds, **kwargs)

    def _causal_forward(self, input_ids, attention_mask, inputs_embeds, **kwargs):
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
    tokens. `hf_genrec.tokenize_sequences` and `GenRecCollator` build such batches. The returned ``logits`` keep
    that layout, ``[batch, n * width, vocab]``, with zeros for padding targets. With ``skip_output_layer=True``
    (packed training only) it returns no logits and no loss but ``decoder_hidden_states=(states,)``, the states the
    output layer would read, in the same layout: a loss that scores only some tokens (`ConstrainedLoss`) computes
    those logits itself instead of the whole vocabulary's.
    """

    config_class = GenRecT5Config

    def __init__(self, config: GenRecT5Config):
        super().__init__(config)
        # Same weights and names as T5's encoder (checkpoints stay plain T5 weights); only the mask differs.
        self.encoder = CausalT5Stack(self.encoder.config)
        self.encoder.set_input_embeddings(self.shared)
        for block in self.decoder.block:
            # Same module, weights and names; packed training passes it each window's states once (PackedMemory).
            # Only the class changes: building new layers would draw from the random generator and change every
            # seeded initialisation after it.
            block.layer[1].__class__ = PackedCrossAttention
        # CPU dropout masks 16 bits per element (no weights, so checkpoints and seeded initialisation are unchanged)
        use_bits_dropout(self)
        self.post_init()

    def decoder_start_state(self, encoder_states: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor | None:
        """What the decoder's start token gets added (``config.start_from_last_state``): the encoder state of each
        history's most recent position ``[batch, d_model]``; `None` when the option is off."""
        if not getattr(self.config, "start_from_last_state", False):
            return None
        if mask is None:
            mask = torch.ones(encoder_states.shape[:2], dtype=torch.long, device=encoder_states.device)
        return last_state(encoder_states, mask)

    def forward(
        self, input_ids=None, attention_mask=None, labels=None, target_ends=None, skip_output_layer=False, **kwargs
    ):
        if target_ends is None:
            if skip_output_layer:
                raise ValueError("skip_output_layer=True is for packed training batches (with target_ends).")
            start_state = getattr(self.config, "start_from_last_state", False)
            if self.config.item_positions or start_state:
                if kwargs.get("encoder_outputs") is None and input_ids is not None:
                    kwargs["encoder_outputs"] = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
                    input_ids = None
                # Cross-attention reads item states, so it needs the item mask, not the token mask.
                item_mask = getattr(kwargs.get("encoder_outputs"), "item_attention_mask", None)
                if item_mask is not None:
                    attention_mask = item_mask
            if start_state and kwargs.get("decoder_inputs_embeds") is None:
                decoder_input_ids = kwargs.pop("decoder_input_ids", None)
                if decoder_input_ids is None and labels is not None:
                    decoder_input_ids = self._shift_right(labels)
                cache = kwargs.get("cache", kwargs.get("past_key_values"))
                embeds = None if decoder_input_ids is None else self.decoder.embed_tokens(decoder_input_ids)
                if embeds is not None and (cache is None or cache.get_seq_length() == 0):
                    # the first decoder position is the start token: it also gets the history's summary
                    states = kwargs["encoder_outputs"][0]
                    embeds = add_to_start(embeds, self.decoder_start_state(states, attention_mask))
                kwargs["decoder_inputs_embeds"] = embeds
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
        encoder_outputs = self.encoder(input_ids=input_ids, attention_mask=attention_mask, add_recency=False)
        encoded = encoder_outputs.last_hidden_state
        if self.config.item_positions:
            # A target reading the first e history tokens reads the items those tokens belong to.
            last_token = (target_ends - 1).clamp(min=0)
            target_ends = encoder_outputs.token_item_index.gather(1, last_token) + 1
            attention_mask = encoder_outputs.item_attention_mask

        # Each target becomes its own decoder row over its own prefix of its user's encoder states (padding targets,
        # all -100, are dropped): the start token and its spelling shifted right, as a lone example would be.
        blocks = labels.view(batch, n_targets, width)
        row, target = (blocks != -100).any(dim=-1).nonzero(as_tuple=True)
        blocks = blocks[row, target]
        start = torch.full_like(blocks[:, :1], self.config.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, blocks[:, :-1]], dim=-1)
        decoder_input_ids = decoder_input_ids.masked_fill(decoder_input_ids == -100, self.config.pad_token_id)
        history = torch.arange(encoded.shape[1], device=labels.device)
        allowed = (history[None, None, :] < target_ends[..., None]) & attention_mask.bool()[:, None, :]
        # Target j of window b reads its own prefix, with each state's distance from that prefix's end.
        distance = target_ends[..., None] - 1 - history[None, None, :]
        recency = self.encoder.recency
        bucket = None if recency is None else self.encoder.recency_bucket(distance)
        memory = PackedMemory(
            states=encoded,
            row=row,
            target=target,
            allowed=allowed,
            bucket=bucket,
            # only the buckets these windows reach (short windows use few of them), cut once for every layer
            recency_table=None if recency is None else recency.weight[: int(bucket.max()) + 1],
        )
        embeds = self.decoder.embed_tokens(decoder_input_ids)
        if getattr(self.config, "start_from_last_state", False):
            # the state of each prefix's last item, with its recency embedding, as decoder_start_state reads it
            last = torch.where(allowed, history, -1).amax(dim=-1).clamp(min=0)[row, target]
            summary = encoded[row, last]
            if recency is not None:
                summary = summary + self.encoder.recency_embedding(
                    distance[row, target, last], allowed[row, target, last]
                )
            embeds = add_to_start(embeds, summary)
        decoded = self.decoder(
            inputs_embeds=embeds, encoder_hidden_states=encoded, packed_memory=memory
        ).last_hidden_state
        if getattr(self.config, "scale_decoder_outputs", self.config.tie_word_embeddings):  # as T5's forward
            decoded = decoded * (self.model_dim**-0.5)
        if skip_output_layer:
            packed = decoded.new_zeros(batch, n_targets, width, decoded.shape[-1])
            packed[row, target] = decoded
            states = packed.view(batch, n_targets * width, -1)
            return Seq2SeqLMOutput(decoder_hidden_states=(states,), encoder_last_hidden_state=encoded)
        logits = self.lm_head(decoded)
        loss = CrossEntropyLoss(ignore_index=-100)(logits.view(-1, logits.size(-1)), blocks.reshape(-1))
        # Back in the packed layout [batch, n_targets * width, vocab] (zeros for padding targets), as labels are.
        packed = logits.new_zeros(batch, n_targets, width, logits.shape[-1])
        packed[row, target] = logits
        logits = packed.view(batch, n_targets * width, -1)
        return Seq2SeqLMOutput(loss=loss, logits=logits, encoder_last_hidden_state=encoded)


AutoConfig.register(GenRecT5Config.model_type, GenRecT5Config)
AutoModelForSeq2SeqLM.register(GenRecT5Config, GenRecT5ForConditionalGeneration)
