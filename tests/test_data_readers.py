"""Readers on tiny synthetic files written to tmp_path: RecBole atomic, MovieLens layouts, Amazon 2014 layouts."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

from hf_genrec.data import InteractionData, load_interactions, read_amazon, read_movielens, read_recbole_atomic
from hf_genrec.data.amazon import amazon_file_stem
from hf_genrec.data.recbole import split_token_seq


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode(encoding)
    if path.suffix == ".gz":
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def rows(dataset) -> list[dict]:
    return [dict(r) for r in dataset]


def seqs(data: InteractionData) -> dict[str, tuple[list[str], list[int] | None]]:
    return {r["user_id"]: (r["item_ids"], r["timestamps"]) for r in data.sequences}


def by_id(data: InteractionData) -> dict[str, dict]:
    return {r["item_id"]: r for r in data.items}


# ---------------------------------------------------------------------------------------------------------------
# RecBole atomic files


RECBOLE_INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti2\t5\t200\n"
    "u2\ti1\t3\t50\n"
    "\n"
    "u1\ti1\t4\t100\n"
    "u1\ti3\t4\t200.0\n"
)


def test_recbole_sorts_by_time_keeps_ties_in_file_order_and_maps_fields(tmp_path, caplog):
    inter = write(tmp_path / "toy.inter", RECBOLE_INTER)
    item = write(
        tmp_path / "toy.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
        "i1\tToy  Story\t1995\tAnimation Comedy\n"
        "i2\tHeat\t\tAction\n"
        "i9\tUnused\t2000\tDrama\n",
    )
    user = write(tmp_path / "toy.user", "user_id:token\tage:token\tgender:token\nu1\t24\tM\n")
    with caplog.at_level(logging.WARNING):
        data = read_recbole_atomic(inter, item, user)
    assert data.name == "toy"
    assert seqs(data) == {"u1": (["i1", "i2", "i3"], [100, 200, 200]), "u2": (["i1"], [50])}
    assert data.sequences["age"] == ["24", None]
    assert data.sequences["gender"] == ["M", None]
    assert rows(data.items) == [
        {"item_id": "i1", "title": "Toy  Story", "brand": None, "categories": ["Animation", "Comedy"], "price": None,
         "attributes": [], "release_year": "1995"},
        {"item_id": "i2", "title": "Heat", "brand": None, "categories": ["Action"], "price": None, "attributes": [],
         "release_year": None},
        {"item_id": "i3", "title": None, "brand": None, "categories": [], "price": None, "attributes": [],
         "release_year": None},
    ]  # fmt: skip
    assert (data.num_users, data.num_items, data.num_interactions) == (2, 3, 4)
    assert "1 of 3 items" in caplog.text and "toy.item" in caplog.text
    assert "1 of 2 users have no row" in caplog.text


def test_recbole_without_item_file_warns_and_gives_empty_rows(tmp_path, caplog):
    inter = write(tmp_path / "x.inter", "user_id:token\titem_id:token\nA\tb\nA\ta\n")
    with caplog.at_level(logging.WARNING):
        data = read_recbole_atomic(inter, name="mine")
    assert data.name == "mine"
    assert seqs(data) == {"A": (["b", "a"], None)}  # no timestamp field: file order, timestamps unknown
    assert data.items["item_id"] == ["b", "a"]
    assert data.items["title"] == [None, None]
    assert "No item metadata" in caplog.text


def test_recbole_item_file_with_csv_quoting_and_python_list_categories(tmp_path):
    # As in RecBole_SAE's Amazon_Beauty.item: quoted titles holding a tab, a newline or quotes; categories written
    # as the inside of a Python list.
    item = write(
        tmp_path / "Amazon_Beauty.item",
        "item_id:token\ttitle:token\tsales_type:token\tsales_rank:float\tcategories:token_seq\tprice:float\tbrand:token\n"
        "\"A1\"\t\"Cream \nVanilla\"\tBeauty\t10.0\t'Beauty', 'Skin Care'\t11.28\tOrganix\n"
        'A2\t"- \t Lotion ""20 OZ"""\t\t\t"\'Beauty\', ""Women\'s"", \'Eau de Parfum\'"\t\t\n'
        "A3\t\tBeauty\t5\tBeauty Makeup\t1\tX\n",
    )
    inter = write(tmp_path / "Amazon_Beauty.inter", "user_id:token\titem_id:token\nu\tA1\nu\tA2\nu\tA3\n")
    data = read_recbole_atomic(inter, item)
    items = by_id(data)
    assert items["A1"]["title"] == "Cream \nVanilla"
    assert items["A1"]["categories"] == ["Beauty", "Skin Care"]
    assert items["A1"]["price"] == 11.28 and items["A1"]["brand"] == "Organix"
    assert items["A1"]["sales_rank"] == 10.0 and items["A1"]["sales_type"] == "Beauty"
    assert items["A2"]["title"] == '- \t Lotion "20 OZ"'
    assert items["A2"]["categories"] == ["Beauty", "Women's", "Eau de Parfum"]
    assert items["A2"]["price"] is None and items["A2"]["brand"] is None and items["A2"]["sales_type"] is None
    assert items["A3"]["title"] is None and items["A3"]["categories"] == ["Beauty", "Makeup"]


