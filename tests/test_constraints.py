import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_genrec.decoding.generate import generate_items
from hf_genrec.decoding.prefix_allowed import ItemTrie, prefix_allowed_tokens_fn
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5


def test_trie_next_tokens():
    trie = ItemTrie([[5, 6, 1], [5, 7, 1], [8, 1]])
    assert sorted(trie.next_tokens([])) == [5, 8]
    assert sorted(trie.next_tokens([5])) == [6, 7]
    assert trie.next_tokens([8]) == [1]
    assert trie.next_tokens([8, 1]) == []
    assert trie.next_tokens([9]) is None
    assert [5, 6, 1] in trie and [5, 6] not in trie and len(trie) == 3


def test_trie_rejects_duplicates():
    with pytest.raises(ValueError, match="share the spelling"):
        ItemTrie([[1, 2, 1], [1, 2, 1]])


def test_prefix_fn_strips_decoder_start():
    fn = prefix_allowed_tokens_fn(ItemTrie([[5, 6, 1], [5, 7, 1]]), pad_token_id=0)
    assert fn(0, torch.tensor([0])) == [5]
    assert sorted(fn(0, torch.tensor([0, 5]))) == [6, 7]
    assert fn(0, torch.tensor([0, 5, 6, 1])) == [0]  # finished: only padding
    assert fn(0, torch.tensor([0, 9])) == [0]  # dead beam


def _exhaustive_scores(model, item_tokenizer, input_ids):
    """Log-probability of every item spelling for one history, by teacher forcing."""
    labels = torch.tensor(item_tokenizer.item_token_ids)
    n = len(labels)
    with torch.no_grad():
        out = model(input_ids=input_ids.expand(n, -1), labels=labels)
    return torch.log_softmax(out.logits, -1).gather(-1, labels[..., None]).squeeze(-1).sum(-1)


def test_generate_items_returns_valid_items_with_exact_scores(item_tokenizer, tiny_model):
    history = item_tokenizer.encode_history(["item1", "item2"])
    input_ids = torch.tensor([history])
    n_items = item_tokenizer.num_items
    # With as many beams as items, beam search over the trie is exhaustive: it must return the true top-k.
    indices, scores = generate_items(tiny_model, item_tokenizer, input_ids, num_beams=n_items, k=5)
    exact = _exhaustive_scores(tiny_model, item_tokenizer, input_ids)
    top = exact.topk(5)
    assert indices[0].tolist() == top.indices.tolist()
    torch.testing.assert_close(scores[0], top.values, atol=1e-4, rtol=0)


@settings(max_examples=15, deadline=None)
@given(
    n_items=st.integers(2, 60),
    n_levels=st.integers(1, 4),
    codebook_size=st.integers(2, 9),
    seed=st.integers(0, 10_000),
)
def test_constrained_decoding_never_returns_an_invalid_item(n_items, n_levels, codebook_size, seed):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook_size, size=(n_items, n_levels))
    ids = from_codes(codes, [f"i{i}" for i in range(n_items)], codebook_sizes=[codebook_size] * n_levels)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    model = build_t5_model(item_tokenizer, seed=seed, **TINY_T5).eval()
    histories = [item_tokenizer.encode_history([f"i{j}" for j in rng.integers(0, n_items, size=3)]) for _ in range(3)]
    k = min(5, n_items)
    indices, scores = generate_items(model, item_tokenizer, torch.tensor(histories), num_beams=max(k, 8), k=k)
    assert (indices >= 0).all() and (indices < n_items).all()
    assert torch.isfinite(scores).all()
    for row in indices.tolist():
        assert len(set(row)) == len(row)  # no item twice
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()  # best first


def test_k_larger_than_beams_is_an_error(item_tokenizer, tiny_model):
    with pytest.raises(ValueError, match="num_beams >= k"):
        generate_items(tiny_model, item_tokenizer, torch.tensor([[1]]), num_beams=4, k=5)
