"""A T5 tokenizer that speaks semantic IDs.

Every (level, code) pair becomes one added special token, ``<a_12>`` for code 12 at level 0, ``<b_45>`` for code 45 at
level 1 and so on. An item is spelled as its code tokens followed by EOS; a history is the items' spellings
concatenated, followed by one EOS.
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from .semantic_ids import SemanticIDs

ITEM_MAP_DIR = "semantic_ids"
TOKENIZER_CONFIG_NAME = "genrec_tokenizer.json"


def level_token(level: int, code: int) -> str:
    """The token for ``code`` at ``level``: ``<a_12>``, ``<b_3>``, ... (``<l26_4>`` past 26 levels)."""
    name = string.ascii_lowercase[level] if level < 26 else f"l{level}"
    return f"<{name}_{code}>"


def minimal_t5_tokenizer() -> T5Tokenizer:
    """A T5 tokenizer with only ``<pad>``, ``</s>``, ``<unk>`` and the word-boundary piece, built with no files.

    Histories are made of ID tokens only, so a full SentencePiece vocabulary is not needed; it keeps the embedding
    table small and works offline.
    """
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -1.0)]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


class ItemTokenizer:
    """Maps items to token ids and back, on top of any T5 tokenizer.

    Args:
        tokenizer (`PreTrainedTokenizerBase`):
            A T5-style tokenizer (``</s>`` as EOS, ``<pad>`` as decoder start). The ID tokens are added to it.
        semantic_ids (`SemanticIDs`):
            One code tuple per item; row ``i`` is ``semantic_ids.item_ids[i]``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, semantic_ids: SemanticIDs):
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError(
                "The base tokenizer needs an EOS and a pad token (T5 has `</s>` and `<pad>`); "
                f"got eos={tokenizer.eos_token!r}, pad={tokenizer.pad_token!r}."
            )
        self.tokenizer = tokenizer
        self.semantic_ids = semantic_ids
        codes = np.asarray(semantic_ids.codes, dtype=np.int64)
        level_tokens = [
            [level_token(level, code) for code in range(size)]
            for level, size in enumerate(semantic_ids.codebook_sizes)
        ]
        vocab = tokenizer.get_vocab()
        missing = [t for tokens in level_tokens for t in tokens if t not in vocab]
        if missing:
            tokenizer.add_tokens(missing, special_tokens=True)
        # [level, code] -> token id; one lookup table keeps encoding vectorised.
        width = max(semantic_ids.codebook_sizes)
        self.code_to_token = np.full((len(level_tokens), width), -1, dtype=np.int64)
        for level, tokens in enumerate(level_tokens):
            self.code_to_token[level, : len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
        levels = np.arange(codes.shape[1])
        #: ``[n_items, n_levels + 1]`` token ids of each item's spelling, EOS included.
        self.item_token_ids = np.concatenate(
            [self.code_to_token[levels, codes], np.full((len(codes), 1), tokenizer.eos_token_id, dtype=np.int64)],
            axis=1,
        )
        self.item_to_index = {item: i for i, item in enumerate(semantic_ids.item_ids)}
        self._spelling_to_index = {tuple(row): i for i, row in enumerate(self.item_token_ids.tolist())}

    # ----------------------------------------------------------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        return list(self.semantic_ids.item_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_token_ids)

    @property
    def id_length(self) -> int:
        """Tokens per item spelling, EOS included (the number of decoding steps)."""
        return self.item_token_ids.shape[1]

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_token_id(self) -> int:
        return self.tokenizer.pad_token_id

    def __len__(self) -> int:
        return len(self.tokenizer)

    def index_of(self, item_ids: Iterable[str], *, context: str = "history") -> np.ndarray:
        """Row indices of ``item_ids``; an unknown id raises a ValueError that names it."""
        out = []
        for item in item_ids:
            index = self.item_to_index.get(str(item))
            if index is None:
                raise ValueError(
                    f"Unknown item id {item!r} in the {context}: it is not in this recommender's catalogue of "
                    f"{self.num_items} items. Check the id spelling (ids are strings, e.g. '242'), or add the item "
                    "to the catalogue before asking for recommendations."
                )
            out.append(index)
        return np.asarray(out, dtype=np.int64)

    def encode_history(self, history: Sequence[str], max_items: int | None = None) -> list[int]:
        """Token ids of a history (oldest item first): item spellings without their EOS, then one EOS."""
        if len(history) == 0:
            raise ValueError(
                "Empty history: a generative recommender needs at least one past item to condition on. "
                "For users with no history, fall back to a popularity list."
            )
        if max_items is not None:
            history = list(history)[-max_items:]
        rows = self.item_token_ids[self.index_of(history), :-1]
        return rows.reshape(-1).tolist() + [self.eos_token_id]

    def encode_target(self, item_id: str) -> list[int]:
        """Token ids of an item's spelling, EOS included: the decoder's labels."""
        return self.item_token_ids[self.index_of([item_id], context="target")[0]].tolist()

    def decode_index(self, token_rows: Iterable[Sequence[int]]) -> list[int]:
        """Item row index of each generated spelling (decoder start stripped), ``-1`` where it is no item."""
        pad = self.pad_token_id
        out = []
        for row in token_rows:
            # Pad (decoder start, finished beams) and -100 (label padding) are not part of any spelling.
            row = [t for t in row if t != pad and t >= 0]
            out.append(self._spelling_to_index.get(tuple(row), -1))
        return out

    def item_spelling(self, item_id: str) -> str:
        """The item's ID as text, e.g. ``<a_3><b_17><c_0><d_0>``."""
        return self.tokenizer.convert_tokens_to_string(
            self.tokenizer.convert_ids_to_tokens(self.encode_target(item_id)[:-1])
        ).replace(" ", "")

    # ----------------------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the standard tokenizer files plus the item ↔ semantic-ID map (``semantic_ids/``)."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.semantic_ids.save(save_directory / ITEM_MAP_DIR)
        (save_directory / TOKENIZER_CONFIG_NAME).write_text(
            json.dumps({"token_format": "<{level_letter}_{code}>", "id_length": self.id_length}, indent=2) + "\n"
        )

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ItemTokenizer:
        directory = Path(directory)
        if not (directory / ITEM_MAP_DIR).is_dir():
            raise FileNotFoundError(
                f"{directory} has no `{ITEM_MAP_DIR}/` folder with the item ↔ semantic-ID map. It is not an "
                "hf_genrec checkpoint (a plain T5 checkpoint lacks it); train one with `hf-genrec train` or build an "
                "ItemTokenizer from your own SemanticIDs."
            )
        tokenizer = AutoTokenizer.from_pretrained(directory)
        semantic_ids = SemanticIDs.load(directory / ITEM_MAP_DIR)
        n_before = len(tokenizer)
        item_tokenizer = cls(tokenizer, semantic_ids)
        if len(tokenizer) != n_before:
            raise ValueError(
                f"The tokenizer in {directory} lacks {len(tokenizer) - n_before} of the ID tokens its item map needs: "
                "the tokenizer files and `semantic_ids/` come from different runs. Save both from one ItemTokenizer."
            )
        return item_tokenizer
