import numpy as np
import pytest
from transformers import AutoTokenizer

from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, level_token, minimal_t5_tokenizer


def test_level_tokens_are_added_as_special_tokens(item_tokenizer, semantic_ids):
    tok = item_tokenizer.tokenizer
    n_tokens = sum(semantic_ids.codebook_sizes)
    assert len(tok) == 4 + n_tokens
    assert level_token(0, 3) == "<a_3>" and level_token(2, 0) == "<c_0>" and level_token(27, 1) == "<l27_1>"
    # The tokenizer itself splits a spelled ID into exactly these tokens.
    spelled = item_tokenizer.item_spelling("item5")
    assert tok(spelled)["input_ids"] == item_tokenizer.encode_target("item5")


def test_item_token_ids_match_codes(item_tokenizer, semantic_ids):
    tok = item_tokenizer.tokenizer
    row = semantic_ids.lookup["item7"]
    expected = [tok.convert_tokens_to_ids(level_token(lv, c)) for lv, c in enumerate(semantic_ids.codes[row])]
    assert item_tokenizer.encode_target("item7") == expected + [tok.eos_token_id]
    assert item_tokenizer.id_length == semantic_ids.n_levels + 1


def test_history_encoding_and_truncation(item_tokenizer):
    n = item_tokenizer.id_length - 1
    ids = item_tokenizer.encode_history(["item1", "item2", "item3"], max_items=2)
    assert len(ids) == 2 * n + 1 and ids[-1] == item_tokenizer.eos_token_id
    assert ids[:n] == item_tokenizer.encode_target("item2")[:-1]


def test_decode_index_round_trip_and_invalid(item_tokenizer):
    rows = item_tokenizer.item_token_ids.tolist()
    assert item_tokenizer.decode_index(rows) == list(range(item_tokenizer.num_items))
    pad = item_tokenizer.pad_token_id
    assert item_tokenizer.decode_index([[pad] + rows[3]]) == [3]  # decoder start stripped
    assert item_tokenizer.decode_index([rows[3] + [-100, -100]]) == [3]  # label padding stripped
    assert item_tokenizer.decode_index([rows[3][:-1]]) == [-1]  # no EOS: not an item


def test_unknown_and_empty_histories_fail_clearly(item_tokenizer):
    with pytest.raises(ValueError, match="Unknown item id 'nope'"):
        item_tokenizer.encode_history(["item1", "nope"])
    with pytest.raises(ValueError, match="Empty history"):
        item_tokenizer.encode_history([])


def test_save_load_round_trip(item_tokenizer, tmp_path):
    item_tokenizer.save_pretrained(tmp_path)
    loaded = ItemTokenizer.from_pretrained(tmp_path)
    np.testing.assert_array_equal(loaded.item_token_ids, item_tokenizer.item_token_ids)
    assert loaded.item_ids == item_tokenizer.item_ids
    # A plain AutoTokenizer sees the ID tokens too.
    plain = AutoTokenizer.from_pretrained(tmp_path)
    assert plain.convert_tokens_to_ids("<b_2>") == item_tokenizer.tokenizer.convert_tokens_to_ids("<b_2>")
    assert not list(tmp_path.rglob("*.pkl")) and not list(tmp_path.rglob("*.bin"))


def test_mismatched_tokenizer_and_item_map_is_an_error(item_tokenizer, tmp_path):
    item_tokenizer.save_pretrained(tmp_path)
    bigger = from_codes(np.arange(30).reshape(10, 3), [f"x{i}" for i in range(10)])
    bigger.save(tmp_path / "semantic_ids")
    with pytest.raises(ValueError, match="different runs"):
        ItemTokenizer.from_pretrained(tmp_path)


def test_missing_item_map_is_an_error(tmp_path):
    minimal_t5_tokenizer().save_pretrained(tmp_path)
    with pytest.raises(FileNotFoundError, match="not an hf_genrec checkpoint"):
        ItemTokenizer.from_pretrained(tmp_path)
