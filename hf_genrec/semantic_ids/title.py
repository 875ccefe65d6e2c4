"""Title-token IDs: an item's ID is its title spelled in the tokenizer's own vocabulary (variable length)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._validation import check_item_ids
from .base import ItemIDScheme
from .collisions import add_collision_level, tuple_groups
from .diagnostics import compute_diagnostics
from .ids import SemanticIDs

logger = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"


def suffix_token(index: int) -> str:
    """The token that tells apart items whose (truncated) titles are spelled the same: ``<dup_0>``, ``<dup_1>``..."""
    return f"<dup_{index}>"


def train_title_tokenizer(titles: Sequence[str], vocab_size: int = 8000):
    """A T5 tokenizer whose SentencePiece-style Unigram vocabulary is learnt on ``titles``, offline.

    For when no pretrained T5 tokenizer can be downloaded: the title IDs then use pieces fitted to this catalogue.
    Special tokens come first, as in T5: ``<pad>`` = 0, ``</s>`` = 1, ``<unk>`` = 2.
    """
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import T5Tokenizer

    texts = [str(title) for title in titles if title]
    if not texts:
        raise ValueError("No non-empty titles to learn a vocabulary from.")
    tokenizer = Tokenizer(models.Unigram())
    tokenizer.normalizer = normalizers.NFKC()
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(
        vocab_size=int(vocab_size), special_tokens=["<pad>", "</s>", "<unk>"], unk_token="<unk>", show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer)
    vocab = [(piece, float(score)) for piece, score in json.loads(tokenizer.to_str())["model"]["vocab"]]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


class TitleIDs(ItemIDScheme):
    """Semantic-string IDs (as in "How to Index Item IDs for Recommendation Foundation Models", Hua et al. 2023):
    each item is spelled as the first ``max_tokens`` pieces of its title in the base tokenizer's vocabulary.

    IDs have different lengths; decoding ends each one with EOS. Items whose truncated titles are spelled the same
    get a disambiguating suffix token (``<dup_0>``, ``<dup_1>``, ...; added to the tokenizer); unique titles get none.

    Args:
        tokenizer: the T5 tokenizer the model will use (its ``tokenize`` splits titles into pieces). ``None``: learn
            a Unigram vocabulary of ``vocab_size`` pieces on the catalogue's titles (``train_title_tokenizer``).
        max_tokens: pieces of the title kept (before the suffix).
        vocab_size: size of the learnt vocabulary when ``tokenizer`` is ``None``.
        missing_titles: ``"error"`` (default) raises on items without a title; ``"item_id"`` spells them by their
            item id instead.
    """

    scheme = "title"
    _config_keys = ("max_tokens", "vocab_size", "missing_titles")

    def __init__(self, tokenizer=None, max_tokens: int = 16, vocab_size: int = 8000, missing_titles: str = "error"):
        if isinstance(max_tokens, bool) or int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}.")
        if missing_titles not in ("error", "item_id"):
            raise ValueError(f"missing_titles must be 'error' or 'item_id', got {missing_titles!r}.")
        self.tokenizer = tokenizer
        self.max_tokens = int(max_tokens)
        self.vocab_size = int(vocab_size)
        self.missing_titles = missing_titles

    @property
    def is_fitted(self) -> bool:
        return self.tokenizer is not None

    def _titles(self, titles, item_ids: list[str]) -> list[str]:
        if isinstance(titles, (str, bytes)):
            raise ValueError("titles must be a sequence with one title per item, not a single string.")
        titles = ["" if title is None else str(title).strip() for title in titles]
        if len(titles) != len(item_ids):
            raise ValueError(f"{len(titles)} titles for {len(item_ids)} item ids; give one title per item.")
        missing = [item for item, title in zip(item_ids, titles) if not title]
        if missing and self.missing_titles == "error":
            raise ValueError(
                f"{len(missing)} items have no title (first: {missing[:5]}), so title IDs cannot spell them. Fill "
                "their titles, pass missing_titles='item_id' to spell them by their item id, or pick another scheme."
            )
        return [title or item for item, title in zip(item_ids, titles)]

    def _pieces(self, titles: list[str]) -> list[list[str]]:
        unk = self.tokenizer.unk_token
        vocab = self.tokenizer.get_vocab()
        out = []
        for title in titles:
            pieces = [p if p in vocab else unk for p in self.tokenizer.tokenize(title)][: self.max_tokens]
            out.append(pieces or [unk])
        return out

    def fit(self, features, item_ids) -> SemanticIDs:
        """``features`` are the items' titles (one string per item, aligned with ``item_ids``)."""
        start = time.perf_counter()
        item_ids = check_item_ids(item_ids)
        titles = self._titles(features, item_ids)
        if self.tokenizer is None:
            self.tokenizer = train_title_tokenizer(titles, self.vocab_size)
        spelled = self._pieces(titles)
        vocabulary: list[str] = []
        index: dict[str, int] = {}
        for pieces in spelled:
            for piece in pieces:
                if piece not in index:
                    index[piece] = len(vocabulary)
                    vocabulary.append(piece)
        width = max(len(p) for p in spelled)
        base = np.full((len(spelled), width), -1, dtype=np.int64)
        for row, pieces in enumerate(spelled):
            base[row, : len(pieces)] = [index[p] for p in pieces]

        group, counts = tuple_groups(base)
        repeated = counts[group] > 1
        occurrence = add_collision_level(np.where(base < 0, len(vocabulary), base))[:, -1]
        n_suffixes = int(counts.max()) if repeated.any() else 0
        added = [suffix_token(i) for i in range(n_suffixes)]
        codes = np.full((len(base), width + int(repeated.any())), -1, dtype=np.int64)
        codes[:, :width] = base
        lengths = (base >= 0).sum(axis=1)
        rows = np.flatnonzero(repeated)
        codes[rows, lengths[rows]] = len(vocabulary) + occurrence[rows]
        vocabulary += added
        diagnostics = compute_diagnostics(codes, [len(vocabulary)] * codes.shape[1], False, base_codes=base)
        diagnostics.update(
            {
                "fit_seconds": time.perf_counter() - start,
                "suffixed_items": int(repeated.sum()),
                "extra_levels": int(repeated.any()),
                "truncated_titles": int(sum(len(self.tokenizer.tokenize(t)) > self.max_tokens for t in titles)),
                "quantizer": {"scheme": self.scheme, "max_tokens": self.max_tokens, "vocabulary": len(vocabulary)},
            }
        )
        return SemanticIDs(
            codes=codes,
            codebook_sizes=[len(vocabulary)] * codes.shape[1],
            item_ids=item_ids,
            scheme=self.scheme,
            has_collision_level=False,
            diagnostics=diagnostics,
            vocabulary=vocabulary,
            added_tokens=added,
        )

    def encode(self, features) -> list[list[str]]:
        """Title pieces of new items (``features``: their titles); the caller adds a suffix if a spelling repeats."""
        self._require_fitted()
        titles = ["" if t is None else str(t).strip() for t in features]
        if any(not t for t in titles):
            raise ValueError("Every new item needs a non-empty title to get a title ID.")
        return self._pieces(titles)

    # ------------------------------------------------------------------ files
    def _state(self) -> dict[str, np.ndarray]:
        return {"max_tokens": np.asarray([self.max_tokens], dtype=np.int64)} if self.is_fitted else {}

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Also writes the tokenizer that splits titles (``tokenizer/``), so new items can be spelled the same way."""
        super().save_pretrained(save_directory)
        self.tokenizer.save_pretrained(Path(save_directory) / TOKENIZER_DIR)

    def _after_load(self, path_or_repo_id, **hub_kwargs) -> None:
        from transformers import AutoTokenizer

        local = Path(path_or_repo_id) / hub_kwargs.get("subfolder", "")
        if local.is_dir():
            self.tokenizer = AutoTokenizer.from_pretrained(local / TOKENIZER_DIR)
        else:
            subfolder = "/".join(p for p in (hub_kwargs.pop("subfolder", None), TOKENIZER_DIR) if p)
            self.tokenizer = AutoTokenizer.from_pretrained(str(path_or_repo_id), subfolder=subfolder, **hub_kwargs)
