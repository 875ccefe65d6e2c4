"""Training rows written to an Arrow file in chunks (``arrow_path``) are the in-memory rows, memory-mapped."""

import pytest

from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.examples import tokenize_causal_sequences, tokenize_sequences

from .conftest import cyclic_sequences, make_semantic_ids


@pytest.mark.parametrize("tokenize", [tokenize_sequences, tokenize_causal_sequences])
def test_arrow_rows_equal_in_memory_rows_and_are_memory_mapped(tokenize, tmp_path):
    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)
    sequences = cyclic_sequences(30, 40, 13)  # long enough for several windows per user at max_history=5
    in_memory = tokenize(sequences, tokenizer, max_history=5)
    # a generator: the sequences need not be held either
    on_disk = tokenize((s for s in sequences), tokenizer, max_history=5, arrow_path=tmp_path / "rows" / "a.arrow")
    assert on_disk.cache_files and on_disk.cache_files[0]["filename"].endswith("a.arrow")
    assert not in_memory.cache_files
    assert on_disk.features == in_memory.features
    assert on_disk.to_dict() == in_memory.to_dict()
    assert len(on_disk) > len(sequences)


def test_arrow_rows_without_targets_are_refused(tmp_path):
    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)
    with pytest.raises(ValueError, match="No training targets"):
        tokenize_sequences([["item0"]], tokenizer, arrow_path=tmp_path / "empty.arrow")


def test_recipes_put_rows_on_disk_above_their_threshold():
    from hf_genrec.recipes.arguments import DataArguments
    from hf_genrec.recipes.backbone import rows_on_disk

    sequences = [["a", "b", "c"], ["d", "e"]]  # 5 interactions
    assert rows_on_disk(sequences, DataArguments(rows_on_disk_above=4))
    assert not rows_on_disk(sequences, DataArguments(rows_on_disk_above=5))
    assert rows_on_disk(sequences, DataArguments(rows_on_disk_above=0))
    assert not rows_on_disk(sequences, DataArguments(rows_on_disk_above=-1))
    assert not rows_on_disk(sequences, DataArguments())  # the default threshold is for large data
    with pytest.raises(ValueError, match="rows_on_disk_above must be -1"):
        DataArguments(rows_on_disk_above=-2)  # refused before any data is read
