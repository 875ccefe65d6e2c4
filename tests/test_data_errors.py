"""Bad input: every malformed file must raise an error naming the file, the line, the problem and a fix."""

from __future__ import annotations

import gzip
import json
import pickle
from pathlib import Path

import pytest

from hf_genrec.data import (
    DataFormatError,
    InteractionData,
    load_interactions,
    read_amazon,
    read_movielens,
    read_recbole_atomic,
)


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def ml1m(tmp: Path, ratings: str) -> Path:
    write(tmp / "ml-1m" / "ratings.dat", ratings)
    return tmp / "ml-1m"


GOOD_REVIEW = json.dumps({"reviewerID": "U", "asin": "A", "unixReviewTime": 5})

# (case id, files to write relative to tmp_path, reader, expected file name, expected line, words in the problem)
CASES = [
    (
        "ratings-wrong-field-count",
        {"ml-1m/ratings.dat": "1::2::5::300\n1::3::5\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "ratings.dat",
        2,
        "expected 4",
    ),
    (
        "ratings-non-integer-timestamp",
        {"ml-1m/ratings.dat": "1::2::5::300\n\n1::3::5::yesterday\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "ratings.dat",
        3,
        "timestamp 'yesterday'",
    ),
    (
        "ratings-fractional-timestamp",
        {"ml-1m/ratings.dat": "1::2::5::300.5\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "ratings.dat",
        1,
        "whole number",
    ),
    (
        "ratings-non-integer-user",
        {"ml-1m/ratings.dat": "1::2::5::300\nx::3::5::300\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "ratings.dat",
        2,
        "UserID 'x'",
    ),
    (
        "movies-wrong-field-count",
        {"ml-1m/ratings.dat": "1::2::5::300\n", "ml-1m/movies.dat": "2::Heat (1995)::Action\n3::Broken\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "movies.dat",
        2,
        "expected 3",
    ),
    (
        "sequences-user-without-items",
        {"ml-1m/derived/sequences.txt.gz": "1 2 3\n2\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "sequences.txt.gz",
        2,
        "has no items",
    ),
    (
        "sequences-user-twice",
        {"ml-1m/derived/sequences.txt.gz": "1 2 3\n1 4\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "sequences.txt.gz",
        2,
        "already appeared on line 1",
    ),
    (
        "partial-ratings-disagree-with-sequences",
        {"ml-1m/derived/sequences.txt.gz": "1 2 3\n", "ml-1m/ratings.partial.dat.gz": "1::2::5::1\n1::4::5::2\n"},
        lambda t: read_movielens(t / "ml-1m"),
        "ratings.partial.dat.gz",
        1,
        "do not match",
    ),
    (
        "u-item-bad-genre-flag",
        {
            "ml-100k/u.data": "1\t1\t5\t9\n",
            "ml-100k/u.item": "1|Toy Story (1995)|01-Jan-1995||url|" + "|".join("2" * 19),
        },
        lambda t: read_movielens(t / "ml-100k"),
        "u.item",
        1,
        "genre flags",
    ),
    (
        "u-data-wrong-field-count",
        {"ml-100k/u.data": "1\t1\t5\t9\n1 2 5 9\n"},
        lambda t: read_movielens(t / "ml-100k"),
        "u.data",
        2,
        "expected 4",
    ),
    (
        "recbole-wrong-field-count",
        {"x.inter": "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\nu\ti\n"},
        lambda t: read_recbole_atomic(t / "x.inter"),
        "x.inter",
        3,
        "expected 3 tab-separated fields",
    ),
    (
        "recbole-bad-header",
        {"x.inter": "user_id\titem_id:token\nu\ti\n"},
        lambda t: read_recbole_atomic(t / "x.inter"),
        "x.inter",
        1,
        "name:type",
    ),
    (
        "recbole-missing-item-field",
        {"x.inter": "user_id:token\tasin:token\nu\ti\n"},
        lambda t: read_recbole_atomic(t / "x.inter"),
        "x.inter",
        1,
        "no `item_id` field",
    ),
    (
        "recbole-non-integer-timestamp",
        {"x.inter": "user_id:token\titem_id:token\ttimestamp:float\nu\ti\tnoon\n"},
        lambda t: read_recbole_atomic(t / "x.inter"),
        "x.inter",
        2,
        "timestamp 'noon'",
    ),
    (
        "recbole-item-bad-price-after-quoted-newline",
        {
            "x.inter": "user_id:token\titem_id:token\nu\ti\n",
            "x.item": 'item_id:token\ttitle:token\tprice:float\nh\t"two\nlines"\t1\ni\tT\tcheap\n',
        },
        lambda t: read_recbole_atomic(t / "x.inter", t / "x.item"),
        "x.item",
        4,
        "price 'cheap'",
    ),
    (
        "amazon-reviews-bad-json",
        {"amazon-beauty/reviews_Beauty_5.json.gz": GOOD_REVIEW + "\n{'reviewerID': 'U'\n"},
        lambda t: read_amazon(t / "amazon-beauty"),
        "reviews_Beauty_5.json.gz",
        2,
        "not valid JSON",
    ),
    (
        "amazon-reviews-missing-field",
        {"amazon-beauty/reviews_Beauty_5.json.gz": GOOD_REVIEW + "\n" + json.dumps({"reviewerID": "U", "asin": "B"})},
        lambda t: read_amazon(t / "amazon-beauty"),
        "reviews_Beauty_5.json.gz",
        2,
        "unixReviewTime",
    ),
    (
        "amazon-reviews-non-integer-time",
        {
            "amazon-beauty/reviews_Beauty_5.json.gz": json.dumps(
                {"reviewerID": "U", "asin": "B", "unixReviewTime": "x"}
            )
        },
        lambda t: read_amazon(t / "amazon-beauty"),
        "reviews_Beauty_5.json.gz",
        1,
        "timestamp 'x'",
    ),
    (
        "amazon-meta-not-a-literal",
        {
            "amazon-beauty/reviews_Beauty_5.json.gz": GOOD_REVIEW,
            "amazon-beauty/meta_Beauty.json.gz": "{'asin': 'A', 'title': 'ok'}\n{'asin': 'A', 'title': __import__('os')}\n",
        },
        lambda t: read_amazon(t / "amazon-beauty"),
        "meta_Beauty.json.gz",
        2,
        "neither JSON nor a Python dict literal",
    ),
    (
        "amazon-item-meta-bad-json",
        {
            "amazon-beauty/gram/user_sequence.txt": "U A B\n",
            "amazon-beauty/derived/item_meta.jsonl.gz": '{"item_asin": "A"}\n{"item_asin": "B", \n',
        },
        lambda t: read_amazon(t / "amazon-beauty"),
        "item_meta.jsonl.gz",
        2,
        "not valid JSON",
    ),
    (
        "amazon-derived-interactions-bad-timestamp",
        {"amazon-beauty/derived/interactions.tsv.gz": "user_id\titem_asin\ttimestamp\tposition\nU\tA\t1.5\t0\n"},
        lambda t: read_amazon(t / "amazon-beauty"),
        "interactions.tsv.gz",
        2,
        "whole number",
    ),
    (
        "amazon-derived-interactions-missing-column",
        {"amazon-beauty/derived/interactions.tsv.gz": "user_id\titem_asin\tposition\nU\tA\t0\n"},
        lambda t: read_amazon(t / "amazon-beauty"),
        "interactions.tsv.gz",
        1,
        "no timestamp column",
    ),
    (
        "amazon-s3rec-position-join-conflict",
        {
            "amazon-beauty/gram/user_sequence.txt": "U1 A B\nU2 A C\n",
            "amazon-beauty/s3rec/Beauty.txt": "1 1 2\n2 2 3\n",
            "amazon-beauty/s3rec/Beauty_item2attributes.json": "{}",
        },
        lambda t: read_amazon(t / "amazon-beauty"),
        "Beauty.txt",
        2,
        "lines up with both",
    ),
    (
        "amazon-attributes-bad-json",
        {
            "amazon-beauty/gram/user_sequence.txt": "U1 A\n",
            "amazon-beauty/derived/s3rec_item_id_to_asin.tsv": "s3rec_item_id\titem_asin\n1\tA\n",
            "amazon-beauty/s3rec/Beauty_item2attributes.json": '{"1": [1],\n "2": [2,,]}',
        },
        lambda t: read_amazon(t / "amazon-beauty"),
        "Beauty_item2attributes.json",
        2,
        "not valid JSON",
    ),
]


@pytest.mark.parametrize(
    ("files", "read", "filename", "line", "problem"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_line_names_file_line_and_problem(tmp_path, files, read, filename, line, problem):
    for relative, text in files.items():
        write(tmp_path / relative, text)
    with pytest.raises(DataFormatError) as info:
        read(tmp_path)
    error = info.value
    message = str(error)
    assert error.path.name == filename and filename in message
    assert error.line == line and f"line {line}:" in message
    assert problem in message
    assert error.hint  # says what to do
    assert isinstance(error, ValueError)
    assert str(pickle.loads(pickle.dumps(error))) == message


def test_truncated_gzip_is_reported_with_the_file(tmp_path):
    path = tmp_path / "ml-1m" / "ratings.dat.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b"1::2::5::300\n" * 1000)[:-20])
    with pytest.raises(DataFormatError, match=r"ratings\.dat\.gz.*damaged or truncated.*download it again"):
        read_movielens(tmp_path / "ml-1m")


def test_undecodable_text_is_reported(tmp_path):
    write(tmp_path / "g" / "gram" / "user_sequence.txt", b"U1 A B\nU2 \xff\xfe\n")
    with pytest.raises(DataFormatError, match=r"user_sequence\.txt, line 2: the text is not valid utf-8"):
        read_amazon(tmp_path / "g", "beauty")


def test_unknown_dataset_name_lists_known_names(tmp_path):
    with pytest.raises(ValueError) as info:
        load_interactions("movielens-20m", tmp_path, download=False)
    message = str(info.value)
    for expected in ("movielens-20m", "ml-100k", "ml-1m", "amazon-beauty", "amazon-<category>", "sports-and-outdoors"):
        assert expected in message


def test_missing_folder_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"ml-100k does not exist.*download=True"):
        load_interactions("ml-100k", tmp_path, download=False)


@pytest.mark.parametrize(
    ("name", "reader", "looked_for"),
    [
        ("ml-1m", read_movielens, ["ratings.dat", "derived/sequences.txt", "u.data", "*.inter"]),
        (
            "amazon-toys-and-games",
            read_amazon,
            [
                "reviews_Toys_and_Games_5.json",
                "derived/interactions.tsv",
                "gram/user_sequence.txt",
                "s3rec/Toys_and_Games.txt",
            ],
        ),
    ],
)
def test_folder_without_expected_files_lists_what_was_looked_for(tmp_path, name, reader, looked_for):
    write(tmp_path / name / "notes.txt", "nothing useful")
    with pytest.raises(FileNotFoundError) as info:
        reader(tmp_path / name)
    message = str(info.value)
    assert str(tmp_path / name) in message and "notes.txt" in message
    for expected in looked_for:
        assert expected in message
    # load_interactions does not try to download into a folder that exists
    with pytest.raises(FileNotFoundError):
        load_interactions(name, tmp_path, download=True)


def test_amazon_folder_with_several_categories_needs_category(tmp_path):
    write(tmp_path / "mixed" / "reviews_Beauty_5.json.gz", GOOD_REVIEW)
    write(tmp_path / "mixed" / "reviews_Baby_5.json.gz", GOOD_REVIEW)
    with pytest.raises(ValueError, match="several categories"):
        read_amazon(tmp_path / "mixed")
    assert read_amazon(tmp_path / "mixed", "baby").name == "amazon-baby"


def test_inconsistent_hand_built_data_is_rejected():
    with pytest.raises(ValueError, match="2 items but 1 timestamps"):
        InteractionData.from_sequences("x", {"u": ["a", "b"]}, timestamps={"u": [1]})
    with pytest.raises(ValueError, match="have no items"):
        InteractionData.from_sequences("x", {"u": []})
    with pytest.raises(ValueError, match="price of item 'a' is 'cheap'"):
        InteractionData.from_sequences("x", {"u": ["a"]}, item_metadata={"a": {"price": "cheap"}})
    data = InteractionData.from_sequences("x", {"u": ["a"]})
    with pytest.raises(ValueError, match=r"lacks the columns \['title'"):
        InteractionData("x", data.sequences, data.items.remove_columns(["title"]))