def test_split_token_seq():
    assert split_token_seq("Animation Children's Comedy") == ["Animation", "Children's", "Comedy"]
    assert split_token_seq("'Til There Was You") == ["'Til", "There", "Was", "You"]
    assert split_token_seq("'Beauty', \"Women's\"") == ["Beauty", "Women's"]
    assert split_token_seq("  ") == []


# ---------------------------------------------------------------------------------------------------------------
# MovieLens

MOVIES_DAT = (
    "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Misérables, Les (1995)::Drama|Musical\n3::Heat::Action\n"
)


def test_ml1m_full_ratings_layout(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "ratings.dat", "1::2::5::300\n1::1::3::100\n2::3::4::50\n1::3::4::300\n")
    write(folder / "movies.dat", MOVIES_DAT, "latin-1")
    write(folder / "users.dat", "1::F::1::10::48067\n2::M::56::16::70072\n")
    data = read_movielens(folder)
    assert data.name == "ml-1m"
    assert seqs(data) == {"1": (["1", "2", "3"], [100, 300, 300]), "2": (["3"], [50])}
    assert rows(data.items)[0] == {
        "item_id": "1", "title": "Toy Story", "brand": None, "categories": ["Animation", "Children's", "Comedy"],
        "price": None, "attributes": [], "release_year": "1995",
    }  # fmt: skip
    assert by_id(data)["2"]["title"] == "Misérables, Les"  # read as ISO-8859-1
    assert by_id(data)["3"]["release_year"] is None
    assert data.sequences["gender"] == ["F", "M"] and data.sequences["zip_code"] == ["48067", "70072"]


def test_ml1m_shared_layout_sequences_plus_partial_timestamps(tmp_path):
    folder = tmp_path / "ml-1m"
    write(folder / "derived" / "sequences.txt.gz", "1 3 1 2\n2 2 3\n")
    # user 1 only, in another order than the sequence: timestamps must follow the sequence's order
    write(folder / "ratings.partial.dat.gz", "1::1::5::20\n1::2::3::30\n1::3::4::10\n")
    write(folder / "movies.dat", MOVIES_DAT, "latin-1")
    data = read_movielens(folder)
    assert seqs(data) == {"1": (["3", "1", "2"], [10, 20, 30]), "2": (["2", "3"], None)}
    assert data.items["item_id"] == ["3", "1", "2"]
    assert data.describe().startswith("ml-1m: 2 users, 3 items, 5 interactions")
    assert "timestamps for 1/2 users" in data.describe()


def test_ml100k_grouplens_zip_layout(tmp_path):
    folder = tmp_path / "ml-100k"
    write(folder / "u.data", "196\t242\t3\t881250949\n196\t1\t4\t881250000\n186\t242\t2\t891717742\n")
    flags_toy = "|".join(["0", "0", "0", "1", "1", "1"] + ["0"] * 13)
    flags_kolya = "|".join(["0"] * 5 + ["1"] + ["0"] * 13)
    write(
        folder / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags_toy}\n242|Kolya (1996)|24-Jan-1997||http://y|{flags_kolya}\n",
        "latin-1",
    )
    write(folder / "u.user", "196|49|M|writer|55105\n186|39|F|executive|00000\n")
    data = read_movielens(folder)
    assert seqs(data) == {"196": (["1", "242"], [881250000, 881250949]), "186": (["242"], [891717742])}
    items = by_id(data)
    assert items["1"]["title"] == "Toy Story" and items["1"]["categories"] == ["Animation", "Children's", "Comedy"]
    assert items["242"]["release_year"] == "1997"  # from the release date, as RecBole's ml-100k.item has it
    assert data.sequences["occupation"] == ["writer", "executive"]


