"""Turns leave-one-out rows (``history`` → ``target`` item ids), or whole user sequences, into model inputs."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import datasets
import numpy as np

from ..tokenization import ItemTokenizer
from .collator import SCORER_HISTORY


def tokenize_examples(
    split: datasets.Dataset, item_tokenizer: ItemTokenizer, max_history: int | None = 20
) -> datasets.Dataset:
    """Adds ``input_ids`` (history spelling + EOS), ``labels`` (target spelling + EOS) and ``length``.

    Unknown item ids raise (naming the id) rather than being skipped, so a history is never silently shortened.
    ``length`` feeds the length-grouped sampler (``train_sampling_strategy="group_by_length"``).
    """
    for column in ("history", "target"):
        if column not in split.column_names:
            raise ValueError(
                f"The split has no `{column}` column (columns: {split.column_names}). Build splits with "
                "`hf_genrec.data.leave_one_out`, or name your columns `history` (list of item ids) and `target`."
            )

    def encode(batch):
        input_ids = [item_tokenizer.encode_history(h, max_items=max_history) for h in batch["history"]]
        return {
            "input_ids": input_ids,
            "labels": [item_tokenizer.encode_target(t) for t in batch["target"]],
            "length": [len(x) for x in input_ids],
        }

    return split.map(encode, batched=True, batch_size=2048, desc="Tokenizing examples")


def tokenize_sequences(
    sequences: Iterable[Sequence[str]],
    item_tokenizer: ItemTokenizer,
    max_history: int = 20,
    max_targets_per_user: int | None = None,
    window_stride: int | None = None,
    arrow_path: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Packed training rows for a causal-encoder model: one row per user window, every next item a target.

    For a user's training items ``s_0 .. s_{n-1}``, target ``s_j`` (``j >= 1``) is predicted from the items before
    it. A row holds a window ``s_a .. s_{hi-1}`` as ``input_ids`` and the targets ``s_lo .. s_hi`` as ``labels``
    (one spelling each, EOS included), with ``target_ends[k]``: how many history tokens target ``k`` may read.
    Users with more than ``max_history + 1`` items get overlapping windows, so every target reads at least
    ``max_history - window_stride + 1`` items of history (all of them when it has fewer), never more than
    ``max_history``.

    Args:
        sequences: each user's training items, oldest first (e.g. `hf_genrec.evaluation.baselines.training_part`).
        item_tokenizer: its ``history_eos`` must be `False` for fixed-length IDs, as the model sees prefixes.
        max_history: the most items a target reads (TIGER: 20).
        max_targets_per_user: train on each user's most recent this-many targets only (default: all).
        window_stride: targets per window of a long user (default ``max_history // 2``).
        arrow_path (`str` or `os.PathLike`, *optional*): write the rows to this Arrow file in chunks and return the
            dataset memory-mapped from it, so resident memory stays bounded however many rows there are (pass
            ``sequences`` as a generator too). Without it the rows are built in memory, which is faster for small
            data (see docs/scale.md).

    Returns:
        A `datasets.Dataset` with ``input_ids``, ``target_ends``, ``labels`` (a list of spellings) and ``length``.
    """
    stride = _check_packing(item_tokenizer, max_history, window_stride)
    spellings = item_tokenizer.spellings()

    def rows() -> Iterator[dict]:
        for sequence in sequences:
            indices = item_tokenizer.index_of(sequence, context="training sequences").tolist()
            for start, lo, hi in _windows(len(indices), max_history, stride, max_targets_per_user):
                window = sequence[start:hi]
                ends = np.cumsum(item_tokenizer.history_token_lengths(window))
                input_ids = item_tokenizer.encode_history(window)
                yield {
                    "input_ids": input_ids,
                    "target_ends": ends[lo - start - 1 : hi - start].tolist(),
                    "labels": [spellings[indices[j]] for j in range(lo, hi + 1)],
                    "length": len(input_ids),
                }

    return _collect(rows(), _PACKED_FEATURES, arrow_path)


def tokenize_causal_sequences(
    sequences: Iterable[Sequence[str]],
    item_tokenizer: ItemTokenizer,
    max_history: int = 20,
    max_targets_per_user: int | None = None,
    window_stride: int | None = None,
    arrow_path: str | os.PathLike | None = None,
) -> datasets.Dataset:
    """Packed training rows for a decoder-only model (`hf_genrec.models.causal_lm`): one row per user window.

    The windows are `tokenize_sequences`'s: a row spells the items ``s_a .. s_hi`` back to back and its targets are
    ``s_lo .. s_hi``, each predicted (the model shifts the labels itself) from the items of the row before it, so
    every target reads at most ``max_history`` items and at least ``max_history - window_stride + 1`` (all it has,
    early on). One causal pass trains every target of the window. Rows start with the first history token (no BOS),
    as evaluation rows (`hf_genrec.models.causal_lm.causal_rows`) and ranking prompts do.

    Fixed-length IDs are spelled without EOS (the item tokenizer's ``history_eos`` must be `False`), so their
    targets' labels are the codes only: the EOS that closes a spelling is forced by the trie and not trained.
    Variable-length spellings keep their EOS, which is then a label like any other token.

    Args:
        sequences: each user's training items, oldest first (e.g. `hf_genrec.evaluation.baselines.training_part`).
        item_tokenizer: its ``history_eos`` must be `False` for fixed-length IDs.
        max_history: the most items a target reads (TIGER: 20).
        max_targets_per_user: train on each user's most recent this-many targets only (default: all).
        window_stride: targets per window of a long user (default ``max_history // 2``).
        arrow_path (`str` or `os.PathLike`, *optional*): write the rows to this Arrow file in chunks and return the
            dataset memory-mapped from it (as `tokenize_sequences` does).

    Returns:
        A `datasets.Dataset` with ``input_ids``, ``labels`` (as long as ``input_ids``: the target items' tokens, -100
        on the other items) and ``length``. `GenRecCollator` pads them.
    """
    stride = _check_packing(item_tokenizer, max_history, window_stride)

    def rows() -> Iterator[dict]:
        for sequence in sequences:
            n = len(item_tokenizer.index_of(sequence, context="training sequences"))
            for start, lo, hi in _windows(n, max_history, stride, max_targets_per_user):
                tokens = item_tokenizer.encode_history(sequence[start : hi + 1])
                context = int(item_tokenizer.history_token_lengths(sequence[start:lo]).sum())
                yield {"input_ids": tokens, "labels": [-100] * context + tokens[context:], "length": len(tokens)}

    return _collect(rows(), _CAUSAL_FEATURES, arrow_path)


