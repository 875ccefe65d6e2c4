"""A compact, vectorised item trie and the `LogitsProcessor` that keeps beam search on it.

`TrieIndex` stores the trie of item spellings as one sorted array of edge keys, ``parent_node * A + local_token``,
where nodes are numbered breadth-first and ``local_token`` is the token's index among the tokens seen at that depth
(``A`` of them at most). Breadth-first numbering makes the child of edge ``e`` node ``e + 1``, and makes the keys of
one node's children a contiguous, sorted run, so:

- following a token is one ``searchsorted`` (vectorised over every beam);
- a node's allowed tokens are the keys in ``[node * A, (node + 1) * A)``, found with two ``searchsorted`` calls.

No pointers, no Python loop over beams: about one key (4 bytes, or 8 past 2^31) per trie edge, so 12 bytes per item
for 4 levels of 256 codes. Same idea as the STATIC paper's CSR tables (arXiv 2602.22647), flattened into keys.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor


class TrieIndex:
    """Every item spelling (token ids, each ending with EOS), as sorted edge keys.

    Args:
        spellings: one token-id sequence per item, EOS last; different lengths are fine. Or an int array
            ``[n_items, max_length]`` padded with ``-1`` after each EOS (no Python lists for huge catalogues).
        vocab_size: number of token ids the model scores (``len(tokenizer)`` or the model's vocab size).
        pad_token_id: the token a finished or dead beam may emit (T5: ``<pad>``).
    """

    def __init__(self, spellings: Sequence[Sequence[int]] | np.ndarray, vocab_size: int, pad_token_id: int):
        if isinstance(spellings, np.ndarray):
            table = np.asarray(spellings, dtype=np.int64)
            if table.ndim != 2:
                raise ValueError(f"spellings must be a 2-D array [n_items, max_length], got {table.shape}.")
            lengths = (table >= 0).sum(axis=1)
        else:
            lengths = np.fromiter((len(s) for s in spellings), dtype=np.int64, count=len(spellings))
            table = np.full((len(lengths), int(lengths.max()) if len(lengths) else 0), -1, dtype=np.int64)
            for row, spelling in enumerate(spellings):
                table[row, : len(spelling)] = spelling
        if len(lengths) == 0 or lengths.min() < 1:
            raise ValueError("TrieIndex needs at least one item, and every spelling needs at least one token (EOS).")
        depth = int(table.shape[1])
        if table.max() >= vocab_size:
            raise ValueError(f"A spelling uses token id {int(table.max())}, beyond vocab_size={vocab_size}.")
        self.vocab_size = int(vocab_size)
        self.pad_token_id = int(pad_token_id)
        self.num_items = len(lengths)
        self.max_length = depth
        depth_tokens = [np.unique(table[:, d][table[:, d] >= 0]) for d in range(depth)]
        self.alphabet = int(max(len(tokens) for tokens in depth_tokens))
        # token id -> its index among the tokens used at that depth (-1: never used there), and back
        token_to_local = np.full((depth, self.vocab_size), -1, dtype=np.int32)
        local_to_token = np.full((depth, self.alphabet + 1), self.vocab_size, dtype=np.int64)
        for d, tokens in enumerate(depth_tokens):
            token_to_local[d, tokens] = np.arange(len(tokens), dtype=np.int32)
            local_to_token[d, : len(tokens)] = tokens
        keys, node, next_node = [], np.zeros(len(lengths), dtype=np.int64), 1
        for d in range(depth):
            active = table[:, d] >= 0
            edge = node[active] * self.alphabet + token_to_local[d, table[active, d]]
            unique, inverse = np.unique(edge, return_inverse=True)
            keys.append(unique)
            node[active] = next_node + inverse.reshape(-1)
            next_node += len(unique)
        # first node id of each depth, then the end: the nodes of depth d are ``offsets[d] .. offsets[d + 1] - 1``
        self._depth_offsets = np.cumsum([1] + [len(k) for k in keys]).tolist()
        keys = np.concatenate(keys)
        if len(np.unique(node)) != len(node):  # two items ended on the same leaf
            raise ValueError("Two items share a spelling; item spellings must be unique (each ends with EOS).")
        self.num_nodes = next_node
        self._items_under: torch.Tensor | None = None
        dtype = torch.int32 if (next_node + 1) * self.alphabet < 2**31 else torch.int64
        self.keys = torch.from_numpy(keys).to(dtype)
        self.token_to_local = torch.from_numpy(token_to_local)
        self.local_to_token = torch.from_numpy(local_to_token)
        root = np.zeros(self.vocab_size, dtype=bool)
        root[depth_tokens[0]] = True
        #: allowed tokens at the first step (every beam starts at the root): a dense row, as STATIC does for level 0
        self.root_allowed = torch.from_numpy(root)

    def __len__(self) -> int:
        return self.num_items

    @property
    def nbytes(self) -> int:
        """Memory of the index: keys plus the per-depth token tables."""
        tensors = (self.keys, self.token_to_local, self.local_to_token, self.root_allowed)
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def to(self, device: torch.device | str) -> TrieIndex:
        for name in ("keys", "token_to_local", "local_to_token", "root_allowed"):
            setattr(self, name, getattr(self, name).to(device))
        if self._items_under is not None:
            self._items_under = self._items_under.to(device)
        return self

    @property
    def items_under(self) -> torch.Tensor:
        """``[num_nodes]`` how many items' spellings pass through each node (node 0 is the root). Built on first
        use (excluding items needs it; plain constrained search does not), from the keys, deepest nodes first."""
        if self._items_under is None:
            keys = self.keys.cpu().numpy().astype(np.int64)
            parent = keys // self.alphabet  # of node i + 1
            count = np.zeros(self.num_nodes, dtype=np.int64)
            count[1:][np.bincount(parent, minlength=self.num_nodes)[1:] == 0] = 1  # leaves: one item ends at each
            offsets = self._depth_offsets
            for d in reversed(range(len(offsets) - 1)):
                nodes = np.arange(offsets[d], offsets[d + 1])
                np.add.at(count, parent[nodes - 1], count[nodes])
            self._items_under = torch.from_numpy(count).to(self.keys.device)
        return self._items_under

    # ------------------------------------------------------------------ vectorised walks
    def walk(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Trie node reached by each prefix ``[N, t]`` of generated tokens (decoder start excluded); ``-1`` if off it."""
        n, steps = prefixes.shape
        node = torch.zeros(n, dtype=torch.int64, device=prefixes.device)
        keys = self.keys
        for d in range(min(steps, self.max_length)):
            token = prefixes[:, d]
            in_vocab = (token >= 0) & (token < self.vocab_size)
            local = self.token_to_local[d, token.clamp(0, self.vocab_size - 1)].to(torch.int64)
            query = (node * self.alphabet + local).to(keys.dtype)
            position = torch.searchsorted(keys, query)
            found = (position < len(keys)) & in_vocab & (local >= 0) & (node >= 0)
            found &= keys[position.clamp(max=len(keys) - 1)] == query
            node = torch.where(found, position + 1, torch.full_like(node, -1))
        if steps > self.max_length:  # longer than any spelling: off the trie
            node = torch.full_like(node, -1)
        return node

    def item_paths(self, spellings: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The trie nodes along given items' spellings, for processors that act on whole items (excluding them,
        fusing a prior over them).

        Args:
            spellings: ``[n_items, max_length]`` every item's spelling, ``-1`` after its EOS.
            items: item rows of any shape ``S``; ``-1`` (or a row out of range) marks an empty slot.

        Returns:
            `(tokens, path)`, both ``S + [max_length]``: each item's spelling, and ``path[..., d]`` the node reached
            after its first ``d + 1`` tokens. Both paths are ``-1`` throughout for an empty slot or an item this trie
            does not hold (e.g. one outside a sub-catalogue's trie, or a removed one).
        """
        device = self.keys.device
        items = items.to(device)
        valid = (items >= 0) & (items < len(spellings))
        tokens = spellings.to(device=device, dtype=torch.long)[items.clamp(min=0, max=len(spellings) - 1)]
        depth = tokens.shape[-1]
        flat = tokens.reshape(-1, depth)
        path = torch.stack(
            [torch.where(flat[:, d] >= 0, self.walk(flat[:, : d + 1]), -1) for d in range(depth)], dim=-1
        ).view(tokens.shape)
        last = ((tokens >= 0).sum(dim=-1, keepdim=True) - 1).clamp(min=0)
        valid &= path.gather(-1, last)[..., 0] >= 0
        return tokens, torch.where(valid[..., None], path, -1)

    def beam_nodes(
        self, input_ids: torch.Tensor, n_histories: int, decoder_start_length: int, given: str
    ) -> tuple[int, torch.Tensor]:
        """For processors built per history: ``(beams, node)``, the beams of each history and the trie node of every
        beam row ``[rows]`` (the root before the first token). ``given`` names what was given per history, for the
        error raised when the rows do not split into ``n_histories``."""
        rows = input_ids.shape[0]
        if rows % n_histories:
            raise ValueError(
                f"{rows} beam rows do not split into the {n_histories} histories whose {given} were given: build "
                f"the processor with one entry of {given} per history of the batch."
            )
        if self.keys.device != input_ids.device:
            self.to(input_ids.device)
        if input_ids.shape[1] == decoder_start_length:
            return rows // n_histories, torch.zeros(rows, dtype=torch.long, device=input_ids.device)
        return rows // n_histories, self.walk(input_ids[:, decoder_start_length:])

    def allowed_tokens(self, prefixes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The tokens that keep each prefix ``[N, t]`` on the trie, as a padded list rather than a vocabulary-wide
        mask (losses that score only these tokens need no more).

        Returns:
            `(tokens, valid)`, both ``[N, width]`` with ``width`` the most children any of the prefixes has:
            ``tokens[i, :k]`` are the ``k`` tokens allowed after prefix ``i`` (sorted by their index at that depth),
            ``valid`` marks them, and padding holds ``vocab_size``. A finished or dead prefix has no valid token.
        """
        n, steps = prefixes.shape
        device = prefixes.device
        node = self.walk(prefixes) if steps else torch.zeros(n, dtype=torch.int64, device=device)
        alive = node >= 0
        base = (node.clamp_min(0) * self.alphabet).to(self.keys.dtype)
        lo = torch.searchsorted(self.keys, base)
        hi = torch.where(alive, torch.searchsorted(self.keys, base + self.alphabet), lo)
        width = int((hi - lo).max()) if n and steps < self.max_length else 0
        edge = lo[:, None] + torch.arange(width, device=device)[None, :]
        valid = edge < hi[:, None]
        if width == 0:
            return torch.full((n, 0), self.vocab_size, dtype=torch.int64, device=device), valid
        local = self.keys[edge.clamp(max=len(self.keys) - 1)].to(torch.int64) - base[:, None].to(torch.int64)
        token = self.local_to_token[steps, local.clamp(0, self.alphabet)]
        return torch.where(valid, token, torch.full_like(token, self.vocab_size)), valid

    def allowed_mask(self, prefixes: torch.Tensor) -> torch.Tensor:
        """Bool ``[N, vocab_size]``: the tokens that keep each prefix on the trie; pad alone for finished/dead ones."""
        n, steps = prefixes.shape
        device = prefixes.device
        if steps == 0:
            return self.root_allowed.to(device)[None, :].expand(n, -1).clone()
        tokens, valid = self.allowed_tokens(prefixes)
        mask = torch.zeros(n, self.vocab_size + 1, dtype=torch.bool, device=device)
        mask.scatter_(1, tokens, True)
        mask = mask[:, : self.vocab_size]
        mask[~valid.any(dim=1), self.pad_token_id] = True  # a finished spelling or a dead beam: only padding
        return mask


class TrieLogitsProcessor(LogitsProcessor):
    """Keeps every beam on the item trie, for ``model.generate(logits_processor=[...])``.

    Returns exactly what ``prefix_allowed_tokens_fn`` (the reference) returns: the same scores at allowed tokens,
    ``-inf`` elsewhere; after a complete spelling, or off the trie, only the pad token is allowed. No Python loop over
    the batch or the beams; per-step cost does not grow with the catalogue (beyond a binary search).

    Args:
        index (`TrieIndex`): the spellings; build it with :func:`hf_genrec.build_trie_index`.
        decoder_start_length (`int`, defaults to 1): tokens at the front of ``input_ids`` that are not part of the
            spelling (T5's decoder start token).
    """

    def __init__(self, index: TrieIndex, decoder_start_length: int = 1):
        self.index = index
        self.decoder_start_length = int(decoder_start_length)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self.index.keys.device != scores.device:
            self.index.to(scores.device)
        allowed = self.index.allowed_mask(input_ids[:, self.decoder_start_length :])
        if scores.shape[-1] != allowed.shape[-1]:
            # The model's output layer may be padded past the tokenizer (e.g. to a multiple of 8).
            extra = scores.shape[-1] - allowed.shape[-1]
            if extra < 0:
                raise ValueError(
                    f"The model scores {scores.shape[-1]} tokens but the trie indexes {allowed.shape[-1]}; resize the "
                    "model's embeddings to the tokenizer (model.resize_token_embeddings(len(tokenizer)))."
                )
            allowed = torch.nn.functional.pad(allowed, (0, extra), value=False)
        return scores.masked_fill(~allowed, float("-inf"))

    def candidate_scores(
        self, input_ids: torch.LongTensor, candidates: torch.Tensor, scores: torch.FloatTensor
    ) -> torch.FloatTensor:
        """``__call__`` on the scores of given candidate tokens ``[rows, K]`` (see `allowed_logits`), not the
        whole vocabulary: ``-inf`` for every candidate that leaves this trie."""
        if self.index.keys.device != scores.device:
            self.index.to(scores.device)
        tokens, valid = self.index.allowed_tokens(input_ids[:, self.decoder_start_length :])
        allowed = candidates_among(candidates, torch.where(valid, tokens, -1))
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


def allowed_logits(
    hidden: torch.Tensor, output_layer: torch.nn.Module, index: TrieIndex, prefixes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The output layer's logits for only the tokens that could follow each prefix on the trie.

    Scores the tokens used at the prefixes' depth of the trie (one matrix product: 256 codes rather than the whole
    vocabulary) or, where a node has few children among many tokens (per-item collision codes: a handful out of one
    token per item), gathers just those children's output embeddings. The training loss
    (`trie_cross_entropy_from_states`) and the beam search (`shared_beam_search`) both score this way.

    Args:
        hidden: ``[N, d]`` the states the output layer reads, one per prefix.
        output_layer: the model's output embeddings (`get_output_embeddings()`), a linear layer.
        index: the item trie.
        prefixes: ``[N, t]`` the spelling tokens so far (all of one depth ``t``, which must be below
            ``index.max_length``).

    Returns:
        `(logits, candidates, allowed)`, each ``[N, K]``: the logits of the ``candidates`` token ids (sorted in
        each row; ``index.vocab_size`` pads them) and which candidates continue each prefix on the trie.
    """
    step = prefixes.shape[1]
    weight, bias = output_layer.weight, getattr(output_layer, "bias", None)
    tokens, valid = index.allowed_tokens(prefixes)
    depth_tokens = index.local_to_token[step]
    depth_tokens = depth_tokens[depth_tokens < index.vocab_size]
    rows = len(prefixes)
    if tokens.shape[1] * 8 < len(depth_tokens):  # a few children each: gather their output embeddings
        candidates = tokens
        logits = torch.einsum("nd,nkd->nk", hidden, weight[tokens.clamp(max=index.vocab_size - 1)])
        allowed = valid
    else:  # one product with every token of this depth, then keep each row's children
        candidates = depth_tokens[None, :].expand(rows, -1)
        logits = hidden @ weight[depth_tokens].T
        local = index.token_to_local[step, tokens.clamp(max=index.vocab_size - 1)].to(torch.int64)
        allowed = torch.zeros(rows, len(depth_tokens) + 1, dtype=torch.bool, device=hidden.device)
        allowed.scatter_(1, torch.where(valid, local, len(depth_tokens)), True)
        allowed = allowed[:, :-1]
    if bias is not None:
        logits = logits + bias[candidates.clamp(max=index.vocab_size - 1)]
    return logits, candidates, allowed


def candidate_positions(candidates: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each of ``tokens`` ``[N, S]`` sits among its row's sorted ``candidates`` ``[N, K]``: `(position,
    found)`, both ``[N, S]``; a token that is not a candidate gets ``found=False`` and position ``K``. For processors
    that act on the candidate scores of `allowed_logits` instead of a vocabulary-wide row."""
    k = candidates.shape[1]
    if k == 0:
        return torch.full_like(tokens, 0), torch.zeros_like(tokens, dtype=torch.bool)
    position = torch.searchsorted(candidates.contiguous(), tokens.contiguous())
    found = candidates.gather(1, position.clamp(max=k - 1)) == tokens
    found &= position < k
    return torch.where(found, position, k), found


def candidates_among(candidates: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Bool ``[N, K]``: which of each row's sorted ``candidates`` are among its ``tokens`` ``[N, S]`` (``-1`` pads
    them)."""
    position, _ = candidate_positions(candidates, tokens)
    among = torch.zeros(candidates.shape[0], candidates.shape[1] + 1, dtype=torch.bool, device=candidates.device)
    among.scatter_(1, position, True)
    return among[:, :-1]


def _check_loss_inputs(
    index: TrieIndex, labels: torch.Tensor, scores: torch.Tensor, name: str, last: str, banned: torch.Tensor | None
) -> None:
    """The checks both trie losses make: ``scores`` (logits or states) line up with the ``[N, width]`` labels, and
    ``banned`` is ``[N, width, vocab]``; then the index moves to the labels' device."""
    if labels.dim() != 2 or scores.shape[:2] != labels.shape:
        raise ValueError(
            f"{name} {tuple(scores.shape)} and labels {tuple(labels.shape)} must be [N, width(, {last})]."
        )
    expected = (*labels.shape, index.vocab_size)
    if banned is not None and tuple(banned.shape) != expected:
        raise ValueError(f"banned {tuple(banned.shape)} must be [N, width, vocab] like {expected}.")
    if index.keys.device != labels.device:
        index.to(labels.device)


def trie_cross_entropy(
    logits: torch.Tensor, labels: torch.Tensor, index: TrieIndex, banned: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy of item spellings with the softmax of each step taken over the tokens the trie allows there.

    The constrained beam search only ever compares tokens that continue a real item, so a model trained this way
    spends nothing on learning which IDs exist; decode it with renormalised scores
    (``generation_config.renormalize_logits=True``) so that ranking uses the same distribution.

    Args:
        logits: ``[N, width, vocab]`` decoder logits, one row per target spelling.
        labels: ``[N, width]`` the spellings (EOS included), ``-100`` after them.
        index: the item trie.
        banned: optional bool ``[N, width, index.vocab_size]``, tokens to leave out of each step's softmax as well
            (e.g. `hf_genrec.decoding.exclude_history.history_excluded_tokens`, the items ``exclude_history`` keeps out).

    Returns:
        The mean over the non-ignored label tokens.
    """
    _check_loss_inputs(index, labels, logits, "logits", "vocab", banned)
    allowed = torch.stack([index.allowed_mask(labels[:, :step]) for step in range(labels.shape[1])], dim=1)
    if banned is not None:
        allowed &= ~banned
    extra = logits.shape[-1] - allowed.shape[-1]
    if extra < 0:
        raise ValueError(f"The model scores {logits.shape[-1]} tokens but the trie indexes {allowed.shape[-1]}.")
    allowed = torch.nn.functional.pad(allowed, (0, extra), value=False)
    masked = logits.masked_fill(~allowed, torch.finfo(logits.dtype).min)
    return torch.nn.functional.cross_entropy(
        masked.reshape(-1, masked.shape[-1]).float(), labels.reshape(-1), ignore_index=-100
    )


def trie_cross_entropy_from_states(
    states: torch.Tensor,
    output_layer: torch.nn.Module,
    labels: torch.Tensor,
    index: TrieIndex,
    banned: torch.Tensor | None = None,
    bonus: torch.Tensor | None = None,
) -> torch.Tensor:
    """`trie_cross_entropy` of ``output_layer(states)`` (plus ``bonus``), computing only the logits it needs.

    Each step scores the tokens used at its depth of the trie (one matrix product; 256 codes rather than the whole
    vocabulary) or, where a node has few children among many tokens (per-item collision codes: a handful out of one
    token per item), just those children. The loss is the same number as the dense one, at a fraction of its cost
    once the vocabulary is large.

    Args:
        states: ``[N, width, d]`` the states the output layer reads, one row per target spelling.
        output_layer: the model's output embeddings (`get_output_embeddings()`), a linear layer.
        labels, index, banned: as for `trie_cross_entropy`.
        bonus: optional ``[N, width, vocab]`` added to the logits before the softmax (a fused prior).

    Returns:
        The mean over the non-ignored label tokens.
    """
    _check_loss_inputs(index, labels, states, "states", "d", banned)
    total, count = states.new_zeros((), dtype=torch.float32), 0
    for step in range(min(labels.shape[1], index.max_length)):
        rows = (labels[:, step] != -100).nonzero(as_tuple=True)[0]
        if len(rows) == 0:
            continue
        target = labels[rows, step]
        logits, candidates, allowed = allowed_logits(states[rows, step], output_layer, index, labels[rows, :step])
        columns = candidates.clamp(max=index.vocab_size - 1)  # the padding of a row's candidates is never allowed
        if bonus is not None:
            logits = logits.float() + bonus[rows, step].gather(1, columns)
        if banned is not None:
            allowed = allowed & ~banned[rows, step].gather(1, columns)
        hit = (candidates == target[:, None]) & allowed
        if not bool(hit.any(dim=1).all()):
            bad = int(rows[~hit.any(dim=1)][0])
            raise ValueError(
                f"Label spelling {labels[bad].tolist()} leaves the item trie at step {step}: every label must spell "
                "an item of the trie (build the trie and the labels from the same ItemTokenizer)."
            )
        logits = logits.float().masked_fill(~allowed, torch.finfo(torch.float32).min)
        total = total + torch.nn.functional.cross_entropy(logits, hit.float().argmax(dim=1), reduction="sum")
        count += len(rows)
    if (labels[:, index.max_length :] != -100).any():
        raise ValueError(f"Labels run past the trie's longest spelling ({index.max_length} tokens).")
    return total / count if count else states.sum() * 0.0