def test_movielens_folder_with_recbole_atomic_files(tmp_path):
    folder = tmp_path / "ml-100k"
    write(folder / "ml-100k.inter", "user_id:token\titem_id:token\ttimestamp:float\n1\t5\t9\n1\t6\t8\n")
    write(folder / "ml-100k.item", "item_id:token\tmovie_title:token_seq\n5\tFive\n6\tSix\n")
    data = read_movielens(folder)
    assert seqs(data) == {"1": (["6", "5"], [8, 9])}
    assert data.items["title"] == ["Six", "Five"]


def test_load_interactions_reads_the_named_folder_and_applies_min_count(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_GENREC_DOWNLOAD_URL", "http://127.0.0.1:9/")  # never the internet, even by mistake
    write(tmp_path / "ml-1m" / "ratings.dat", "1::1::5::1\n1::2::5::2\n2::1::5::3\n2::2::5::4\n3::3::5::5\n")
    data = load_interactions("ML-1M", tmp_path, min_count=2)
    assert data.name == "ml-1m"
    assert seqs(data) == {"1": (["1", "2"], [1, 2]), "2": (["1", "2"], [3, 4])}
    monkeypatch.setenv("HF_GENREC_DATA_DIR", str(tmp_path))
    assert load_interactions("ml-1m").num_users == 3


# ---------------------------------------------------------------------------------------------------------------
# Amazon 2014


def test_amazon_file_stems():
    assert amazon_file_stem("beauty") == "Beauty"
    assert amazon_file_stem("amazon-sports-and-outdoors") == "Sports_and_Outdoors"
    assert amazon_file_stem("Toys_and_Games") == "Toys_and_Games"
    assert amazon_file_stem("cds-and-vinyl") == "CDs_and_Vinyl"
    assert amazon_file_stem("movies-and-tv") == "Movies_and_TV"
    assert amazon_file_stem("garden-and-tools") == "Garden_and_Tools"  # outside the 2014 list: word by word


def review(user: str, asin: str, when: int) -> str:
    return json.dumps({"reviewerID": user, "asin": asin, "overall": 5.0, "reviewText": "ok", "unixReviewTime": when})


def test_amazon_raw_mcauley_files(tmp_path):
    folder = tmp_path / "amazon-toys-and-games"
    write(
        folder / "reviews_Toys_and_Games_5.json.gz",
        "\n".join(
            [review("U1", "B2", 200), review("U2", "B1", 100), review("U1", "B1", 100), review("U1", "B3", 200)]
        ),
    )
    meta = [
        "{'asin': 'B0', 'title': 'Never reviewed'}",
        "{'asin': 'B1', 'title': 'Lego &amp; Co', 'price': 3.5, 'salesRank': {'Toys & Games': 12}, "
        "'categories': [['Toys & Games', 'Building'], ['Toys & Games', 'Kids']], 'brand': 'LEGO', "
        "'description': \"It's fun\", 'related': {'also_bought': ['B2']}}",
        json.dumps({"asin": "B2", "categories": [["Toys & Games"]]}),
    ]
    write(folder / "meta_Toys_and_Games.json.gz", "\n".join(meta) + "\n")
    data = read_amazon(folder)
    assert data.name == "amazon-toys-and-games"
    assert seqs(data) == {"U1": (["B1", "B2", "B3"], [100, 200, 200]), "U2": (["B1"], [100])}
    assert data.items["item_id"] == ["B1", "B2", "B3"]
    b1 = by_id(data)["B1"]
    assert b1 == {
        "item_id": "B1", "title": "Lego &amp; Co", "brand": "LEGO", "categories": ["Toys & Games", "Building", "Kids"],
        "price": 3.5, "attributes": [], "sales_type": "Toys & Games", "sales_rank": 12.0, "description": "It's fun",
    }  # fmt: skip
    assert by_id(data)["B2"]["categories"] == ["Toys & Games"] and by_id(data)["B2"]["title"] is None
    assert by_id(data)["B3"]["categories"] == []  # no meta row: empty, with a warning


def processed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "amazon-beauty"
    write(
        folder / "derived" / "interactions.tsv.gz",
        "user_id\titem_asin\ttimestamp\tposition\n"
        "U1\tA\t10\t0\nU1\tB\t10\t1\nU1\tC\t30\t2\nU2\tC\t5\t1\nU2\tA\t4\t0\n",
    )
    write(folder / "gram" / "user_sequence.txt", "U1 A B C\nU2 A C\n")
    write(folder / "s3rec" / "Beauty.txt", "1 1 2 3\n2 1 3\n")
    write(folder / "s3rec" / "Beauty_item2attributes.json", json.dumps({"1": [7, 8], "3": [9], "2": []}))
    write(folder / "derived" / "s3rec_item_id_to_asin.tsv", "s3rec_item_id\titem_asin\n1\tA\n2\tB\n3\tC\n")
    return folder


def test_amazon_processed_layout_with_derived_files(tmp_path):
    folder = processed_folder(tmp_path)
    meta = [
        {"item_asin": "A", "title": "Alpha", "brand": None, "categories": ["Beauty"], "price": 1.5,
         "sales_type": "Beauty", "sales_rank": 3.0},
        {"item_asin": "C", "title": None, "brand": "Cee", "categories": [], "price": None, "sales_type": None,
         "sales_rank": None},
    ]  # fmt: skip
    write(folder / "derived" / "item_meta.jsonl.gz", "".join(json.dumps(m) + "\n" for m in meta))
    data = read_amazon(folder)
    assert data.name == "amazon-beauty"
    assert seqs(data) == {"U1": (["A", "B", "C"], [10, 10, 30]), "U2": (["A", "C"], [4, 5])}
    assert rows(data.items) == [
        {"item_id": "A", "title": "Alpha", "brand": None, "categories": ["Beauty"], "price": 1.5,
         "attributes": ["7", "8"], "sales_type": "Beauty", "sales_rank": 3.0},
        {"item_id": "B", "title": None, "brand": None, "categories": [], "price": None, "attributes": [],
         "sales_type": None, "sales_rank": None},
        {"item_id": "C", "title": None, "brand": "Cee", "categories": [], "price": None, "attributes": ["9"],
         "sales_type": None, "sales_rank": None},
    ]  # fmt: skip


def test_amazon_gram_sequences_recbole_items_and_attributes_joined_by_position(tmp_path):
    folder = processed_folder(tmp_path)
    (folder / "derived" / "interactions.tsv.gz").unlink()
    (folder / "derived" / "s3rec_item_id_to_asin.tsv").unlink()
    write(
        folder / "recbole-sae" / "Amazon_Beauty.item",
        "item_id:token\ttitle:token\tcategories:token_seq\tprice:float\tbrand:token\n"
        "A\tAlpha\t'Beauty', 'Hair Care'\t2\tAB\nB\tBeta\t'Beauty'\t\t\nC\tGamma\t\t\t\n",
    )
    data = read_amazon(folder, "beauty")
    assert seqs(data) == {"U1": (["A", "B", "C"], None), "U2": (["A", "C"], None)}
    assert data.items["title"] == ["Alpha", "Beta", "Gamma"]
    assert data.items["categories"] == [["Beauty", "Hair Care"], ["Beauty"], []]
    assert data.items["attributes"] == [["7", "8"], [], ["9"]]


def test_amazon_attributes_only_catalogue_is_valid(tmp_path, caplog):
    folder = tmp_path / "amazon-beauty"
    write(folder / "gram" / "user_sequence.txt", "U1 A B\nU2 B A\n")
    write(folder / "s3rec" / "Beauty.txt", "1 1 2\n2 2 1\n")
    write(folder / "s3rec" / "Beauty_item2attributes.json", json.dumps({"1": [1], "2": [2, 3]}))
    with caplog.at_level(logging.WARNING):
        data = read_amazon(folder)
    assert data.items["attributes"] == [["1"], ["2", "3"]]
    assert data.items["title"] == [None, None]
    assert "no row" not in caplog.text and "No item metadata" not in caplog.text


def test_amazon_s3rec_sequences_only_and_llm_seqrec_titles(tmp_path):
    folder = tmp_path / "amazon-beauty"
    write(folder / "s3rec" / "Beauty.txt", "1 1 2\n2 2 1 3\n")
    write(folder / "derived" / "s3rec_item_id_to_asin.tsv", "s3rec_item_id\titem_asin\n1\tA\n2\tB\n3\tC\n")
    write(folder / "llm-seqrec" / "item_id_to_int.json", json.dumps({"A": 0, "B": 1, "C": 2}))
    write(folder / "llm-seqrec" / "products_lookup.csv", ',global_product_id,name\n0,1,"Beta, the"\n1,0,Alpha\n2,2,\n')
    data = read_amazon(folder, "Beauty")
    assert seqs(data) == {"1": (["A", "B"], None), "2": (["B", "A", "C"], None)}
    assert data.items["title"] == ["Alpha", "Beta, the", None]
