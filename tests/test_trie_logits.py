"""The vectorised trie and the shared-cross-attention beam search return exactly what the reference returns."""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hf_genrec.decoding.beam_search import shared_beam_search
from hf_genrec.decoding.generate import build_trie_index, generate_items
from hf_genrec.decoding.prefix_allowed import ItemTrie, prefix_allowed_tokens_fn
from hf_genrec.decoding.trie import TrieIndex, TrieLogitsProcessor
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5, random_codes

PAD, EOS = 0, 1


def spellings_of(codes):
    """Token spellings of code rows: code c is token c + 2 (after pad and EOS), then EOS."""
    return [[int(c) + 2 for c in row if c >= 0] + [EOS] for row in codes]


def random_prefixes(rng, spellings, n, length):
    """Prefixes on the trie (of real spellings, maybe finished), and random ones that fall off it."""
    rows = []
    for _ in range(n):
        if rng.random() < 0.7:
            spelling = spellings[int(rng.integers(len(spellings)))]
            rows.append((spelling + [PAD] * length)[:length])
        else:
            rows.append([int(t) for t in rng.integers(0, 8, size=length)])
    return torch.tensor(rows, dtype=torch.long).view(n, length)


@settings(max_examples=60, deadline=None)
@given(
    n_items=st.integers(1, 60),
    max_len=st.integers(1, 5),
    alphabet=st.integers(2, 7),
    variable=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_mask_matches_the_reference_function(n_items, max_len, alphabet, variable, seed):
    rng = np.random.default_rng(seed)
    spellings = spellings_of(random_codes(rng, n_items, max_len, alphabet, variable))
    index = TrieIndex(spellings, vocab_size=12, pad_token_id=PAD)
    reference = prefix_allowed_tokens_fn(ItemTrie(spellings), pad_token_id=PAD)
    for length in range(max_len + 3):
        prefixes = random_prefixes(rng, spellings, 16, length)
        with_start = torch.cat([torch.full((16, 1), PAD), prefixes], dim=1)
        mask = index.allowed_mask(prefixes)
        scores = torch.randn(16, 12)
        processed = TrieLogitsProcessor(index)(with_start, scores)
        for row in range(16):
            expected = sorted(reference(0, with_start[row]))
            assert torch.nonzero(mask[row]).flatten().tolist() == expected
            # same scores where allowed, -inf elsewhere: what generate's PrefixConstrainedLogitsProcessor returns
            assert torch.equal(processed[row, expected], scores[row, expected])
            assert torch.isinf(processed[row]).sum() == 12 - len(expected)


def test_index_is_compact_and_reports_bad_input():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(20_000, 4))
    ids = from_codes(codes, [str(i) for i in range(20_000)], add_collision_level=False, codebook_sizes=[256] * 4)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    index = build_trie_index(item_tokenizer)
    assert index.keys.dtype == torch.int32
    assert index.nbytes / len(index) <= 24
    with pytest.raises(ValueError, match="share a spelling"):
        TrieIndex([[2, 3, EOS], [2, 3, EOS]], vocab_size=8, pad_token_id=PAD)
    with pytest.raises(ValueError, match="beyond vocab_size"):
        TrieIndex([[2, 30, EOS]], vocab_size=8, pad_token_id=PAD)


def test_processor_pads_a_wider_output_layer_and_refuses_a_narrower_one():
    index = TrieIndex([[2, 3, EOS]], vocab_size=6, pad_token_id=PAD)
    start = torch.zeros(1, 1, dtype=torch.long)
    wide = TrieLogitsProcessor(index)(start, torch.zeros(1, 8))
    assert torch.isfinite(wide[0]).tolist() == [False, False, True] + [False] * 5
    with pytest.raises(ValueError, match="resize the model's embeddings"):
        TrieLogitsProcessor(index)(start, torch.zeros(1, 4))


def _catalogue_model(codes, seed):
    ids = from_codes(
        codes, [f"i{i}" for i in range(len(codes))], codebook_sizes=[int(codes.max()) + 1] * codes.shape[1]
    )
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids)
    return item_tokenizer, build_t5_model(item_tokenizer, seed=seed, **TINY_T5).eval()


def _histories(item_tokenizer, rng, batch):
    n = item_tokenizer.num_items
    rows = [
        item_tokenizer.encode_history([f"i{j}" for j in rng.integers(0, n, size=int(rng.integers(1, 6)))])
        for _ in range(batch)
    ]
    width = max(map(len, rows))
    input_ids = torch.tensor([r + [PAD] * (width - len(r)) for r in rows])
    return input_ids, (input_ids != PAD).long()


