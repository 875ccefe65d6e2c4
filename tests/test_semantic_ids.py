"""SemanticIDs container, collision level, from_codes, diagnostics and files."""

import json
import math

import numpy as np
import pytest

from hf_genrec.semantic_ids import SemanticIDs, add_collision_level, compute_diagnostics, from_codes


# ------------------------------------------------------------------ add_collision_level
def test_add_collision_level_numbers_shared_tuples_in_row_order():
    codes = np.array([[1, 2], [3, 4], [1, 2], [5, 6], [1, 2], [3, 4]])
    out = add_collision_level(codes)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out[:, :2], codes)
    np.testing.assert_array_equal(out[:, 2], [0, 0, 1, 0, 2, 1])
    assert len(np.unique(out, axis=0)) == len(out)


def test_add_collision_level_unique_tuples_get_zero():
    codes = np.arange(12).reshape(6, 2)
    np.testing.assert_array_equal(add_collision_level(codes)[:, -1], np.zeros(6))


def test_add_collision_level_is_deterministic_on_random_codes():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, size=(500, 2))
    out = add_collision_level(codes)
    np.testing.assert_array_equal(out, add_collision_level(codes))
    assert len(np.unique(out, axis=0)) == 500
    # reference: a plain loop
    seen = {}
    expected = []
    for row in map(tuple, codes):
        expected.append(seen.get(row, 0))
        seen[row] = seen.get(row, 0) + 1
    np.testing.assert_array_equal(out[:, -1], expected)


@pytest.mark.parametrize(
    "codes, message",
    [
        (np.array([1, 2, 3]), "2-D"),
        (np.array([[0.0, 1.0]]), "integer dtype"),
        (np.array([[0, -1]]), "non-negative"),
        (np.zeros((0, 2), dtype=int), "empty"),
    ],
)
def test_add_collision_level_rejects_bad_codes(codes, message):
    with pytest.raises(ValueError, match=message):
        add_collision_level(codes)


# ------------------------------------------------------------------ diagnostics on a hand-made case
HAND_CODES = np.array([[0, 0], [0, 1], [0, 1], [1, 0]])
HAND_IDS = ["a", "b", "c", "d"]


def test_diagnostics_hand_made_case():
    ids = from_codes(HAND_CODES, HAND_IDS, codebook_sizes=[4, 2])
    assert ids.has_collision_level and ids.n_levels == 3
    assert ids.codebook_sizes == [4, 2, 2]  # the collision level needs 2 codes: two items share (0, 1)
    np.testing.assert_array_equal(ids.codes[:, 2], [0, 0, 1, 0])
    diag = ids.diagnostics
    level0, level1, level2 = diag["levels"]
    assert level0["used_codes"] == 2 and level0["usage"] == 0.5
    assert level0["perplexity"] == pytest.approx(math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25))))
    assert level0["items_per_prefix_mean"] == 2.0 and level0["items_per_prefix_max"] == 3
    assert level1["usage"] == 1.0
    assert level1["perplexity"] == pytest.approx(2.0)  # codes 0,1,1,0
    assert level1["items_per_prefix_mean"] == pytest.approx(4 / 3) and level1["items_per_prefix_max"] == 2
    assert level2["collision_level"] and level2["items_per_prefix_max"] == 1
    assert diag["collision_rate_before"] == 0.5
    assert diag["colliding_items_before"] == 2
    assert diag["unique_tuples_before"] == 3
    assert diag["max_items_per_tuple"] == 2
    assert diag["collision_rate_after"] == 0.0
    assert diag["extra_levels"] == 1
    json.dumps(diag)  # JSON-serialisable


def test_compute_diagnostics_without_collision_level():
    diag = compute_diagnostics(np.array([[0, 1], [1, 1], [2, 0]]), [4, 2], has_collision_level=False)
    assert diag["collision_rate_before"] == 0.0 and diag["extra_levels"] == 0
    assert [level["used_codes"] for level in diag["levels"]] == [3, 2]


# ------------------------------------------------------------------ from_codes
def test_per_item_collision_codes_give_every_item_a_last_code_of_its_own():
    shared = from_codes(HAND_CODES, HAND_IDS, add_collision_level=True)
    per_item = shared.with_item_collision_codes()
    np.testing.assert_array_equal(per_item.codes[:, :-1], shared.codes[:, :-1])  # the semantic levels stay
    np.testing.assert_array_equal(per_item.codes[:, -1], np.arange(len(HAND_IDS)))
    assert per_item.codebook_sizes == [*shared.codebook_sizes[:-1], len(HAND_IDS)]
    assert per_item.item_ids == shared.item_ids and per_item.has_collision_level
    assert per_item.diagnostics["per_item_collision_codes"] is True
    assert not np.array_equal(shared.codes[:, -1], per_item.codes[:, -1])  # TIGER's numbering restarts per tuple
    with pytest.raises(ValueError, match="these IDs have none"):
        from_codes(np.array([[0, 1], [1, 0]]), ["x", "y"]).with_item_collision_codes()


