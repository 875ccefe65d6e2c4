"""Checks on the real benchmark data, read from $HF_GENREC_DATA_DIR (skipped when it is unset or missing)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hf_genrec.data import kcore_filter, leave_one_out, load_interactions, read_amazon
from hf_genrec.data.amazon_processed import read_item_meta_jsonl
from hf_genrec.data.recbole import read_recbole_items

DATA_DIR = Path(os.environ.get("HF_GENREC_DATA_DIR", "") or "/nonexistent").resolve()  # symlinks need it absolute


def needs(name: str):
    return pytest.mark.skipif(
        not (DATA_DIR / name).is_dir(), reason=f"set HF_GENREC_DATA_DIR to a data root holding {name}/"
    )


def time_ordered(timestamps: list[list[int] | None]) -> bool:
    return all(a <= b for t in timestamps if t for a, b in zip(t, t[1:]))


@pytest.fixture(scope="module")
def beauty():
    return load_interactions("amazon-beauty", DATA_DIR, download=False)


@pytest.fixture(scope="module")
def ml1m():
    return load_interactions("ml-1m", DATA_DIR, download=False)


@needs("ml-100k")
def test_ml100k_counts_and_content():
    data = load_interactions("ml-100k", DATA_DIR, download=False)
    assert (data.num_users, data.num_items, data.num_interactions) == (943, 1682, 100_000)
    assert data.sequences.with_format("arrow")["timestamps"].null_count == 0
    assert time_ordered(data.sequences["timestamps"][:])
    toy = data.items[data.items["item_id"][:].index("1")]
    assert toy["title"] == "Toy Story" and toy["release_year"] == "1995"
    assert toy["categories"] == ["Animation", "Children's", "Comedy"]
    assert set(data.sequences.column_names) >= {"age", "gender", "occupation", "zip_code"}
    splits = leave_one_out(data)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [100_000 - 3 * 943, 943, 943]


@needs("amazon-beauty")
def test_amazon_beauty_counts_and_coverage(beauty):
    assert (beauty.num_users, beauty.num_items, beauty.num_interactions) == (22_363, 12_101, 198_502)
    items = beauty.items
    assert sum(t is not None for t in items["title"][:]) == 12_094  # 7 empty titles, as SOURCE.md says
    assert sum(b is not None for b in items["brand"][:]) == 10_003
    assert sum(p is not None for p in items["price"][:]) == 11_516
    assert all(items["categories"][:])
    assert all(items["attributes"][:]) and len({a for attrs in items["attributes"][:] for a in attrs}) == 637
    assert beauty.sequences.with_format("arrow")["timestamps"].null_count == 0
    assert time_ordered(beauty.sequences["timestamps"][:])
    first = beauty.sequences[0]  # SOURCE.md's example line and spot-checked review time
    assert first["user_id"] == "A1YJEY40YUW4SE"
    assert first["item_ids"] == ["B004756YJA", "B004ZT0SSG", "B0020YLEYK", "7806397051", "B002WLWX82"]
    assert first["timestamps"][3] == 1391040000
    splits = leave_one_out(beauty, max_history=20)
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [198_502 - 3 * 22_363, 22_363, 22_363]
    assert max(len(h) for h in splits["train"]["history"][:]) == 20


@needs("amazon-beauty")
def test_amazon_beauty_recbole_item_file_matches_derived_metadata():
    # Reading Amazon_Beauty.item with CSV quoting must give the values the derived JSON lines hold.
    recbole, _ = read_recbole_items(DATA_DIR / "amazon-beauty" / "recbole-sae" / "Amazon_Beauty.item")
    derived, _ = read_item_meta_jsonl(DATA_DIR / "amazon-beauty" / "derived" / "item_meta.jsonl.gz")
    assert recbole.keys() == derived.keys() and len(recbole) == 12_101
    for asin, row in derived.items():
        other = recbole[asin]
        for field in ("title", "brand", "categories", "price", "sales_type", "sales_rank"):
            assert (other[field] or None) == (row[field] or None), (asin, field)


@needs("amazon-beauty")
def test_amazon_beauty_attributes_by_position_join_match_the_id_map(beauty, tmp_path):
    # Without derived/, the S3-Rec ids are matched to asins by lining up s3rec/Beauty.txt with the GRAM sequences.
    source, folder = DATA_DIR / "amazon-beauty", tmp_path / "amazon-beauty"
    for relative in ("gram/user_sequence.txt", "s3rec/Beauty.txt", "s3rec/Beauty_item2attributes.json"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).symlink_to(source / relative)
    joined = read_amazon(folder)
    assert joined.sequences["item_ids"][:] == beauty.sequences["item_ids"][:]
    assert joined.sequences["timestamps"][:] == [None] * 22_363
    assert joined.items["attributes"][:] == beauty.items["attributes"][:]


@needs("ml-1m")
def test_ml1m_counts_and_partial_timestamps(ml1m):
    assert (ml1m.num_users, ml1m.num_items, ml1m.num_interactions) == (6_040, 3_706, 1_000_209)
    timestamps = ml1m.sequences["timestamps"][:]
    assert sum(t is not None for t in timestamps) == 2_999  # users 1..2999 only
    assert time_ordered(timestamps)
    assert ml1m.items[0]["title"] == "Girl, Interrupted" and ml1m.items[0]["release_year"] == "1999"


@needs("ml-1m")
def test_ml1m_five_core_matches_sasrec(ml1m):
    core = kcore_filter(ml1m, 5)  # SASRec's ML-1M: 3,416 items, 999,611 actions
    assert (core.num_users, core.num_items, core.num_interactions) == (6_040, 3_416, 999_611)
