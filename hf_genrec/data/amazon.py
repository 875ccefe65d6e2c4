"""Reader for Amazon review data 2014 (McAuley): the raw 5-core files and the common processed layouts."""

from __future__ import annotations

import ast
import json
import logging
import re
from pathlib import Path
from typing import Any

import pyarrow as pa

from ._io import FIX_HINT, DataFormatError, PathLike, clean_str, find_file, iter_lines, parse_timestamp
from .amazon_processed import read_processed_amazon
from .interactions import InteractionData, build_interaction_data

logger = logging.getLogger(__name__)

# The 24 categories with a 5-core file in the 2014 release, spelled as in McAuley's file names.
AMAZON_2014_CATEGORIES = (
    "Amazon_Instant_Video", "Apps_for_Android", "Automotive", "Baby", "Beauty", "Books", "CDs_and_Vinyl",
    "Cell_Phones_and_Accessories", "Clothing_Shoes_and_Jewelry", "Digital_Music", "Electronics",
    "Grocery_and_Gourmet_Food", "Health_and_Personal_Care", "Home_and_Kitchen", "Kindle_Store", "Movies_and_TV",
    "Musical_Instruments", "Office_Products", "Patio_Lawn_and_Garden", "Pet_Supplies", "Sports_and_Outdoors",
    "Tools_and_Home_Improvement", "Toys_and_Games", "Video_Games",
)  # fmt: skip
META_TYPES = {"sales_type": pa.string(), "sales_rank": pa.float64(), "description": pa.string()}
# The 2014 meta lines start with the asin; reading it first lets us skip the (slow) literal parse of unused items.
_LEADING_ASIN = re.compile(r"""\s*\{\s*['"]asin['"]\s*:\s*['"]([^'"]+)['"]""")


def category_slug(stem: str) -> str:
    """`"Sports_and_Outdoors"` -> `"sports-and-outdoors"` (the dataset name is `amazon-<slug>`)."""
    return stem.lower().replace("_", "-")


def amazon_file_stem(category: str) -> str:
    """
    Map a category as users write it to McAuley's file-name spelling.

    `"sports-and-outdoors"`, `"amazon-sports-and-outdoors"` and `"Sports_and_Outdoors"` all give
    `"Sports_and_Outdoors"`; `"cds-and-vinyl"` gives `"CDs_and_Vinyl"`. Categories outside the 2014 list are
    capitalised word by word (`"and"`/`"for"` kept lower case).
    """
    text = category.strip()
    if text.lower().startswith("amazon-"):
        text = text[len("amazon-") :]
    slug = category_slug(text.replace(" ", "_"))
    for stem in AMAZON_2014_CATEGORIES:
        if category_slug(stem) == slug:
            return stem
    return "_".join(w if w in ("and", "for") else w[:1].upper() + w[1:] for w in slug.split("-") if w)


def _infer_stem(folder: Path) -> str | None:
    if folder.name.lower().startswith("amazon-"):
        return amazon_file_stem(folder.name)
    if not folder.is_dir():
        return None
    found = {p.name[len("reviews_") :].split("_5.json")[0] for p in folder.glob("reviews_*_5.json*")}
    found |= {p.name.split("_item2attributes")[0] for p in folder.glob("s3rec/*_item2attributes.json*")}
    found |= {p.stem[len("Amazon_") :] for p in folder.glob("*/Amazon_*.item")}
    if len(found) > 1:
        raise ValueError(f"{folder} holds files of several categories {sorted(found)}; pass `category=`.")
    return found.pop() if found else None


def read_amazon_reviews(path: PathLike) -> tuple[list[str], list[list[str]], list[list[int]]]:
    """
    Read `reviews_<Category>_5.json.gz` (one JSON object per line with `reviewerID`, `asin`, `unixReviewTime`).

    Users are in order of first appearance; each user's items are sorted by review time, equal times in file order.
    """
    path = Path(path)
    per_user: dict[str, list[tuple[int, str]]] = {}
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
            user, item, when = record["reviewerID"], record["asin"], record["unixReviewTime"]
        except json.JSONDecodeError as e:
            raise DataFormatError(path, line, f"not valid JSON ({e.msg}, column {e.colno})", FIX_HINT) from None
        except (KeyError, TypeError):
            raise DataFormatError(
                path, line, "the record lacks one of the fields reviewerID, asin, unixReviewTime", FIX_HINT
            ) from None
        if isinstance(when, bool) or not isinstance(when, int):
            when = parse_timestamp(str(when), path, line)
        per_user.setdefault(str(user), []).append((when, str(item)))
    user_ids = list(per_user)
    item_seqs, timestamps = [], []
    for user in user_ids:
        events = sorted(per_user[user], key=lambda e: e[0])
        item_seqs.append([item for _, item in events])
        timestamps.append([when for when, _ in events])
    return user_ids, item_seqs, timestamps


def parse_meta_record(text: str, path: Path, line: int) -> dict[str, Any]:
    try:
        record = json.loads(text)
    except ValueError:
        # The 2014 meta files hold Python dict literals (single quotes); literal_eval never runs code, unlike eval.
        try:
            record = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError) as e:
            raise DataFormatError(
                path, line, f"neither JSON nor a Python dict literal ({type(e).__name__}: {e})", FIX_HINT
            ) from None
    if not isinstance(record, dict) or not isinstance(record.get("asin"), str):
        raise DataFormatError(path, line, "the record is not a dict with an 'asin' string", FIX_HINT)
    return record


