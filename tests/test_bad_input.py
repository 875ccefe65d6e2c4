"""Bad input, one case each: a clear error (or, for the documented history cap, a log line) that says what to do.

Malformed and truncated data files are in test_data_errors.py, NaN features in test_id_schemes.py, a tokenizer that
disagrees with its item map in test_tokenization.py and test_bundle.py; a damaged checkpoint in test_faults.py.
"""

from __future__ import annotations

import logging

import datasets
import numpy as np
import pytest
import torch

from hf_genrec import GenerativeRecommender, InteractionData, leave_one_out
from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.data.filtering import kcore_filter
from hf_genrec.data.interactions import build_items, build_sequences
from hf_genrec.decoding.generate import generate_items
from hf_genrec.semantic_ids import from_codes


def test_duplicate_item_ids_in_the_item_table():
    data = InteractionData.from_sequences("toy", {"u": ["a", "b"]}, item_metadata={"a": {}, "b": {}})
    twice = datasets.concatenate_datasets([data.items, data.items.select([1])])
    with pytest.raises(ValueError, match=r"1 item_ids on more than one row \(first: \['b'\]\).*one row per item"):
        InteractionData("toy", data.sequences, twice)


def test_interactions_naming_items_absent_from_the_item_table(caplog):
    sequences = build_sequences(["u1", "u2"], [["a", "b"], ["c", "zz"]])
    with pytest.raises(ValueError, match=r"name 2 items that have no row.*\['c', 'zz'\].*Add rows for them"):
        InteractionData("toy", sequences, build_items(["a", "b"], None))
    # from plain objects, such items get empty rows and a warning that counts them: kept, never dropped
    with caplog.at_level(logging.WARNING, logger="hf_genrec.data.interactions"):
        data = InteractionData.from_sequences("toy", {"u": ["a", "zz"]}, item_metadata={"a": {"title": "A"}})
    assert data.items["item_id"] == ["a", "zz"]
    assert "1 of 2 items in the sequences have no row in item_metadata" in caplog.text


def test_histories_longer_than_the_cap_keep_their_most_recent_items(caplog):
    data = InteractionData.from_sequences("toy", {"long": [f"i{t}" for t in range(8)], "short": ["a", "b", "c"]})
    with caplog.at_level(logging.INFO, logger="hf_genrec.data.splits"):
        splits = leave_one_out(data, max_history=3)
    assert splits["test"][0]["history"] == ["i4", "i5", "i6"]  # the last 3 of 7 earlier items
    assert splits["validation"][0]["history"] == ["i3", "i4", "i5"]
    assert max(len(h) for h in splits["train"]["history"]) == 3
    # train targets i4 and i5 read 4 and 5 earlier items; validation and test 6 and 7
    assert "History cap: 2 train, 1 validation, 1 test rows had more than 3 earlier items" in caplog.text


def test_empty_data_after_kcore_filtering():
    data = InteractionData.from_sequences("toy", {"u1": ["a", "b", "c"], "u2": ["a", "d", "e"]})
    with pytest.raises(ValueError, match=r"3-core of 'toy' is empty.*Use a smaller min_count"):
        kcore_filter(data, 3)
    empty = InteractionData("toy", data.sequences.select([]), data.items.select([]))
    with pytest.raises(ValueError, match="has no users"):
        leave_one_out(empty)


def test_more_colliding_items_than_the_collision_level_holds():
    codes = np.array([[0, 0]] * 5 + [[1, 1]] * 2 + [[2, 0]])
    items = [f"i{i}" for i in range(8)]
    with pytest.raises(ValueError, match=r"1 code tuples are shared by more items than the collision level holds"):
        from_codes(codes, items, add_collision_level=True, collision_codebook_size=4)
    ids = from_codes(codes, items, add_collision_level=True, collision_codebook_size=8)
    assert ids.codebook_sizes[-1] == 8 and ids.codes[:5, -1].tolist() == [0, 1, 2, 3, 4]
    assert from_codes(codes, items, add_collision_level=True).codebook_sizes[-1] == 5  # sized to fit by default
    with pytest.raises(ValueError, match="collision_codebook_size must be a positive int"):
        from_codes(codes, items, collision_codebook_size=0)


def test_fewer_beams_than_k(item_tokenizer, tiny_model):
    with pytest.raises(ValueError, match="Set num_beams >= k"):
        generate_items(tiny_model, item_tokenizer, torch.tensor([[5, 1]]), num_beams=3, k=5)
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, GenRecConfig(num_beams=4, top_k=2))
    with pytest.raises(ValueError, match=r"num_beams=3 is smaller than k=5.*num_beams >= 5"):
        recommender.recommend([["item1", "item2"]], k=5, num_beams=3)
    # unset, the bundle's beams are raised to k (and logged): asking for 6 items gives 6
    assert len(recommender.recommend([["item1", "item2"]], k=6)[0]) == 6


def test_k_that_is_not_a_positive_count(item_tokenizer, tiny_model):
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, GenRecConfig(num_beams=4, top_k=2))
    history = [[item_tokenizer.item_ids[0]]]
    for k in (0, -3, 2.5):  # 0 used to fall back to the default K silently
        with pytest.raises(ValueError, match="k must be a positive int"):
            recommender.recommend(history, k=k)


def test_repeated_rows_of_one_item_in_an_item_file(tmp_path, caplog):
    from hf_genrec.data import DataFormatError, read_recbole_atomic

    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\nu\ta\nu\tb\n")
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token\na\tA\nb\tB\na\tA\n")
    with caplog.at_level(logging.WARNING, logger="hf_genrec.data.recbole"):
        data = read_recbole_atomic(tmp_path / "x.inter", tmp_path / "x.item")
    assert data.items["title"] == ["A", "B"]
    assert "1 item rows repeat an earlier row of the same item word for word" in caplog.text
    (tmp_path / "x.item").write_text("item_id:token\ttitle:token\na\tA\nb\tB\na\tAnother title\n")
    with pytest.raises(DataFormatError, match=r"x\.item, line 4: item_id 'a' already has a row on line 2"):
        read_recbole_atomic(tmp_path / "x.inter", tmp_path / "x.item")
