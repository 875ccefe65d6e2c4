"""A T5 tokenizer that speaks semantic IDs.

Every (level, code) pair becomes one added special token, ``<a_12>`` for code 12 at level 0, ``<b_45>`` for code 45 at
level 1 and so on. An item is spelled as its code tokens followed by EOS; a history is the items' spellings
concatenated, followed by one EOS.
"""

from __future__ import annotations

import copy
import json
import os
import string
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from .semantic_ids import SemanticIDs
from .semantic_ids._io import DamagedFileError, read_json

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
        history_eos (`bool`, defaults to `True`):
            End fixed-length histories with EOS (T5's convention). Models with a causal encoder
            (`GenRecT5ForConditionalGeneration`) train on every prefix of a history at once, and a prefix has no
            EOS after it, so their histories are spelled without one (`False`). Variable-length IDs always end each
            item with EOS.

    Example:

    ```python
    >>> from hf_genrec import ItemTokenizer, minimal_t5_tokenizer
    >>> from hf_genrec.semantic_ids.ids import from_codes
    >>> item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), from_codes([[0, 1], [0, 2], [1, 1]], ["a", "b", "c"]))
    >>> item_tokenizer.item_spelling("b")
    '<a_0><b_2>'
    >>> item_tokenizer.index_of(["c", "a"]).tolist()  # rows of the catalogue
    [2, 0]
    ```
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, semantic_ids: SemanticIDs, history_eos: bool = True):
        if tokenizer.eos_token_id is None or tokenizer.pad_token_id is None:
            raise ValueError(
                "The base tokenizer needs an EOS and a pad token (T5 has `</s>` and `<pad>`); "
                f"got eos={tokenizer.eos_token!r}, pad={tokenizer.pad_token!r}."
            )
        self.tokenizer = tokenizer
        self.semantic_ids = semantic_ids
        self.history_eos = bool(history_eos)
        codes = np.asarray(semantic_ids.codes, dtype=np.int64)
        if semantic_ids.vocabulary is not None:
            code_to_token = self._vocabulary_token_ids(tokenizer, semantic_ids)[None, :]
            level_of = np.zeros(codes.shape[1], dtype=np.int64)  # one vocabulary shared by every level
        else:
            level_tokens = [
                [level_token(level, code) for code in range(size)]
                for level, size in enumerate(semantic_ids.codebook_sizes)
            ]
            vocab = tokenizer.get_vocab()
            missing = [t for tokens in level_tokens for t in tokens if t not in vocab]
            if missing:
                tokenizer.add_tokens(missing, special_tokens=True)
            # [level, code] -> token id; one lookup table keeps encoding vectorised.
            code_to_token = np.full((len(level_tokens), max(semantic_ids.codebook_sizes)), -1, dtype=np.int64)
            for level, tokens in enumerate(level_tokens):
                code_to_token[level, : len(tokens)] = tokenizer.convert_tokens_to_ids(tokens)
            level_of = np.arange(codes.shape[1])
        self.code_to_token = code_to_token
        self._level_of = level_of
        #: ``[n_items, max_id_length + 1]`` token ids of each item's spelling, then EOS, then pad (variable length);
        #: and the tokens per item spelling, EOS included
        self.item_token_ids, self.item_lengths = self._spell(codes)
        self.is_variable_length = bool((self.item_lengths != self.item_lengths[0]).any())
        self.item_to_index = {item: i for i, item in enumerate(semantic_ids.item_ids)}
        self._spelling_to_index = self._spelling_map(self.item_token_ids, self.item_lengths, 0)

    def _spell(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Token ids (spelling, EOS, pad) and spelling lengths (EOS included) of code rows."""
        lengths = (codes >= 0).sum(axis=1)
        pad = self.tokenizer.pad_token_id
        table = np.full((len(codes), codes.shape[1] + 1), pad, dtype=np.int64)
        table[:, :-1] = np.where(codes >= 0, self.code_to_token[self._level_of, np.maximum(codes, 0)], pad)
        table[np.arange(len(codes)), lengths] = self.tokenizer.eos_token_id
        return table, lengths + 1

    @staticmethod
    def _spelling_map(table: np.ndarray, lengths: np.ndarray, first: int) -> dict[tuple[int, ...], int]:
        return {tuple(row[:n]): first + i for i, (row, n) in enumerate(zip(table.tolist(), lengths.tolist()))}

    def with_appended_items(self, semantic_ids: SemanticIDs) -> ItemTokenizer:
        """A copy for ``semantic_ids``: this catalogue with rows appended, spelled with tokens that already exist.

        Only the new rows are spelled and indexed, so growing a large catalogue costs what the new items cost.
        """
        n_old = self.num_items
        if semantic_ids.n_items < n_old or semantic_ids.item_ids[:n_old] != self.semantic_ids.item_ids:
            raise ValueError("with_appended_items needs this catalogue's items first, in order, then the new ones.")
        codes = np.asarray(semantic_ids.codes[n_old:], dtype=np.int64)
        if codes.shape[1] != self.item_token_ids.shape[1] - 1:
            raise ValueError(
                f"The new rows have {codes.shape[1]} levels; this catalogue's IDs have a different number."
            )
        width = self.code_to_token.shape[1]
        if (codes >= width).any():
            raise ValueError("A new item uses a code this tokenizer has no token for; new tokens need retraining.")
        table, lengths = self._spell(codes)
        out = copy.copy(self)
        out.semantic_ids = semantic_ids
        out.item_token_ids = np.concatenate([self.item_token_ids, table])
        out.item_lengths = np.concatenate([self.item_lengths, lengths])
        out.is_variable_length = bool((out.item_lengths != out.item_lengths[0]).any())
        out.item_to_index = {**self.item_to_index, **{item: n_old + i for i, item in enumerate(semantic_ids.item_ids[n_old:])}}  # fmt: skip
        out._spelling_to_index = {**self._spelling_to_index, **self._spelling_map(table, lengths, n_old)}
        return out

    def with_rows_kept(self, semantic_ids: SemanticIDs, keep: np.ndarray) -> ItemTokenizer:
        """A copy for ``semantic_ids``: this catalogue restricted to the rows where ``keep`` is true."""
        keep = np.asarray(keep, dtype=bool)
        if len(keep) != self.num_items or int(keep.sum()) != semantic_ids.n_items:
            raise ValueError("with_rows_kept needs one keep flag per item, and the kept rows' semantic IDs.")
        out = copy.copy(self)
        out.semantic_ids = semantic_ids
        out.item_token_ids = self.item_token_ids[keep]
        out.item_lengths = self.item_lengths[keep]
        out.is_variable_length = bool((out.item_lengths != out.item_lengths[0]).any())
        out.item_to_index = {item: i for i, item in enumerate(semantic_ids.item_ids)}
        new_row = (np.cumsum(keep) - 1).tolist()
        kept = keep.tolist()
        out._spelling_to_index = {key: new_row[row] for key, row in self._spelling_to_index.items() if kept[row]}
        return out

    @staticmethod
    def _vocabulary_token_ids(tokenizer: PreTrainedTokenizerBase, semantic_ids: SemanticIDs) -> np.ndarray:
        """Token id of each vocabulary entry; adds ``added_tokens``; raises if other entries are not in the vocab."""
        vocab = tokenizer.get_vocab()
        added = set(semantic_ids.added_tokens)
        missing = [t for t in semantic_ids.vocabulary if t not in vocab and t not in added]
        if missing:
            raise ValueError(
                f"{len(missing)} of the {len(semantic_ids.vocabulary)} tokens these {semantic_ids.scheme!r} IDs are "
                f"spelled with are not in the tokenizer's vocabulary (first: {missing[:5]}): the codes do not fit "
                "this tokenizer. Build the ItemTokenizer on the tokenizer the IDs were made with (e.g. "
                "TitleIDs(...).tokenizer)."
            )
        new = [t for t in semantic_ids.added_tokens if t not in vocab]
        if new:
            tokenizer.add_tokens(new, special_tokens=True)
        ids = np.asarray(tokenizer.convert_tokens_to_ids(semantic_ids.vocabulary), dtype=np.int64)
        special = {tokenizer.pad_token_id, tokenizer.eos_token_id}
        clash = [t for t, i in zip(semantic_ids.vocabulary, ids.tolist()) if i in special]
        if clash:
            raise ValueError(f"IDs may not be spelled with the pad or EOS token ({clash}); they end every ID.")
        return ids

    # ----------------------------------------------------------------------------------------------------------------
    @property
    def item_ids(self) -> list[str]:
        return list(self.semantic_ids.item_ids)

    @property
    def num_items(self) -> int:
        return len(self.item_token_ids)

    @property
    def id_length(self) -> int:
        """Tokens of the longest item spelling, EOS included (the most decoding steps)."""
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
        """Token ids of a history (oldest item first).

        Fixed-length IDs: the items' spellings back to back, then one EOS (unless ``history_eos=False``).
        Variable-length IDs (titles): each spelling keeps its EOS, which marks where one item ends and the next
        begins.
        """
        if len(history) == 0:
            raise ValueError(
                "Empty history: a generative recommender needs at least one past item to condition on. "
                "For users with no history, fall back to a popularity list."
            )
        if max_items is not None:
            history = list(history)[-max_items:]
        indices = self.index_of(history)
        if self.is_variable_length:
            return [t for i in indices.tolist() for t in self.item_token_ids[i, : self.item_lengths[i]].tolist()]
        rows = self.item_token_ids[indices, :-1]
        return rows.reshape(-1).tolist() + ([self.eos_token_id] if self.history_eos else [])

    def decode_history(self, token_ids: Sequence[int]) -> list[int]:
        """Item rows of a history encoded by `encode_history` (padding and -100 skipped), oldest first."""
        eos = self.eos_token_id
        tokens = [t for t in token_ids if t != self.pad_token_id and t >= 0]
        if self.is_variable_length:
            spellings, current = [], []
            for token in tokens:
                current.append(token)
                if token == eos:
                    spellings.append(tuple(current))
                    current = []
            complete = not current
        else:
            if tokens and tokens[-1] == eos:
                tokens = tokens[:-1]
            width = self.id_length - 1
            complete = len(tokens) % width == 0
            spellings = [(*tokens[i : i + width], eos) for i in range(0, len(tokens) - width + 1, width)]
        rows = [self._spelling_to_index.get(spelling, -1) for spelling in spellings]
        if not complete or -1 in rows:
            raise ValueError(
                f"These history tokens do not spell items of this catalogue one after another: {list(token_ids)[:12]}"
                "... Pass token ids as encode_history writes them, with the ItemTokenizer that wrote them."
            )
        return rows

    def history_token_lengths(self, history: Sequence[str]) -> np.ndarray:
        """Tokens each item of ``history`` takes in `encode_history` (the trailing EOS not counted)."""
        indices = self.index_of(history)
        if self.is_variable_length:
            return self.item_lengths[indices]
        return np.full(len(indices), self.id_length - 1, dtype=np.int64)

    def encode_target(self, item_id: str) -> list[int]:
        """Token ids of an item's spelling, EOS included: the decoder's labels."""
        index = self.index_of([item_id], context="target")[0]
        return self.item_token_ids[index, : self.item_lengths[index]].tolist()

    def spellings(self) -> list[list[int]]:
        """Every item's spelling (EOS included, no padding), in catalogue order: what the trie is built from."""
        return [row[:n] for row, n in zip(self.item_token_ids.tolist(), self.item_lengths.tolist())]

    def decode_index(self, token_rows: Iterable[Sequence[int]]) -> list[int]:
        """Item row index of each generated spelling (decoder start stripped), ``-1`` where it is no item."""
        pad, eos = self.pad_token_id, self.eos_token_id
        out = []
        for row in token_rows:
            # Pad (decoder start, finished beams) and -100 (label padding) are not part of any spelling.
            row = [t for t in row if t != pad and t >= 0]
            # beam search fills finished (shorter) spellings up to the longest one; the spelling ends at its EOS
            if eos in row:
                row = row[: row.index(eos) + 1]
            out.append(self._spelling_to_index.get(tuple(row), -1))
        return out

    def item_spelling(self, item_id: str) -> str:
        """The item's ID as text, e.g. ``<a_3><b_17><c_0><d_0>``."""
        tokens = self.tokenizer.convert_ids_to_tokens(self.encode_target(item_id)[:-1])
        if self.semantic_ids.vocabulary is not None:  # title pieces read as text
            return self.tokenizer.convert_tokens_to_string(tokens)
        return "".join(tokens)

    # ----------------------------------------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the standard tokenizer files plus the item ↔ semantic-ID map (``semantic_ids/``)."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(save_directory)
        self.semantic_ids.save(save_directory / ITEM_MAP_DIR)
        (save_directory / TOKENIZER_CONFIG_NAME).write_text(
            json.dumps(
                {
                    "token_format": "<{level_letter}_{code}>"
                    if self.semantic_ids.vocabulary is None
                    else "vocabulary",
                    "id_length": self.id_length,
                    "variable_length": self.is_variable_length,
                    "history_eos": self.history_eos,
                },
                indent=2,
            )
            + "\n"
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
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory)
        except ValueError as err:  # a truncated tokenizer.json / tokenizer_config.json (JSONDecodeError)
            raise DamagedFileError(directory, f"its tokenizer files do not parse: {err}") from err
        semantic_ids = SemanticIDs.load(directory / ITEM_MAP_DIR)
        settings_file = directory / TOKENIZER_CONFIG_NAME
        settings = read_json(settings_file) if settings_file.exists() else {}
        n_before = len(tokenizer)
        item_tokenizer = cls(tokenizer, semantic_ids, history_eos=settings.get("history_eos", True))
        if len(tokenizer) != n_before:
            raise ValueError(
                f"The tokenizer in {directory} lacks {len(tokenizer) - n_before} of the ID tokens its item map needs: "
                "the tokenizer files and `semantic_ids/` come from different runs. Save both from one ItemTokenizer."
            )
        return item_tokenizer
