"""Reader for RecBole atomic files (`.inter`, `.item`, `.user`)."""

from __future__ import annotations

import ast
import csv
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._io import FIX_HINT, DataFormatError, PathLike, clean_str, open_text, parse_optional_float, parse_timestamp
from .interactions import ITEM_COLUMNS, SEQUENCE_COLUMNS, InteractionData, build_interaction_data

logger = logging.getLogger(__name__)

RECBOLE_TYPES = {
    "token": pa.string(),
    "float": pa.float64(),
    "token_seq": pa.list_(pa.string()),
    "float_seq": pa.list_(pa.float64()),
}
# RecBole datasets name the same content differently; the first field present fills the standard column.
TITLE_FIELDS = ("title", "movie_title", "name")
CATEGORY_FIELDS = ("categories", "class", "genre", "genres", "category")
USER_FIELD, ITEM_FIELD, TIME_FIELD = "user_id", "item_id", "timestamp"

Row = tuple[int, list[str]]


def read_atomic_table(path: PathLike) -> tuple[list[str], list[str], Iterator[Row]]:
    """
    Open one atomic file: `(field_names, field_types, rows)`, where `rows` yields `(line_number, values)` as the
    file is read (streamed: a large `.inter` file is never held in memory as text or raw rows).

    The files are tab-separated with a `name:type` header. They are read with the csv module (as RecBole itself
    does through pandas) because some writers quote fields that hold tabs, newlines or `"`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RecBole atomic file {path} does not exist.")
    rows = _atomic_rows(path)
    names, types = next(rows)
    return names, types, rows


def _atomic_rows(path: Path) -> Iterator:
    """Yield `(names, types)` from the header, then `(line_number, values)` for every record."""
    start = 1
    try:
        with open_text(path, newline="") as f:
            reader = csv.reader(f, delimiter="\t")
            header = next(reader, None)
            if not header:
                raise DataFormatError(
                    path, 1, "the file is empty or has no header", "Expected e.g. `user_id:token<TAB>item_id:token`."
                )
            names, types = _parse_header(path, header)
            yield names, types
            start = reader.line_num + 1
            for values in reader:
                if values:  # blank lines carry no record
                    if len(values) != len(names):
                        raise DataFormatError(
                            path,
                            start,
                            f"expected {len(names)} tab-separated fields ({', '.join(header)}), found {len(values)}",
                            FIX_HINT + ' Fields that contain tabs, newlines or quotes must be quoted with `"`.',
                        )
                    yield start, values
                start = reader.line_num + 1
    except UnicodeDecodeError as e:
        raise DataFormatError(
            path, start, f"the text is not valid UTF-8 ({e.reason})", "RecBole files are UTF-8."
        ) from e
    except csv.Error as e:
        raise DataFormatError(path, start, f"cannot parse the line as tab-separated values ({e})", FIX_HINT) from e


def _parse_header(path: Path, header: list[str]) -> tuple[list[str], list[str]]:
    names, types = [], []
    for column in header:
        name, sep, kind = column.strip().rpartition(":")
        if not sep or kind not in RECBOLE_TYPES:
            raise DataFormatError(
                path,
                1,
                f"header field {column!r} is not `name:type` with type one of {sorted(RECBOLE_TYPES)}",
                "RecBole atomic files start with a header such as `user_id:token<TAB>item_id:token<TAB>timestamp:float`.",
            )
        names.append(name)
        types.append(kind)
    return names, types


def split_token_seq(value: str) -> list[str]:
    """
    Split a RecBole `token_seq` value.

    RecBole separates tokens with spaces. Some published Amazon `.item` files instead hold the inside of a Python
    list (`'Beauty', 'Makeup', "Women's"`), whose entries contain spaces; that form is parsed as a literal.
    """
    text = value.strip()
    if not text:
        return []
    if text[0] in "'\"":
        try:
            parsed = ast.literal_eval(f"[{text}]")
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            parsed = None
        if isinstance(parsed, list) and all(isinstance(v, str) for v in parsed):
            return [v.strip() for v in parsed if v.strip()]
    return text.split()


def convert_value(value: str, kind: str, path: Path, line: int, field: str) -> Any:
    """Convert one atomic-file value according to its declared RecBole type."""
    if kind == "token":
        return clean_str(value)
    if kind == "float":
        return parse_optional_float(value, path, line, field)
    if kind == "token_seq":
        return split_token_seq(value)
    return [parse_optional_float(v, path, line, field) for v in value.split()]


def _require(path: Path, names: list[str], field: str) -> int:
    if field not in names:
        raise DataFormatError(
            path, 1, f"the header has no `{field}` field (fields: {names})", f"Rename the column to `{field}:token`."
        )
    return names.index(field)


def read_recbole_inter(path: PathLike) -> tuple[list[str], list[list[str]], list[list[int]] | None]:
    """
    Read a `.inter` file into per-user sequences: `(user_ids, item_seqs, timestamps)`.

    Users are in order of first appearance. Each user's items are sorted by `timestamp` when the file has one,
    keeping file order for equal times (a stable sort); without timestamps the file order is kept.
    """
    path = Path(path)
    names, _, rows = read_atomic_table(path)
    iu, ii = _require(path, names, USER_FIELD), _require(path, names, ITEM_FIELD)
    it = names.index(TIME_FIELD) if TIME_FIELD in names else None
    per_user: dict[str, list[tuple[int, str]]] = {}
    for line, values in rows:
        user, item = values[iu].strip(), values[ii].strip()
        if not user or not item:
            raise DataFormatError(path, line, "empty user_id or item_id", FIX_HINT)
        when = parse_timestamp(values[it].strip(), path, line) if it is not None else 0
        per_user.setdefault(user, []).append((when, item))
    user_ids = list(per_user)
    item_seqs, timestamps = [], []
    for user in user_ids:
        events = per_user[user]
        if it is not None:
            events.sort(key=lambda e: e[0])
        item_seqs.append([item for _, item in events])
        timestamps.append([when for when, _ in events])
    return user_ids, item_seqs, (timestamps if it is not None else None)


def read_recbole_items(path: PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, pa.DataType]]:
    """
    Read a `.item` file into `({item_id: row}, extra_column_types)` with rows in the standard item columns.

    `movie_title`/`title`/`name` fill `title`; `class`/`categories`/`genre` fill `categories`; `brand`, `price` and
    `attributes` map directly; every other field is kept as an extra column with its declared type.
    """
    path = Path(path)
    names, types, rows = read_atomic_table(path)
    ii = _require(path, names, ITEM_FIELD)
    title = next((n for n in TITLE_FIELDS if n in names), None)
    category = next((n for n in CATEGORY_FIELDS if n in names), None)
    # atomic field -> output column; fields that are not standard keep their own name
    targets = {n: ("title" if n == title else "categories" if n == category else n) for n in names if n != ITEM_FIELD}
    extra_types = {
        n: RECBOLE_TYPES[k] for n, k in zip(names, types) if n in targets and targets[n] not in ITEM_COLUMNS
    }
    items: dict[str, dict[str, Any]] = {}
    first_rows: dict[str, tuple[int, list[str]]] = {}
    duplicates = 0
    for line, values in rows:
        item = values[ii].strip()
        if not item:
            raise DataFormatError(path, line, "empty item_id", FIX_HINT)
        if item in items:
            first_line, first_values = first_rows[item]
            if values != first_values:  # two different descriptions of one item: which is right is not ours to guess
                raise DataFormatError(
                    path,
                    line,
                    f"item_id {item!r} already has a row on line {first_line}, with different fields",
                    "Keep one row per item_id (merge or delete the other row).",
                )
            duplicates += 1
            continue
        first_rows[item] = (line, values)
        row: dict[str, Any] = {}
        for index, (name, kind) in enumerate(zip(names, types)):
            if index == ii:
                continue
            column, raw = targets[name], values[index]
            if column in ("title", "brand"):
                row[column] = clean_str(raw)  # keep the text's own spacing, even when typed token_seq
            elif column == "price":
                row[column] = parse_optional_float(raw, path, line, name)
            elif column in ("categories", "attributes") and kind in ("token", "float"):
                row[column] = [raw.strip()] if raw.strip() else []
            else:
                row[column] = convert_value(raw, kind, path, line, name)
        items[item] = row
    if duplicates:
        logger.warning(
            "%s: %d item rows repeat an earlier row of the same item word for word; each item keeps one. Remove "
            "the repeated rows to silence this warning.",
            path,
            duplicates,
        )
    return items, extra_types


def read_recbole_users(path: PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, pa.DataType]]:
    """Read a `.user` file into `({user_id: {field: value}}, field_types)`."""
    path = Path(path)
    names, types, rows = read_atomic_table(path)
    iu = _require(path, names, USER_FIELD)
    users: dict[str, dict[str, Any]] = {}
    for line, values in rows:
        users.setdefault(
            values[iu].strip(),
            {n: convert_value(values[i], k, path, line, n) for i, (n, k) in enumerate(zip(names, types)) if i != iu},
        )
    field_types = {n: RECBOLE_TYPES[k] for i, (n, k) in enumerate(zip(names, types)) if i != iu}
    return users, field_types


def user_columns(
    user_ids: list[str], users: dict[str, dict[str, Any]], field_types: dict[str, Any], source: PathLike
) -> dict[str, pa.Array]:
    """Align per-user fields with `user_ids` as typed Arrow columns (missing users get `None`)."""
    absent = sum(1 for u in user_ids if u not in users)
    if absent:
        logger.warning("%d of %d users have no row in %s; their user fields are None.", absent, len(user_ids), source)
    columns = {}
    for field, kind in field_types.items():
        if field in SEQUENCE_COLUMNS:
            continue
        columns[field] = pa.array([users.get(u, {}).get(field) for u in user_ids], kind)
    return columns


def read_recbole_atomic(
    inter_path: PathLike,
    item_path: PathLike | None = None,
    user_path: PathLike | None = None,
    *,
    name: str | None = None,
) -> InteractionData:
    """
    Read RecBole atomic files into an [`InteractionData`].

    Args:
        inter_path: The `.inter` file (`user_id:token`, `item_id:token`, optional `timestamp:float`, other fields
            such as `rating` are ignored). Each user's items are sorted by timestamp (stable for ties).
        item_path: Optional `.item` file; its fields are mapped onto the standard item columns (see
            [`read_recbole_items`]). Items without a row get empty metadata and a warning.
        user_path: Optional `.user` file; its fields become extra columns of `sequences` (e.g. `age`, `gender`).
        name: Dataset name; defaults to the `.inter` file name without extension (`ml-100k.inter` -> `ml-100k`).

    Example:
        ```python
        >>> data = read_recbole_atomic("ml-100k/ml-100k.inter", "ml-100k/ml-100k.item")
        >>> data.num_users, data.num_items
        (943, 1682)
        ```
    """
    inter_path = Path(inter_path)
    user_ids, item_seqs, timestamps = read_recbole_inter(inter_path)
    metadata, extra_types = read_recbole_items(item_path) if item_path is not None else (None, None)
    columns = None
    if user_path is not None:
        users, field_types = read_recbole_users(user_path)
        columns = user_columns(user_ids, users, field_types, user_path)
    return build_interaction_data(
        name or inter_path.name.split(".")[0],
        user_ids,
        item_seqs,
        timestamps,
        metadata,
        extra_item_types=extra_types,
        user_columns=columns,
        metadata_source=str(item_path) if item_path is not None else "no .item file was given",
    )
