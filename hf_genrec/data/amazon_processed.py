"""Readers for the processed Amazon 2014 layouts of research repositories (see the amazon-beauty SOURCE.md).

`derived/` (interactions with timestamps, item metadata, id maps), `gram/` (GRAM/IDGenRec sequences), `s3rec/`
(S3-Rec sequences and attribute ids), `recbole*/` (RecBole atomic files) and `llm-seqrec/` (titles).
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._io import (
    FIX_HINT,
    DataFormatError,
    PathLike,
    find_file,
    iter_lines,
    missing_files_error,
    open_text,
    parse_timestamp,
    read_user_sequences,
)
from .interactions import InteractionData, build_interaction_data
from .recbole import read_recbole_inter, read_recbole_items

logger = logging.getLogger(__name__)


def _header_index(path: Path, header: list[str], columns: dict[str, tuple[str, ...]], optional=()) -> dict:
    """Map each role to its column in `header`; `columns` lists the names accepted for a role."""
    index: dict[str, int | None] = {}
    for role, names in columns.items():
        index[role] = next((header.index(n) for n in names if n in header), None)
        if index[role] is None and role not in optional:
            raise DataFormatError(
                path,
                1,
                f"the header {header} has no {' / '.join(names)} column",
                "The first line must name the columns.",
            )
    return index


def read_derived_interactions(path: PathLike) -> tuple[list[str], list[list[str]], list[list[int]]]:
    """
    Read `derived/interactions.tsv.gz` (header `user_id item_asin timestamp position`, one interaction per line).

    Users are in order of first appearance; each user's items are ordered by `position` (file order without it).
    """
    path = Path(path)
    lines = iter_lines(path)
    header = next(lines, (1, ""))[1].split("\t")
    columns = {"user": ("user_id",), "item": ("item_asin", "item_id"), "time": ("timestamp",), "pos": ("position",)}
    index = _header_index(path, header, columns, optional=("pos",))
    iu, ii, it, ip = index["user"], index["item"], index["time"], index["pos"]
    width = len(header)
    per_user: dict[str, list[tuple[int, int, str]]] = {}
    for line, text in lines:  # a tight loop: this file has one line per interaction
        values = text.split("\t")
        if len(values) != width:
            if not text.strip():
                continue
            raise DataFormatError(path, line, f"expected {width} tab-separated fields, found {len(values)}", FIX_HINT)
        user, item = values[iu], values[ii]
        if not user or not item:
            raise DataFormatError(path, line, "empty user_id or item", FIX_HINT)
        try:
            when = int(values[it])
        except ValueError:
            when = parse_timestamp(values[it].strip(), path, line)
        events = per_user.get(user)
        if events is None:
            events = per_user[user] = []
        try:
            position = len(events) if ip is None else int(values[ip])
        except ValueError:
            raise DataFormatError(path, line, f"position {values[ip]!r} is not an integer", FIX_HINT) from None
        events.append((position, when, item))
    user_ids = list(per_user)
    item_seqs, timestamps = [], []
    for user in user_ids:
        events = sorted(per_user[user], key=lambda e: e[0])
        item_seqs.append([item for _, _, item in events])
        timestamps.append([when for _, when, _ in events])
    return user_ids, item_seqs, timestamps


def read_id_map(path: PathLike) -> dict[str, str]:
    """Read a two-column `<source id>\\t<asin>` map with a header (e.g. `derived/s3rec_item_id_to_asin.tsv`)."""
    path = Path(path)
    mapping = {}
    for line, text in iter_lines(path):
        if line == 1 or not text.strip():
            continue
        values = text.split("\t")
        if len(values) != 2:
            raise DataFormatError(
                path, line, f"expected 2 tab-separated fields (id, asin), found {len(values)}", FIX_HINT
            )
        mapping[values[0].strip()] = values[1].strip()
    return mapping


def read_item_meta_jsonl(path: PathLike) -> tuple[dict[str, dict[str, Any]], dict[str, pa.DataType]]:
    """Read `derived/item_meta.jsonl.gz`: one JSON object per item (`item_asin`, `title`, `brand`, ...)."""
    path = Path(path)
    items: dict[str, dict[str, Any]] = {}
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataFormatError(path, line, f"not valid JSON ({e.msg}, column {e.colno})", FIX_HINT) from None
        asin = record.get("item_asin", record.get("item_id")) if isinstance(record, dict) else None
        if not isinstance(asin, str):
            raise DataFormatError(path, line, "the record is not a JSON object with an `item_asin` string", FIX_HINT)
        for field in ("price", "sales_rank"):
            if record.get(field) is not None and not isinstance(record[field], int | float):
                raise DataFormatError(path, line, f"{field} {record[field]!r} is not a number", FIX_HINT)
        if not isinstance(record.get("categories") or [], list):
            raise DataFormatError(path, line, "categories must be a list of strings", FIX_HINT)
        items.setdefault(asin, {k: v for k, v in record.items() if k not in ("item_asin", "item_id")})
    return items, {"sales_type": pa.string(), "sales_rank": pa.float64()}


def read_llm_seqrec_titles(folder: PathLike) -> dict[str, dict[str, Any]]:
    """Read titles from `item_id_to_int.json` (asin -> int) + `products_lookup.csv` (`,global_product_id,name`)."""
    folder = Path(folder)
    id_path, lookup_path = folder / "item_id_to_int.json", folder / "products_lookup.csv"
    try:
        with open_text(id_path) as f:
            asin_to_int = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(id_path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})", FIX_HINT) from None
    if not isinstance(asin_to_int, dict):
        raise DataFormatError(id_path, None, "expected a JSON object mapping asin -> integer id", FIX_HINT)
    int_to_asin = {str(v): k for k, v in asin_to_int.items()}
    items: dict[str, dict[str, Any]] = {}
    with open_text(lookup_path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, [])
        if "global_product_id" not in header or "name" not in header:
            raise DataFormatError(
                lookup_path,
                1,
                f"the header {header} lacks global_product_id / name",
                "Expected `,global_product_id,name`.",
            )
        ig, iname = header.index("global_product_id"), header.index("name")
        for values in reader:
            if not values:
                continue
            if len(values) != len(header):
                raise DataFormatError(
                    lookup_path,
                    reader.line_num,
                    f"expected {len(header)} comma-separated fields, found {len(values)}",
                    FIX_HINT,
                )
            asin = int_to_asin.get(values[ig].strip())
            if asin is not None:
                items.setdefault(asin, {"title": values[iname]})
    return items


def read_s3rec_attributes(path: PathLike) -> dict[str, list[str]]:
    """Read S3-Rec `<Name>_item2attributes.json` (`{"item_id": [attribute_id, ...]}`)."""
    path = Path(path)
    try:
        with open_text(path) as f:
            raw = json.load(f)
    except json.JSONDecodeError as e:
        raise DataFormatError(path, e.lineno, f"not valid JSON ({e.msg}, column {e.colno})", FIX_HINT) from None
    if not isinstance(raw, dict) or not all(isinstance(v, list) for v in raw.values()):
        raise DataFormatError(path, None, "expected a JSON object mapping item id -> list of attribute ids", FIX_HINT)
    return {str(k): [str(a) for a in v] for k, v in raw.items()}


def join_by_position(
    other_path: PathLike, other_seqs: list[list[str]], user_ids: list[str], item_seqs: list[list[str]]
) -> dict[str, str]:
    """
    Map another file's item ids to ours by lining up the two files' sequences position by position.

    Both must list the same users in the same order with the same lengths (true of the S3-Rec and GRAM files);
    any mismatch or any id that would map to two items is an error, so nothing is guessed.
    """
    hint = "The files do not describe the same sequences; provide derived/s3rec_item_id_to_asin.tsv instead."
    if len(other_seqs) != len(item_seqs):
        raise DataFormatError(
            other_path, None, f"has {len(other_seqs)} users but the sequences have {len(item_seqs)}", hint
        )
    mapping: dict[str, str] = {}
    for row, (other, ours, user) in enumerate(zip(other_seqs, item_seqs, user_ids), 1):
        if len(other) != len(ours):
            raise DataFormatError(
                other_path, row, f"sequence of length {len(other)}, but user {user}'s sequence has {len(ours)}", hint
            )
        for a, b in zip(other, ours):
            if mapping.setdefault(a, b) != b:
                raise DataFormatError(other_path, row, f"item {a} lines up with both {mapping[a]} and {b}", hint)
    return mapping


def _first_match(folder: Path, patterns: list[str]) -> Path | None:
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def read_processed_amazon(folder: Path, stem: str | None, name: str) -> InteractionData:
    """Read a processed-layout folder; `stem` is the category's file-name spelling (`"Beauty"`), if known."""
    name_part = stem or "*"
    derived = find_file(folder, ["derived/interactions.tsv"])
    gram = find_file(folder, ["gram/user_sequence.txt"])
    s3rec_txt = find_file(folder, [f"s3rec/{stem}.txt"]) if stem else None
    s3rec_map_path = find_file(folder, ["derived/s3rec_item_id_to_asin.tsv"])
    recbole_patterns = [f"recbole*/Amazon_{name_part}", f"Amazon_{name_part}", "recbole*/*", "*"]
    recbole_inter = _first_match(folder, [p + ".inter" for p in recbole_patterns])

    # Sequences: the first source present wins (timestamps only from derived/ and RecBole).
    timestamps = None
    s3rec_seqs: list[list[str]] | None = None
    if derived is not None:
        user_ids, item_seqs, timestamps = read_derived_interactions(derived)
    elif gram is not None:
        user_ids, item_seqs, _ = read_user_sequences(gram)
    elif s3rec_txt is not None:
        user_ids, s3rec_seqs, _ = read_user_sequences(s3rec_txt)
        item_seqs = s3rec_seqs
        if s3rec_map_path is not None:
            id_map = read_id_map(s3rec_map_path)
            unmapped = sorted({i for seq in s3rec_seqs for i in seq if i not in id_map})
            if unmapped:
                raise DataFormatError(
                    s3rec_map_path,
                    None,
                    f"{len(unmapped)} S3-Rec item ids have no asin (e.g. {unmapped[:5]})",
                    FIX_HINT,
                )
            item_seqs = [[id_map[i] for i in seq] for seq in s3rec_seqs]
    elif recbole_inter is not None:
        user_ids, item_seqs, timestamps = read_recbole_inter(recbole_inter)
    else:
        looked_for = [
            f"reviews_{name_part}_5.json (+ meta_{name_part}.json): raw McAuley 2014 files",
            "derived/interactions.tsv",
            "gram/user_sequence.txt",
            f"s3rec/{name_part}.txt",
            f"recbole*/Amazon_{name_part}.inter",
        ]
        raise missing_files_error(folder, "Amazon 2014 interaction files", looked_for)

    # Item metadata: the richest source present wins.
    metadata: dict[str, dict[str, Any]] = {}
    extra_types: dict[str, pa.DataType] = {}
    sources = []
    item_meta = find_file(folder, ["derived/item_meta.jsonl"])
    recbole_item = _first_match(folder, [p + ".item" for p in recbole_patterns])
    if item_meta is not None:
        metadata, extra_types = read_item_meta_jsonl(item_meta)
        sources.append(str(item_meta))
    elif recbole_item is not None:
        metadata, extra_types = read_recbole_items(recbole_item)
        sources.append(str(recbole_item))
    elif (folder / "llm-seqrec" / "products_lookup.csv").is_file():
        metadata = read_llm_seqrec_titles(folder / "llm-seqrec")
        sources.append(str(folder / "llm-seqrec"))

    # Attributes (S3-Rec ids) are joined onto the items through the id map or by lining up the sequences.
    attributes_path = find_file(folder, [f"s3rec/{stem}_item2attributes.json"]) if stem else None
    if attributes_path is not None:
        if s3rec_seqs is not None:
            id_map = {s: a for seq, mapped in zip(s3rec_seqs, item_seqs) for s, a in zip(seq, mapped)}
        elif s3rec_map_path is not None:
            id_map = read_id_map(s3rec_map_path)
        elif s3rec_txt is not None:
            _, other_seqs, _ = read_user_sequences(s3rec_txt)
            id_map = join_by_position(s3rec_txt, other_seqs, user_ids, item_seqs)
        else:
            id_map = None
            logger.warning(
                "%s is not used: its S3-Rec item ids cannot be matched to asins without "
                "derived/s3rec_item_id_to_asin.tsv or s3rec/%s.txt.",
                attributes_path,
                stem,
            )
        if id_map is not None:
            attributes = read_s3rec_attributes(attributes_path)
            unmatched = 0
            for s3rec_id, values in attributes.items():
                asin = id_map.get(s3rec_id)
                if asin is None:
                    unmatched += 1
                    continue
                metadata.setdefault(asin, {})["attributes"] = values
            if unmatched:
                logger.warning("%d item ids in %s are not in the sequences; ignored.", unmatched, attributes_path)
            sources.append(str(attributes_path))
    source = " + ".join(sources) if sources else f"no item metadata files in {folder}"
    return build_interaction_data(
        name, user_ids, item_seqs, timestamps, metadata or None, extra_item_types=extra_types, metadata_source=source
    )