@settings(
    max_examples=int(os.environ.get("HF_GENREC_HYPOTHESIS_EXAMPLES", 20)),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    n_items=st.integers(3, 80),
    levels=st.integers(1, 3),
    size=st.integers(2, 9),
    variable=st.booleans(),
    num_beams=st.sampled_from([4, 10]),
    seed=st.integers(0, 2**16),
)
def test_all_decoding_methods_agree(n_items, levels, size, variable, num_beams, seed):
    """Reference fn, vectorised processor in stock generate, and the fast path: same items, same scores."""
    rng = np.random.default_rng(seed)
    codes = random_codes(rng, n_items, levels, size, variable)
    item_tokenizer, model = _catalogue_model(codes, seed % 5)
    input_ids, attention_mask = _histories(item_tokenizer, rng, batch=3)
    k = min(num_beams, 4)
    results = {
        method: generate_items(
            model, item_tokenizer, input_ids, attention_mask, num_beams=num_beams, k=k, method=method
        )
        for method in ("reference", "vectorised", "fast")
    }
    ref_items, ref_scores = results["reference"]
    assert torch.equal(results["vectorised"][0], ref_items)
    assert torch.equal(results["vectorised"][1], ref_scores)
    fast_items, fast_scores = results["fast"]
    assert torch.equal(fast_items, ref_items)
    valid = ref_items >= 0
    torch.testing.assert_close(fast_scores[valid], ref_scores[valid], atol=1e-4, rtol=1e-4)
    if len(codes) >= k:
        assert valid.all()


def test_fast_path_matches_generate_on_a_larger_catalogue():
    rng = np.random.default_rng(3)
    codes = rng.integers(0, 16, size=(600, 3))
    item_tokenizer, model = _catalogue_model(codes, seed=2)
    input_ids, attention_mask = _histories(item_tokenizer, rng, batch=8)
    ref_items, ref_scores = generate_items(
        model, item_tokenizer, input_ids, attention_mask, num_beams=20, k=20, method="reference"
    )
    items, scores = generate_items(model, item_tokenizer, input_ids, attention_mask, num_beams=20, k=20)
    assert torch.equal(items, ref_items) and (items >= 0).all()
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-4)


def test_shared_beam_search_refuses_other_models():
    from transformers import BartConfig, BartForConditionalGeneration

    bart = BartForConditionalGeneration(
        BartConfig(vocab_size=16, d_model=8, encoder_layers=1, decoder_layers=1, encoder_attention_heads=1,
                   decoder_attention_heads=1, encoder_ffn_dim=8, decoder_ffn_dim=8)
    )  # fmt: skip
    index = TrieIndex([[2, EOS]], vocab_size=16, pad_token_id=PAD)
    with pytest.raises(ValueError, match="supports T5"):
        shared_beam_search(
            bart, torch.tensor([[2, EOS]]), None, TrieLogitsProcessor(index), num_beams=2, num_return_sequences=1,
            max_new_tokens=2, decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD,
        )  # fmt: skip


@pytest.mark.parametrize("variable", [False, True])
def test_synced_gpus_idle_steps_change_nothing(variable, monkeypatch):
    """Under ZeRO-3/FSDP a process that finished early keeps stepping the decoder (the weights are gathered inside
    every forward pass) until all are done. Simulated here: a peer that decodes the full length every time."""
    from hf_genrec.decoding import beam_search

    rng = np.random.default_rng(0)
    if variable:  # one-code items and two long ones: beam search finishes before the longest spelling's length
        codes = np.array([[c, -1, -1, -1] for c in range(12)] + [[12, 0, 1, 2], [12, 3, 4, 5]])
    else:
        codes = random_codes(rng, 60, 4, 3, variable=False)
    item_tokenizer, model = _catalogue_model(codes, seed=0)
    input_ids, attention_mask = _histories(item_tokenizer, rng, batch=1 if variable else 4)
    expected = generate_items(model, item_tokenizer, input_ids, attention_mask, num_beams=6, k=5, synced_gpus=False)

    steps, rounds = [], []
    original_step = beam_search._T5Decoder.step

    def counting_step(self, tokens, position):
        steps.append(position)
        return original_step(self, tokens, position)

    def slow_peer(done, device):  # the other process decodes every position of the longest spelling
        rounds.append(done)
        return done and len(rounds) >= item_tokenizer.id_length

    monkeypatch.setattr(beam_search._T5Decoder, "step", counting_step)
    monkeypatch.setattr(beam_search, "_all_processes_done", slow_peer)
    synced = generate_items(model, item_tokenizer, input_ids, attention_mask, num_beams=6, k=5, synced_gpus=True)
    assert torch.equal(synced[0], expected[0]) and torch.equal(synced[1], expected[1])
    assert steps == list(range(item_tokenizer.id_length))  # one forward pass per position, none past the end
    if variable:
        assert rounds.index(True) < len(rounds) - 1  # this process was done early and kept stepping
