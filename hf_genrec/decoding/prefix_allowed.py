"""Constrained decoding: only spellings of real items can be generated.

`ItemTrie` holds every valid spelling (EOS included). `prefix_allowed_tokens_fn` turns it into the callable that
`model.generate(prefix_allowed_tokens_fn=...)` expects; it is the reference implementation, exact but a Python call
per beam and step.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch


class ItemTrie:
    """A prefix tree over token-id sequences; each sequence is one item's spelling and ends with EOS.

    Sequences may have different lengths (title-token IDs), as long as no spelling is a prefix of another one, which
    the final EOS guarantees.
    """

    def __init__(self, sequences: Iterable[Sequence[int]]):
        self.root: dict[int, dict] = {}
        self.num_sequences = 0
        self.max_length = 0
        for seq in sequences:
            seq = [int(t) for t in seq]
            if not seq:
                raise ValueError("ItemTrie got an empty spelling; every item needs at least one token and EOS.")
            node = self.root
            for token in seq[:-1]:
                node = node.setdefault(token, {})
            if seq[-1] in node:
                raise ValueError(f"Two items share the spelling {seq}; semantic IDs must be unique per item.")
            node[seq[-1]] = {}
            self.num_sequences += 1
            self.max_length = max(self.max_length, len(seq))

    def __len__(self) -> int:
        return self.num_sequences

    def next_tokens(self, prefix: Sequence[int]) -> list[int] | None:
        """Tokens that may follow ``prefix``; ``[]`` after a complete spelling, ``None`` if ``prefix`` is off the trie."""
        node = self.root
        for token in prefix:
            node = node.get(int(token))
            if node is None:
                return None
        return list(node)

    def __contains__(self, sequence: Sequence[int]) -> bool:
        node = self.root
        for token in sequence:
            node = node.get(int(token))
            if node is None:
                return False
        return not node


def prefix_allowed_tokens_fn(
    trie: ItemTrie, pad_token_id: int, decoder_start_token_id: int | None = None, *, prompt_length: int | None = None
) -> Callable[[int, torch.Tensor], list[int]]:
    """The ``prefix_allowed_tokens_fn`` for `model.generate` that keeps every beam on the item trie.

    Args:
        trie (`ItemTrie`): the valid spellings.
        pad_token_id (`int`): returned for finished or dead beams so that generate always has one allowed token.
        decoder_start_token_id (`int`, *optional*): stripped from the front of the decoder input (T5 uses the pad
            token); defaults to ``pad_token_id``.
        prompt_length (`int`, *optional*): for a decoder-only model, the width of the (left-padded) prompt that
            ``generate`` keeps at the front of every sequence: those tokens are stripped instead of a start token.
    """
    start = pad_token_id if decoder_start_token_id is None else decoder_start_token_id

    def allowed(batch_id: int, input_ids: torch.Tensor) -> list[int]:
        prefix = input_ids.tolist()
        if prompt_length is not None:
            prefix = prefix[prompt_length:]
        elif prefix and prefix[0] == start:
            prefix = prefix[1:]
        tokens = trie.next_tokens(prefix)
        # A finished spelling or a beam that beam search keeps alive at -inf score: any single token will do.
        return tokens if tokens else [pad_token_id]

    return allowed
