"""The `InteractionData` container: users' time-ordered item sequences plus one metadata row per item."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ._io import clean_str

logger = logging.getLogger(__name__)

SEQUENCE_COLUMNS = ("user_id", "item_ids", "timestamps")
ITEM_COLUMNS = ("item_id", "title", "brand", "categories", "price", "attributes")

# Arrow types of the column contract. Extra columns get their own types from the reader (or are inferred).
SEQUENCE_SCHEMA = pa.schema(
    [("user_id", pa.string()), ("item_ids", pa.list_(pa.string())), ("timestamps", pa.list_(pa.int64()))]
)
ITEM_SCHEMA = pa.schema(
    [
        ("item_id", pa.string()),
        ("title", pa.string()),
        ("brand", pa.string()),
        ("categories", pa.list_(pa.string())),
        ("price", pa.float64()),
        ("attributes", pa.list_(pa.string())),
    ]
)


@dataclass
class InteractionData:
    """
    Users' time-ordered interaction sequences and the table of the items they contain.

    Args:
        name: Dataset name, e.g. `"amazon-beauty"`.
        sequences: One row per user with columns `user_id` (str), `item_ids` (list of str, oldest first) and
            `timestamps` (list of int unix seconds, same length as `item_ids`, or `None` when unknown for that user).
            Extra per-user columns (e.g. `age`) may follow.
        items: Exactly one row per item occurring in `sequences`, in order of first appearance, with columns
            `item_id`, `title`, `brand`, `categories` (list of str), `price`, `attributes` (list of str) and
            optional dataset-specific extras (e.g. `release_year`, `sales_rank`).

    Build one from plain Python objects with [`InteractionData.from_sequences`].
    """

    name: str
    sequences: datasets.Dataset
    items: datasets.Dataset

    def __post_init__(self) -> None:
        for table, required, label in (
            (self.sequences, SEQUENCE_COLUMNS, "sequences"),
            (self.items, ITEM_COLUMNS, "items"),
        ):
            missing = [c for c in required if c not in table.column_names]
            if missing:
                raise ValueError(
                    f"InteractionData.{label} lacks the columns {missing} (has {table.column_names}). "
                    "Build it with `InteractionData.from_sequences` to get every required column."
                )
        self._check_item_table()

    def _check_item_table(self) -> None:
        """One row per item, and a row for every item the sequences name: nothing is silently dropped later."""
        item_table = arrow_column(self.items, "item_id")
        counts = pc.value_counts(item_table)
        repeated = pc.filter(counts.field("values"), pc.greater(counts.field("counts"), 1))
        if len(repeated):
            raise ValueError(
                f"InteractionData {self.name!r}: the items table has {len(repeated)} item_ids on more than one row "
                f"(first: {repeated[:5].to_pylist()}). Keep one row per item (e.g. merge or drop the repeated rows) "
                "before building the data."
            )
        if len(self.sequences) == 0:
            return
        named = pc.unique(pc.list_flatten(arrow_column(self.sequences, "item_ids")))
        absent = pc.filter(named, pc.invert(pc.is_in(named, value_set=item_table)))
        if len(absent):
            raise ValueError(
                f"InteractionData {self.name!r}: the sequences name {len(absent)} items that have no row in the items "
                f"table (first: {absent[:5].to_pylist()}). Add rows for them (empty metadata is fine: "
                "`InteractionData.from_sequences` does that, with a warning), or remove them from the sequences."
            )

    @property
    def num_users(self) -> int:
        """Number of users (rows of `sequences`)."""
        return len(self.sequences)

    @property
    def num_items(self) -> int:
        """Number of distinct items (rows of `items`)."""
        return len(self.items)

    @property
    def num_interactions(self) -> int:
        """Total number of interactions (sum of sequence lengths)."""
        if len(self.sequences) == 0:
            return 0
        return int(pc.sum(pc.list_value_length(arrow_column(self.sequences, "item_ids"))).as_py() or 0)

    def describe(self) -> str:
        """One-line summary, e.g. `ml-100k: 943 users, 1,682 items, 100,000 interactions (...)`."""
        users, items, inter = self.num_users, self.num_items, self.num_interactions
        timed = users - arrow_column(self.sequences, "timestamps").null_count
        density = inter / (users * items) if users and items else 0.0
        mean = inter / users if users else 0.0
        titled = items - arrow_column(self.items, "title").null_count
        return (
            f"{self.name}: {users:,} users, {items:,} items, {inter:,} interactions "
            f"(mean length {mean:.2f}, density {density:.4%}, timestamps for {timed:,}/{users:,} users, "
            f"titles for {titled:,}/{items:,} items)"
        )

    @classmethod
    def from_sequences(
        cls,
        name: str,
        sequences: Mapping[str, Sequence[str]],
        timestamps: Mapping[str, Sequence[int] | None] | None = None,
        item_metadata: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> InteractionData:
        """
        Build an `InteractionData` from plain Python objects (enter the library with your own data).

        Args:
            name: Dataset name.
            sequences: `{user_id: [item_id, ...]}`, each list oldest first.
            timestamps: Optional `{user_id: [unix_seconds, ...] or None}`.
            item_metadata: Optional `{item_id: {"title": ..., "brand": ..., "categories": [...], "price": ...,
                "attributes": [...], <extra>: ...}}`. Items that occur in `sequences` but not here get empty rows
                (and a warning); items here that never occur are left out.

        Example:
            ```python
            >>> data = InteractionData.from_sequences("toy", {"u1": ["a", "b", "c"]}, item_metadata={"a": {"title": "A"}})
            >>> data.items[:]["item_id"]
            ['a', 'b', 'c']
            ```
        """
        user_ids = [str(u) for u in sequences]
        item_seqs = [[str(i) for i in sequences[u]] for u in sequences]
        times = None
        if timestamps is not None:
            times = [None if timestamps.get(u) is None else [int(t) for t in timestamps[u]] for u in sequences]
        meta = None if item_metadata is None else {str(k): dict(v) for k, v in item_metadata.items()}
        return build_interaction_data(name, user_ids, item_seqs, times, meta, metadata_source="item_metadata")


def _to_dataset(table: pa.Table) -> datasets.Dataset:
    return datasets.Dataset(table)


def build_sequences(
    user_ids: Sequence[str],
    item_seqs: Sequence[Sequence[str]],
    timestamps: Sequence[Sequence[int] | None] | None = None,
    extra_columns: Mapping[str, pa.Array | list] | None = None,
) -> datasets.Dataset:
    """Build the `sequences` dataset, checking that user ids are unique and timestamps line up with items."""
    if len(set(user_ids)) != len(user_ids):
        seen: set[str] = set()
        for user in user_ids:
            if user in seen:
                raise ValueError(f"user_id {user!r} occurs more than once; give each user a single sequence.")
            seen.add(user)
    if timestamps is None:
        timestamps = [None] * len(user_ids)
    if len(timestamps) != len(user_ids) or len(item_seqs) != len(user_ids):
        raise ValueError("user_ids, item sequences and timestamps must have the same length.")
    for user, items, times in zip(user_ids, item_seqs, timestamps):
        if times is not None and len(times) != len(items):
            raise ValueError(f"user {user!r} has {len(items)} items but {len(times)} timestamps; they must match.")
    arrays = [
        pa.array(user_ids, pa.string()),
        pa.array(item_seqs, pa.list_(pa.string())),
        pa.array(timestamps, pa.list_(pa.int64())),
    ]
    schema = SEQUENCE_SCHEMA
    for column, values in (extra_columns or {}).items():
        array = values if isinstance(values, pa.Array) else pa.array(values)
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        arrays.append(array)
        schema = schema.append(pa.field(column, array.type))
    return _to_dataset(pa.Table.from_arrays(arrays, schema=schema))


def first_appearance_order(item_seqs: Iterable[Sequence[str]]) -> list[str]:
    """Distinct items in order of first appearance (the row order of the items table)."""
    order: dict[str, None] = {}
    for seq in item_seqs:
        order.update(dict.fromkeys(seq))
    return list(order)


def _as_str_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _as_float(value: Any, item: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"The price of item {item!r} is {value!r}, which is not a number.") from None
    return None if np.isnan(number) else number


def build_items(
    item_order: Sequence[str],
    metadata: Mapping[str, Mapping[str, Any]] | None,
    extra_types: Mapping[str, pa.DataType] | None = None,
    metadata_source: str = "the metadata",
) -> datasets.Dataset:
    """
    Build the `items` dataset: exactly one row per id in `item_order`, in that order.

    Rows come from `metadata[item_id]`; ids without a row get `None`/`[]` content and one warning with the count
    (nothing is dropped or guessed). Keys outside the standard columns become extra columns, typed by
    `extra_types` when given, else inferred.
    """
    metadata = metadata or {}
    missing = [item for item in item_order if item not in metadata]
    if missing and metadata:
        logger.warning(
            "%d of %d items in the sequences have no row in %s; they get empty metadata (title/brand/price None, "
            "categories/attributes []). First few: %s",
            len(missing),
            len(item_order),
            metadata_source,
            missing[:5],
        )
    elif missing:
        logger.warning(
            "No item metadata was found (%s); all %d items get empty metadata rows.", metadata_source, len(missing)
        )
    extra_names: dict[str, None] = dict.fromkeys(extra_types or {})
    for row in metadata.values():
        extra_names.update(dict.fromkeys(k for k in row if k not in ITEM_COLUMNS))
    columns: dict[str, list] = {name: [] for name in (*ITEM_COLUMNS, *extra_names)}
    empty: Mapping[str, Any] = {}
    for item in item_order:
        row = metadata.get(item, empty)
        columns["item_id"].append(item)
        columns["title"].append(clean_str(row.get("title")))
        columns["brand"].append(clean_str(row.get("brand")))
        columns["categories"].append(_as_str_list(row.get("categories")))
        columns["price"].append(_as_float(row.get("price"), item))
        columns["attributes"].append(_as_str_list(row.get("attributes")))
        for name in extra_names:
            columns[name].append(row.get(name))
    arrays = [pa.array(columns[field.name], field.type) for field in ITEM_SCHEMA]
    schema = ITEM_SCHEMA
    for name in extra_names:
        wanted = (extra_types or {}).get(name)
        array = pa.array(columns[name], wanted) if wanted is not None else pa.array(columns[name])
        if pa.types.is_null(array.type):
            array = array.cast(pa.string())
        arrays.append(array)
        schema = schema.append(pa.field(name, array.type))
    return _to_dataset(pa.Table.from_arrays(arrays, schema=schema))


def build_interaction_data(
    name: str,
    user_ids: Sequence[str],
    item_seqs: Sequence[Sequence[str]],
    timestamps: Sequence[Sequence[int] | None] | None,
    metadata: Mapping[str, Mapping[str, Any]] | None,
    *,
    extra_item_types: Mapping[str, pa.DataType] | None = None,
    user_columns: Mapping[str, list] | None = None,
    metadata_source: str = "the metadata",
) -> InteractionData:
    """Assemble an [`InteractionData`] from per-user lists and an `{item_id: row}` metadata mapping."""
    empty_users = [u for u, seq in zip(user_ids, item_seqs) if len(seq) == 0]
    if empty_users:
        raise ValueError(f"{len(empty_users)} users have no items (e.g. {empty_users[:3]}); every user needs one.")
    sequences = build_sequences(user_ids, item_seqs, timestamps, user_columns)
    items = build_items(first_appearance_order(item_seqs), metadata, extra_item_types, metadata_source)
    data = InteractionData(name=name, sequences=sequences, items=items)
    logger.info("Loaded %s", data.describe())
    return data


def arrow_column(dataset: datasets.Dataset, name: str) -> pa.Array:
    """One column of `dataset` as a single Arrow array (respecting any `select`/`shuffle` indices)."""
    column = dataset.with_format("arrow")[name] if len(dataset) else pa.array([], dataset.data.schema.field(name).type)
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