def _flatten_categories(value: Any, path: Path, line: int) -> list[str]:
    # 2014 meta: a list of category paths, e.g. [["Beauty", "Makeup", "Face"], ["Beauty", "Skin Care"]].
    # The paths are concatenated with repeats removed (order kept), like S3-Rec's attribute building.
    if value is None:
        return []
    if not isinstance(value, list):
        raise DataFormatError(
            path, line, f"categories must be a list of lists, found {type(value).__name__}", FIX_HINT
        )
    flat: dict[str, None] = {}
    for entry in value:
        for name in entry if isinstance(entry, list) else [entry]:
            if clean_str(name):
                flat[str(name).strip()] = None
    return list(flat)


def read_amazon_meta(
    path: PathLike, wanted: set[str] | None = None
) -> tuple[dict[str, dict[str, Any]], dict[str, pa.DataType]]:
    """
    Read `meta_<Category>.json.gz` into `({asin: row}, extra_types)`, keeping only the `wanted` asins if given.

    Each line is one Python dict literal (JSON is accepted too): `asin`, `title`, `brand`, `categories` (a list of
    category paths, flattened), `price`, `salesRank` (`{category: rank}` -> `sales_type`, `sales_rank`) and
    `description`.
    """
    path = Path(path)
    items: dict[str, dict[str, Any]] = {}
    for line, text in iter_lines(path):
        if not text.strip():
            continue
        lead = _LEADING_ASIN.match(text)
        if lead is not None and wanted is not None and lead.group(1) not in wanted:
            continue
        record = parse_meta_record(text, path, line)
        asin = record["asin"]
        if (wanted is not None and asin not in wanted) or asin in items:
            continue
        rank = record.get("salesRank")
        sales_type, sales_rank = next(iter(rank.items()), (None, None)) if isinstance(rank, dict) else (None, None)
        try:
            price = None if record.get("price") in (None, "") else float(record["price"])
            sales_rank = None if sales_rank is None else float(sales_rank)
        except (TypeError, ValueError):
            raise DataFormatError(path, line, "price or salesRank is not a number", FIX_HINT) from None
        items[asin] = {
            "title": record.get("title"),
            "brand": record.get("brand"),
            "categories": _flatten_categories(record.get("categories"), path, line),
            "price": price,
            "sales_type": clean_str(sales_type),
            "sales_rank": sales_rank,
            "description": clean_str(record.get("description")),
        }
    return items, dict(META_TYPES)


def _read_raw(folder: Path, reviews: Path, stem: str, name: str) -> InteractionData:
    user_ids, item_seqs, timestamps = read_amazon_reviews(reviews)
    meta_path = find_file(folder, [f"meta_{stem}.json"])
    if meta_path is None:
        metadata, extra_types, source = None, None, f"no meta_{stem}.json.gz in {folder}"
    else:
        wanted = {item for seq in item_seqs for item in seq}
        metadata, extra_types = read_amazon_meta(meta_path, wanted)
        source = str(meta_path)
    return build_interaction_data(
        name, user_ids, item_seqs, timestamps, metadata, extra_item_types=extra_types, metadata_source=source
    )


def read_amazon(folder: PathLike, category: str | None = None, *, name: str | None = None) -> InteractionData:
    """
    Read an Amazon 2014 category folder into an [`InteractionData`]; the layout is detected from the files.

    Layouts:
    - Raw McAuley files: `reviews_<Category>_5.json.gz` (JSON lines: `reviewerID`, `asin`, `unixReviewTime`) and
      `meta_<Category>.json.gz` (Python dict literals, read with `ast.literal_eval`). Each user's items are sorted
      by review time (day resolution), equal times in file order.
    - Processed copies (as in `amazon-beauty/`): sequences from `derived/interactions.tsv.gz` (with timestamps),
      else `gram/user_sequence.txt`, else `s3rec/<Category>.txt`, else a RecBole `.inter`; item metadata from
      `derived/item_meta.jsonl.gz`, else a RecBole `.item`, else `llm-seqrec/` titles; S3-Rec attribute ids from
      `s3rec/<Category>_item2attributes.json`, matched to asins through `derived/s3rec_item_id_to_asin.tsv` or by
      lining up `s3rec/<Category>.txt` with the sequences.

    Text is kept as published (HTML entities such as `&amp;` are not decoded).

    Args:
        folder: The category folder, e.g. `<data root>/amazon-beauty`.
        category: `"beauty"`, `"sports-and-outdoors"`, `"Sports_and_Outdoors"`, ...; inferred from the folder name
            (`amazon-<category>`) or the file names when omitted.
        name: Dataset name; defaults to `amazon-<category>`.
    """
    folder = Path(folder)
    stem = amazon_file_stem(category) if category else _infer_stem(folder)
    reviews = find_file(folder, [f"reviews_{stem}_5.json"]) if stem else None
    if reviews is None and stem is None and folder.is_dir():
        candidates = sorted(folder.glob("reviews_*_5.json*"))
        if len(candidates) == 1:
            reviews = candidates[0]
            stem = reviews.name[len("reviews_") :].split("_5.json")[0]
    name = name or (f"amazon-{category_slug(stem)}" if stem else folder.name)
    if reviews is not None:
        return _read_raw(folder, reviews, stem, name)
    return read_processed_amazon(folder, stem, name)
