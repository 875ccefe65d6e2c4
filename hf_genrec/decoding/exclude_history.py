"""Keep given items (a user's history) out of constrained beam search, for ``exclude_history``.

In data where a user meets an item once (a review, a rating, a purchase of a durable good), the next item is never
one of the history's, yet a sequential model often ranks history items high: they are what the history looks
like. Dropping them after the search leaves fewer than ``k`` results and wastes beams; this processor bans them
inside the search instead. A prefix is closed when every item below it in the trie is banned, and the token leading
into a closed prefix is masked, so beams turn to other items as early as possible and never reach a dead end: each
search still returns ``k`` items while the catalogue has ``k`` that are not banned.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from .trie import TrieIndex, candidates_among


class ExcludeItemsLogitsProcessor(LogitsProcessor):
    """Masks (``-inf``) every token that would lead a beam into a prefix whose items are all excluded.

    Use it after the trie constraint (`TrieLogitsProcessor`), e.g. ``LogitsProcessorList([trie, exclude])``. The
    rows of ``input_ids`` are ``batch * beams``, the beams of each history together, as ``generate`` lays them out.

    Args:
        index (`TrieIndex`): the item trie the search is constrained to.
        spellings (`torch.Tensor`): ``[n_items, max_length]`` token ids of every item's spelling, ``-1`` after its
            EOS (the table `build_trie_index` indexes).
        excluded (`Sequence[Sequence[int]]`): for each history of the batch, the item rows to keep out.
        decoder_start_length (`int`, defaults to 1): tokens at the front of ``input_ids`` that are not part of the
            spelling (T5's decoder start token).
    """

    def __init__(
        self,
        index: TrieIndex,
        spellings: torch.Tensor,
        excluded: Sequence[Sequence[int]],
        decoder_start_length: int = 1,
    ):
        self.index = index
        self.decoder_start_length = int(decoder_start_length)
        self.batch = len(excluded)
        rows = [sorted(set(int(i) for i in items)) for items in excluded]
        bad = [i for items in rows for i in items if not 0 <= i < len(spellings)]
        if bad:
            raise ValueError(f"Excluded item rows must lie in [0, {len(spellings)}), got {bad[:3]}.")
        width = max((len(items) for items in rows), default=0)
        items = torch.full((self.batch, max(width, 1)), -1, dtype=torch.long)
        for b, row in enumerate(rows):
            items[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        device = index.keys.device  # where the trie is, which is where the search runs
        # path[b, h, d]: the trie node after the first d + 1 tokens of excluded item h (-1 past its EOS); an item
        # this trie does not hold closes nothing
        spelled, path = index.item_paths(spellings, items)
        valid = path[..., 0] >= 0
        full = (valid.sum(dim=1) >= index.num_items).nonzero()
        if len(full):
            raise ValueError(
                f"History {int(full[0, 0])} excludes every item of the catalogue: nothing is left to recommend. "
                "Rank it without excluding its items."
            )
        # a node is closed when the excluded items passing through it are all the items below it
        # (counted per history and node by sorting, not by comparing every pair: histories can be long)
        history = torch.arange(self.batch, device=device)[:, None, None].expand_as(path)
        _, inverse, counts = torch.unique(
            history * index.num_nodes + path.clamp(min=0), return_inverse=True, return_counts=True
        )
        below = index.items_under.to(device=device, dtype=torch.long)[path.clamp(min=0)]
        closed = (path >= 0) & (counts[inverse] == below)
        root = torch.zeros_like(path[..., :1])
        #: for each step d: the node a beam must be at (parent), the token to mask, and whether the edge is closed
        self.parent = torch.cat([root, path[..., :-1]], dim=-1)
        self.token = spelled
        self.closed = closed

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        banned = self.banned_mask(input_ids, scores.shape[-1])
        if banned is None:
            return scores
        return scores.masked_fill(banned.to(scores.device), float("-inf"))

    def banned_mask(self, input_ids: torch.LongTensor, vocab_size: int) -> torch.Tensor | None:
        """Bool ``[rows, vocab_size]``: the tokens each row of ``input_ids`` (a prefix, decoder start included) may
        not take next; `None` once past the longest spelling. Also what a training loss masks (see
        `trie_cross_entropy`)."""
        token = self._banned_tokens(input_ids, vocab_size)
        if token is None:
            return None
        banned = torch.zeros(token.shape[0], vocab_size + 1, dtype=torch.bool, device=token.device)
        banned.scatter_(1, token, True)
        return banned[:, :vocab_size]

    def candidate_scores(
        self, input_ids: torch.LongTensor, candidates: torch.Tensor, scores: torch.FloatTensor
    ) -> torch.FloatTensor:
        """``__call__`` on the scores of each row's candidate tokens ``[rows, K]`` (sorted; see
        `hf_genrec.decoding.trie.allowed_logits`) rather than of the whole vocabulary."""
        token = self._banned_tokens(input_ids, -1)
        if token is None:
            return scores
        return scores.masked_fill(candidates_among(candidates, token).to(scores.device), float("-inf"))

    def _banned_tokens(self, input_ids: torch.LongTensor, none: int) -> torch.Tensor | None:
        """``[rows, H]`` the tokens each row may not take next, ``none`` where an excluded item bans nothing;
        `None` once past the longest spelling."""
        step = input_ids.shape[1] - self.decoder_start_length
        if step >= self.token.shape[-1] or self.batch == 0:
            return None
        beams, node = self.index.beam_nodes(input_ids, self.batch, self.decoder_start_length, "excluded items")
        device, rows = input_ids.device, input_ids.shape[0]
        parent = self.parent[..., step].to(device)  # [batch, H]
        closed = self.closed[..., step].to(device)
        match = (node.view(self.batch, beams, 1) == parent[:, None, :]) & closed[:, None, :]  # [batch, beams, H]
        token = torch.where(match, self.token[..., step].to(device)[:, None, :], none)
        return token.reshape(rows, -1)


def history_excluded_tokens(
    index: TrieIndex, spellings: torch.Tensor, excluded: Sequence[Sequence[int]], labels: torch.Tensor
) -> torch.Tensor:
    """Bool ``[N, width, vocab_size]``: at each step of each label spelling (teacher forcing), the tokens that lead
    only into items of that target's ``excluded`` list, the tokens `ExcludeItemsLogitsProcessor` masks at ranking.

    A training loss that masks them too (``exclude_history_in_loss``) trains the distribution the search ranks
    with, as `trie_cross_entropy` does for the trie. The label's own token is never masked (a target repeated from
    its history keeps a finite loss).

    Args:
        index (`TrieIndex`): the item trie.
        spellings (`torch.Tensor`): ``[n_items, max_length]`` every item's spelling, ``-1`` after its EOS.
        excluded (`Sequence[Sequence[int]]`): for each label row, the item rows to keep out.
        labels (`torch.Tensor`): ``[N, width]`` the target spellings, ``-100`` after them.
    """
    if len(excluded) != labels.shape[0]:
        raise ValueError(
            f"{len(excluded)} lists of excluded items for {labels.shape[0]} label rows; give one per row."
        )
    processor = ExcludeItemsLogitsProcessor(index, spellings, excluded, decoder_start_length=0)
    mask = torch.zeros(*labels.shape, index.vocab_size, dtype=torch.bool, device=labels.device)
    for step in range(min(labels.shape[1], processor.token.shape[-1])):
        banned = processor.banned_mask(labels[:, :step], index.vocab_size)
        if banned is not None:
            mask[:, step] = banned
    mask.scatter_(-1, labels.clamp(min=0)[..., None], False)
    return mask
