"""leave_one_out and kcore_filter on tiny data with exact expected rows; InteractionData basics."""

from __future__ import annotations

import datasets
import pytest

from hf_genrec.data import InteractionData, kcore_filter, leave_one_out


def rows(dataset: datasets.Dataset) -> list[tuple]:
    return [(r["user_id"], r["history"], r["target"]) for r in dataset]


@pytest.fixture
def toy() -> InteractionData:
    return InteractionData.from_sequences(
        "toy",
        {"u1": ["a", "b", "c", "d", "e"], "u2": ["x", "y", "z"]},
        timestamps={"u1": [1, 2, 3, 4, 5], "u2": None},
        item_metadata={"a": {"title": "A", "categories": ["cat"], "price": 2}, "z": {"brand": "Zed", "year": 1999}},
    )


def test_from_sequences_builds_the_column_contract(toy):
    assert toy.sequences.column_names == ["user_id", "item_ids", "timestamps"]
    assert toy.sequences["timestamps"] == [[1, 2, 3, 4, 5], None]
    assert toy.items.column_names == ["item_id", "title", "brand", "categories", "price", "attributes", "year"]
    assert toy.items["item_id"] == ["a", "b", "c", "d", "e", "x", "y", "z"]
    assert toy.items[0] == {
        "item_id": "a", "title": "A", "brand": None, "categories": ["cat"], "price": 2.0, "attributes": [], "year": None,
    }  # fmt: skip
    assert toy.items[7]["brand"] == "Zed" and toy.items[7]["year"] == 1999
    assert (toy.num_users, toy.num_items, toy.num_interactions) == (2, 8, 8)
    assert toy.describe() == (
        "toy: 2 users, 8 items, 8 interactions (mean length 4.00, density 50.0000%, timestamps for 1/2 users, "
        "titles for 1/8 items)"
    )


def test_leave_one_out_exact_rows(toy):
    splits = leave_one_out(toy, max_history=2)
    assert list(splits) == ["train", "validation", "test"]
    assert rows(splits["train"]) == [("u1", ["a"], "b"), ("u1", ["a", "b"], "c")]
    assert rows(splits["validation"]) == [("u1", ["b", "c"], "d"), ("u2", ["x"], "y")]
    assert rows(splits["test"]) == [("u1", ["c", "d"], "e"), ("u2", ["x", "y"], "z")]
    for split in splits.values():
        assert split.column_names == ["user_id", "history", "target"]
        assert split.features["target"] == datasets.Value("string")


def test_leave_one_out_default_history_keeps_everything_short(toy):
    splits = leave_one_out(toy)
    assert rows(splits["test"]) == [("u1", ["a", "b", "c", "d"], "e"), ("u2", ["x", "y"], "z")]
    assert len(splits["train"]) == toy.num_interactions - 3 * toy.num_users


def test_leave_one_out_respects_row_selection(toy):
    reordered = InteractionData("toy", toy.sequences.select([1, 0]), toy.items)
    assert rows(leave_one_out(reordered, 3)["test"]) == [("u2", ["x", "y"], "z"), ("u1", ["b", "c", "d"], "e")]


def test_leave_one_out_refuses_short_users():
    data = InteractionData.from_sequences("short", {"u1": ["a", "b", "c"], "u2": ["a", "b"], "u3": ["c"]})
    with pytest.raises(ValueError) as info:
        leave_one_out(data)
    message = str(info.value)
    assert "2 of 3 users" in message and "fewer than 3" in message and "min_count" in message
    assert "'u2'" in message
    with pytest.raises(ValueError, match="max_history"):
        leave_one_out(InteractionData.from_sequences("ok", {"u": ["a", "b", "c"]}), max_history=0)


def test_kcore_filter_is_iterative_and_keeps_order_and_timestamps():
    data = InteractionData.from_sequences(
        "k",
        {"u1": ["c", "a", "b"], "u2": ["a", "b"], "u3": ["c", "d"], "u4": ["a"]},
        timestamps={"u1": [1, 2, 3], "u2": [4, 5], "u3": [6, 7], "u4": None},
        item_metadata={"a": {"title": "A"}, "b": {"title": "B", "rank": 2.0}},
    )
    # Round 1 drops u4 (1 item) and d (1 user); then u3 has 1 item, then c has 1 interaction: only a and b remain.
    core = kcore_filter(data, 2)
    assert core.name == "k"
    assert core.sequences.to_list() == [
        {"user_id": "u1", "item_ids": ["a", "b"], "timestamps": [2, 3]},
        {"user_id": "u2", "item_ids": ["a", "b"], "timestamps": [4, 5]},
    ]
    assert core.items.to_list() == [
        {"item_id": "a", "title": "A", "brand": None, "categories": [], "price": None, "attributes": [], "rank": None},
        {"item_id": "b", "title": "B", "brand": None, "categories": [], "price": None, "attributes": [], "rank": 2.0},
    ]
    assert kcore_filter(data, 1).sequences.to_list() == data.sequences.to_list()
    # an empty core is an error that says how far the data is from it and what to change (nothing to train on)
    with pytest.raises(ValueError, match=r"4-core of 'k' is empty.*longest user 3 items.*smaller min_count"):
        kcore_filter(data, 4)
    with pytest.raises(ValueError, match="min_count"):
        kcore_filter(data, 0)


def test_kcore_filter_keeps_extra_user_columns_and_reorders_items_by_first_appearance():
    base = InteractionData.from_sequences("k", {"u1": ["z", "a", "a"], "u2": ["a", "b", "b"], "u3": ["z"]})
    sequences = base.sequences.add_column("age", ["10", "20", "30"])
    core = kcore_filter(InteractionData("k", sequences, base.items), 2)
    # u3 has one interaction, so it goes; that leaves z with one, so z goes too.
    assert core.sequences.to_list() == [
        {"user_id": "u1", "item_ids": ["a", "a"], "timestamps": None, "age": "10"},
        {"user_id": "u2", "item_ids": ["a", "b", "b"], "timestamps": None, "age": "20"},
    ]
    assert core.items["item_id"] == ["a", "b"]


def test_leave_one_out_keeps_the_most_recent_train_targets():
    data = InteractionData.from_sequences("t", {"u": [f"i{k}" for k in range(8)], "v": ["a", "b", "c", "d"]})
    splits = leave_one_out(data, max_history=3, max_train_targets_per_user=2)
    # u has train targets i1..i5; the two most recent are i4 and i5. v (4 items) has exactly one, b.
    assert splits["train"]["target"][:] == ["i4", "i5", "b"]
    assert splits["train"]["history"][:][0] == ["i1", "i2", "i3"]
    assert splits["test"]["target"][:] == ["i7", "d"]
    with pytest.raises(ValueError, match="max_train_targets_per_user"):
        leave_one_out(data, max_train_targets_per_user=0)
