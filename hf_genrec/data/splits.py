"""Leave-one-out splitting into (history, next item) examples, as in SASRec and TIGER."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import datasets
import numpy as np
import pyarrow as pa

from .filtering import encode_sequences
from .interactions import InteractionData, arrow_column

logger = logging.getLogger(__name__)

SPLIT_SCHEMA = pa.schema([("user_id", pa.string()), ("history", pa.list_(pa.string())), ("target", pa.string())])


def _examples(
    targets: np.ndarray, starts: np.ndarray, owner: np.ndarray, codes: np.ndarray, item_ids: pa.Array,
    user_ids: pa.Array, max_history: int,
) -> datasets.Dataset:  # fmt: skip
    """Rows whose target is `codes[g]` for each flat position `g` in `targets`, with up to `max_history` items before it."""
    users = owner[targets]
    begin = np.maximum(starts[users], targets - max_history)
    lengths = targets - begin
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    # Flat positions of every history item: for row r, begin[r], begin[r] + 1, ..., targets[r] - 1.
    flat = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths) + np.repeat(begin, lengths)
    history = pa.ListArray.from_arrays(pa.array(offsets), item_ids.take(pa.array(codes[flat])))
    table = pa.Table.from_arrays(
        [user_ids.take(pa.array(users)), history, item_ids.take(pa.array(codes[targets]))], schema=SPLIT_SCHEMA
    )
    return datasets.Dataset(table)


def leave_one_out(
    data: InteractionData, max_history: int = 20, max_train_targets_per_user: int | None = None
) -> datasets.DatasetDict:
    """
    Split every user's sequence leave-one-out into next-item examples (the TIGER / SASRec protocol).

    For a user with items `i_0 .. i_{n-1}` (`n >= 3`):
    - `test`: history = last `max_history` of `i_0 .. i_{n-2}`, target = `i_{n-1}`;
    - `validation`: history = last `max_history` of `i_0 .. i_{n-3}`, target = `i_{n-2}`;
    - `train`: one row per `t` in `1 .. n-3`: history = last `max_history` of `i_0 .. i_{t-1}`, target = `i_t`.

    Rows are grouped by user in the order of `data.sequences`, train rows in time order.

    Args:
        data: Interaction data; every user needs at least 3 interactions.
        max_history: The most recent items kept as history (TIGER uses 20). Longer histories are truncated to their
            last `max_history` items (older items are dropped from that row's input; a log line counts the rows).
        max_train_targets_per_user: Keep only each user's most recent this-many train rows (default: all, as TIGER).
            Like SASRec's `maxlen`, it bounds what long users cost per epoch and favours recent behaviour.

    Returns:
        A `DatasetDict` with splits `train`, `validation`, `test` and columns `user_id` (str), `history`
        (list of str, oldest first) and `target` (str).

    Example:
        ```python
        >>> from hf_genrec.data import leave_one_out, load_interactions
        >>> splits = leave_one_out(load_interactions("amazon-beauty"))
        >>> splits["test"].num_rows
        22363
        ```
    """
    if isinstance(max_history, bool) or not isinstance(max_history, int | np.integer) or max_history < 1:
        raise ValueError(f"max_history must be a positive integer, got {max_history!r}.")
    if max_train_targets_per_user is not None and (
        isinstance(max_train_targets_per_user, bool)
        or not isinstance(max_train_targets_per_user, int | np.integer)
        or max_train_targets_per_user < 1
    ):
        raise ValueError(
            f"max_train_targets_per_user must be a positive integer or None, got {max_train_targets_per_user!r}."
        )
    if data.num_users == 0:
        raise ValueError(
            f"{data.name!r} has no users, so there is nothing to split. Check the data source and any k-core filter."
        )
    offsets, codes = encode_sequences(data)
    lengths = np.diff(offsets)
    short = np.flatnonzero(lengths < 3)
    if len(short):
        examples = arrow_column(data.sequences.select(short[:3].tolist()), "user_id").to_pylist()
        raise ValueError(
            f"{len(short)} of {len(lengths)} users in {data.name!r} have fewer than 3 interactions (e.g. {examples}), "
            "so they cannot give a train, a validation and a test item. Filter them out first, e.g. with "
            "`kcore_filter(data, min_count=3)` or `load_interactions(..., min_count=3)` (a k-core filter; TIGER's "
            "Amazon data is 5-core)."
        )
    owner = np.repeat(np.arange(len(lengths)), lengths)
    position = np.arange(len(codes)) - offsets[owner]  # t of each interaction within its user
    last = offsets[1:] - 1
    item_ids = arrow_column(data.items, "item_id")
    user_ids = arrow_column(data.sequences, "user_id")
    first_train = np.ones_like(position)
    if max_train_targets_per_user is not None:
        first_train = np.maximum(1, lengths[owner] - 2 - max_train_targets_per_user)
    train_targets = np.flatnonzero((position >= first_train) & (position <= lengths[owner] - 3))
    splits = {
        "train": _examples(train_targets, offsets[:-1], owner, codes, item_ids, user_ids, max_history),
        "validation": _examples(last - 1, offsets[:-1], owner, codes, item_ids, user_ids, max_history),
        "test": _examples(last, offsets[:-1], owner, codes, item_ids, user_ids, max_history),
    }
    # Longer histories keep their most recent `max_history` items (TIGER's cap); say how many were cut.
    cut = {name: int((targets - offsets[owner[targets]] > max_history).sum()) for name, targets in (
        ("train", train_targets), ("validation", last - 1), ("test", last))}  # fmt: skip
    if any(cut.values()):
        logger.info(
            "History cap: %s rows had more than %d earlier items; they keep the most recent %d (raise max_history "
            "to keep more).",
            ", ".join(f"{n:,} {name}" for name, n in cut.items()),
            max_history,
            max_history,
        )
    logger.info(
        "Leave-one-out split of %s (history <= %d): %s",
        data.name,
        max_history,
        ", ".join(f"{k} {len(v):,}" for k, v in splits.items()),
    )
    return datasets.DatasetDict(splits)


def training_part(sequences: Iterable[Sequence[str]]) -> list[list[str]]:
    """Each user's items without the validation and test items (the last two): what a model may train on."""
    return [list(seq[:-2]) for seq in sequences]