def test_from_codes_adds_collision_level_only_when_needed():
    unique = from_codes(np.array([[0, 1], [1, 0]]), ["x", "y"])
    assert not unique.has_collision_level and unique.n_levels == 2 and unique.codebook_sizes == [2, 2]
    assert unique.scheme == "custom"
    forced = from_codes(np.array([[0, 1], [1, 0]]), ["x", "y"], add_collision_level=True)
    assert forced.has_collision_level and forced.codebook_sizes == [2, 2, 1]
    np.testing.assert_array_equal(forced.codes[:, -1], [0, 0])
    with pytest.raises(ValueError, match="add_collision_level=True"):
        from_codes(HAND_CODES, HAND_IDS, add_collision_level=False)


@pytest.mark.parametrize(
    "codes, item_ids, kwargs, message",
    [
        (np.array([0, 1]), ["a", "b"], {}, "2-D"),
        (np.array([[0.5], [1.0]]), ["a", "b"], {}, "astype"),
        (np.array([[0], [-2]]), ["a", "b"], {}, "non-negative"),
        (np.array([[0], [1]]), ["a", "b", "c"], {}, "2 rows but item_ids has 3"),
        (np.array([[0], [1]]), ["a", "a"], {}, "duplicated"),
        (np.array([[0], [1]]), ["a", "b"], {"codebook_sizes": [2, 2]}, "one size per level"),
        (np.array([[0], [5]]), ["a", "b"], {"codebook_sizes": [4]}, "codebook size"),
        (np.array([[0], [1]]), ["a", "b"], {"add_collision_level": "yes"}, "add_collision_level"),
    ],
)
def test_from_codes_rejects_bad_input(codes, item_ids, kwargs, message):
    with pytest.raises(ValueError, match=message):
        from_codes(codes, item_ids, **kwargs)


def test_semantic_ids_rejects_shared_tuples_and_out_of_range_codes():
    with pytest.raises(ValueError, match="unique per item"):
        SemanticIDs(codes=HAND_CODES, codebook_sizes=[2, 2], item_ids=HAND_IDS)
    with pytest.raises(ValueError, match="codebook_sizes\\[1\\]"):
        SemanticIDs(codes=np.array([[0, 3]]), codebook_sizes=[1, 2], item_ids=["a"])


# ------------------------------------------------------------------ container and files
def test_lookup_codes_of_repr_and_summary():
    ids = from_codes(HAND_CODES, HAND_IDS, codebook_sizes=[4, 2])
    assert ids.lookup == {"a": 0, "b": 1, "c": 2, "d": 3}
    assert ids.codes_of("c") == (0, 1, 1)
    with pytest.raises(KeyError, match="unknown item id"):
        ids.codes_of("zzz")
    assert len(ids) == 4 and ids.n_items == 4
    assert "n_items=4" in repr(ids) and "'a'" not in repr(ids)
    summary = ids.summary()
    assert "2 + 1 collision level" in summary
    assert "50.0%" in summary  # level-0 usage and the collision rate
    assert "2 (collision)" in summary


def test_save_load_round_trip(tmp_path):
    ids = from_codes(HAND_CODES, HAND_IDS, codebook_sizes=[4, 2], scheme="custom")
    ids.diagnostics["fit_seconds"] = 1.5
    ids.save(tmp_path / "ids")
    files = sorted(p.name for p in (tmp_path / "ids").iterdir())
    assert files == ["codes.safetensors", "item_ids.json", "semantic_ids.json"]
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))
    loaded = SemanticIDs.load(tmp_path / "ids")
    np.testing.assert_array_equal(loaded.codes, ids.codes)
    assert loaded.codes.dtype == np.int64
    assert loaded.item_ids == ids.item_ids
    assert loaded.codebook_sizes == ids.codebook_sizes
    assert loaded.scheme == ids.scheme and loaded.has_collision_level == ids.has_collision_level
    assert loaded.diagnostics == ids.diagnostics


def test_load_drops_unknown_keys_with_a_warning(tmp_path, caplog):
    ids = from_codes(np.array([[0], [1]]), ["a", "b"])
    ids.save(tmp_path)
    metadata = json.loads((tmp_path / "semantic_ids.json").read_text())
    metadata["from_the_future"] = 1
    (tmp_path / "semantic_ids.json").write_text(json.dumps(metadata))
    with caplog.at_level("WARNING"):
        loaded = SemanticIDs.load(tmp_path)
    assert "from_the_future" in caplog.text and "Upgrade" in caplog.text
    np.testing.assert_array_equal(loaded.codes, ids.codes)


def test_load_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="semantic_ids.json"):
        SemanticIDs.load(tmp_path)