_TOKENS = datasets.List(datasets.Value("int64"))
#: the columns of `tokenize_sequences`'s and `tokenize_causal_sequences`'s rows, as `Dataset.from_dict` infers them
_PACKED_FEATURES = datasets.Features(
    {"input_ids": _TOKENS, "target_ends": _TOKENS, "labels": datasets.List(_TOKENS), "length": datasets.Value("int64")}
)
_CAUSAL_FEATURES = datasets.Features({"input_ids": _TOKENS, "labels": _TOKENS, "length": datasets.Value("int64")})


def _collect(
    rows: Iterator[dict], features: datasets.Features, arrow_path: str | os.PathLike | None, chunk_rows: int = 4096
) -> datasets.Dataset:
    """``rows`` as a dataset: built in memory, or written ``chunk_rows`` at a time to ``arrow_path`` and memory-mapped
    from it (only one chunk is ever held)."""
    if arrow_path is None:
        columns: dict[str, list] = {name: [] for name in features}
        for row in rows:
            for name in features:
                columns[name].append(row[name])
        count = len(columns["input_ids"])
    else:
        from datasets.arrow_writer import ArrowWriter

        path = Path(arrow_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with ArrowWriter(features=features, path=str(path), writer_batch_size=chunk_rows) as writer:
            for row in rows:
                writer.write(row)
            count, _ = writer.finalize()
    if not count:
        raise ValueError("No training targets: every sequence has fewer than 2 items.")
    if arrow_path is None:
        return datasets.Dataset.from_dict(columns, features=features)
    return datasets.Dataset.from_file(str(path))


def _check_packing(item_tokenizer: ItemTokenizer, max_history: int, window_stride: int | None) -> int:
    """The window stride of packed rows, once the settings are checked."""
    if item_tokenizer.history_eos and not item_tokenizer.is_variable_length:
        raise ValueError(
            "Packed training shows the model every prefix of a history, and a prefix has no EOS after it, so "
            "histories must be spelled without one: build the ItemTokenizer with history_eos=False."
        )
    if max_history < 1:
        raise ValueError(f"max_history must be >= 1, got {max_history}.")
    stride = window_stride or max(1, max_history // 2)
    if not 1 <= stride <= max_history:
        raise ValueError(f"window_stride must be in [1, max_history={max_history}], got {stride}.")
    return stride


def _windows(n: int, max_history: int, stride: int, max_targets_per_user: int | None):
    """``(start, lo, hi)`` of a user's windows of ``n`` items, newest first: items ``start .. hi - 1`` are read,
    targets ``lo .. hi`` are trained (target ``j`` reads ``start .. j - 1``)."""
    first = 1 if max_targets_per_user is None else max(1, n - max_targets_per_user)
    hi = n - 1
    while hi >= first:
        start = max(0, hi - max_history)
        lo = max(first, 1 if start == 0 else max(start + 1, hi - stride + 1))
        yield start, lo, hi
        hi = lo - 1


def add_scorer_history(
    examples: datasets.Dataset,
    sequences: dict[str, Sequence[str]],
    item_tokenizer: ItemTokenizer,
    window: int,
    held_out: int,
) -> datasets.Dataset:
    """Adds ``scorer_history``: each row's history read back up to ``window`` items (item rows, oldest first), for
    a dense scorer (`hf_genrec.decoding.fusion`) that reads further back than the generative model's ``max_history``.

    Args:
        examples: leave-one-out rows with ``user_id``, ``history`` and ``target`` (`hf_genrec.data.leave_one_out`).
        sequences: each user's whole sequence (user id → item ids, oldest first).
        window: the most items the scorer reads.
        held_out: how many of the user's last items follow the history (validation: 2, test: 1).
    """
    for column in ("user_id", "history"):
        if column not in examples.column_names:
            raise ValueError(f"add_scorer_history needs a `{column}` column (columns: {examples.column_names}).")
    if window < 1 or held_out < 1:
        raise ValueError(f"window and held_out must be >= 1, got {window} and {held_out}.")

    def longer(batch):
        out = []
        for user, history in zip(batch["user_id"], batch["history"]):
            if user not in sequences:
                raise ValueError(f"User {user!r} of the examples has no sequence: pass the data the splits came from.")
            before = list(sequences[user])[: len(sequences[user]) - held_out]
            if history and before[-len(history) :] != list(history):
                raise ValueError(
                    f"User {user!r}'s history is not the end of their sequence with {held_out} item(s) held out: "
                    "pass held_out=2 for validation rows and 1 for test rows of leave_one_out."
                )
            out.append(item_tokenizer.index_of(before[-window:]).tolist())
        return {SCORER_HISTORY: out}

    return examples.map(longer, batched=True, batch_size=2048, desc="Scorer histories")
