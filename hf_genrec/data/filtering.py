"""k-core filtering of interaction data."""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .interactions import SEQUENCE_COLUMNS, InteractionData, arrow_column, build_sequences

logger = logging.getLogger(__name__)


def encode_sequences(data: InteractionData) -> tuple[np.ndarray, np.ndarray]:
    """
    Return `(offsets, codes)`: user `u`'s items are `codes[offsets[u]:offsets[u + 1]]`, each code being the item's
    row in `data.items`. Raises if a sequence holds an item missing from the items table.
    """
    column = arrow_column(data.sequences, "item_ids")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    item_table = arrow_column(data.items, "item_id")
    codes = pc.index_in(pc.list_flatten(column), value_set=item_table)
    if codes.null_count:
        raise ValueError(
            f"{data.name}: {codes.null_count} interactions refer to items with no row in `items`; build the data with "
            "`InteractionData.from_sequences` or a reader so that every item has a row."
        )
    return offsets, codes.to_numpy(zero_copy_only=False).astype(np.int64)


def kcore_filter(data: InteractionData, min_count: int) -> InteractionData:
    """
    Keep the k-core: repeatedly drop users and items with fewer than `min_count` interactions until none is left.

    Surviving sequences keep their order (and timestamps); the items table keeps exactly the surviving items, in
    order of first appearance in the filtered sequences. Extra user columns are kept.

    Args:
        data: The interaction data to filter.
        min_count: The minimum number of interactions of every kept user and item (`k`). `1` keeps everything.

    Example:
        ```python
        >>> from hf_genrec.data import kcore_filter, load_interactions
        >>> kcore_filter(load_interactions("ml-1m"), 5).num_items
        3416
        ```
    """
    if isinstance(min_count, bool) or not isinstance(min_count, int | np.integer) or min_count < 1:
        raise ValueError(f"min_count must be a positive integer, got {min_count!r}.")
    offsets, codes = encode_sequences(data)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    keep = np.ones(len(codes), dtype=bool)
    rounds = 0
    while True:
        rounds += 1
        item_counts = np.bincount(codes[keep], minlength=data.num_items)
        user_counts = np.bincount(owner[keep], minlength=len(lengths))
        new_keep = keep & (item_counts[codes] >= min_count) & (user_counts[owner] >= min_count)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep

    kept_lengths = np.bincount(owner[keep], minlength=len(lengths))
    kept_users = np.flatnonzero(kept_lengths > 0)
    rows = data.sequences.with_format("arrow")[:]
    item_seqs, timestamps = [], []
    all_items = rows.column("item_ids").to_pylist()
    all_times = rows.column("timestamps").to_pylist()
    for user in kept_users:
        mask = keep[offsets[user] : offsets[user + 1]]
        item_seqs.append([item for item, k in zip(all_items[user], mask) if k])
        times = all_times[user]
        timestamps.append(None if times is None else [t for t, k in zip(times, mask) if k])
    user_ids = rows.column("user_id").take(pa.array(kept_users, pa.int64())).to_pylist()
    extras = {
        name: rows.column(name).take(pa.array(kept_users, pa.int64())).combine_chunks()
        for name in rows.column_names
        if name not in SEQUENCE_COLUMNS
    }
    sequences = build_sequences(user_ids, item_seqs, timestamps, extras)

    # Row order of the new items table = first appearance in the filtered sequences.
    kept_codes = codes[keep]
    _, first = np.unique(kept_codes, return_index=True)
    item_rows = kept_codes[np.sort(first)]
    items = datasets.Dataset(data.items.with_format("arrow")[:].take(pa.array(item_rows, pa.int64())))
    result = InteractionData(name=data.name, sequences=sequences, items=items)
    logger.info(
        "%d-core filter (%d rounds): %d -> %d users, %d -> %d items, %d -> %d interactions",
        min_count,
        rounds,
        data.num_users,
        result.num_users,
        data.num_items,
        result.num_items,
        len(codes),
        int(keep.sum()),
    )
    if result.num_users == 0:
        raise ValueError(
            f"The {min_count}-core of {data.name!r} is empty: no set of users and items remains in which every user "
            f"and every item has {min_count} interactions (before filtering: {data.num_users:,} users, "
            f"{data.num_items:,} items, longest user {int(lengths.max()) if len(lengths) else 0} items, most popular "
            f"item {int(np.bincount(codes).max()) if len(codes) else 0} interactions). Use a smaller min_count "
            "(TIGER's Amazon data is 5-core) or more data."
        )
    return result
