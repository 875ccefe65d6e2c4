"""Decoder-only models (GPT-2, Llama, Qwen2) rank items through `generate_items` like the T5: the reference
``prefix_allowed_tokens_fn``, stock ``generate`` with the `TrieLogitsProcessor` and the fast path (each prompt run
once, its cache copied to the beams) return the same items with the same scores, with histories of different lengths
in one batch (left padding, position ids from the attention mask), with the history's items excluded and a prior
fused in, and when the catalogue has fewer items than ``k``."""

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig, Qwen2Config

from hf_genrec.decoding.beam_search import supports_shared_beam_search
from hf_genrec.decoding.causal_lm_decoder import left_pad
from hf_genrec.decoding.fusion import TransitionFusionLogitsProcessor
from hf_genrec.decoding.generate import build_trie, build_trie_index, generate_items, item_spellings
from hf_genrec.models.causal_lm import build_causal_lm
from hf_genrec.models.prior import ItemTransitions
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import encode_histories, searches_without_dense_steps

BACKBONES = ("llama", "gpt2", "qwen2")
METHODS = ("reference", "vectorised", "fast")


def _catalogue(n_items: int, codebook_size: int, seed: int = 0) -> ItemTokenizer:
    features = np.random.default_rng(seed).normal(size=(n_items, 8)).astype("float32")
    ids = RQKMeans(n_levels=3, codebook_size=codebook_size, pca_dim=None, seed=seed).fit(
        features, [f"i{i}" for i in range(n_items)]
    )
    return ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)


def _causal_lm(backbone: str, item_tokenizer: ItemTokenizer, seed: int = 0):
    """A tiny random causal LM over the item tokenizer, its weights wide enough (initializer_range 0.3) that the
    next-token distributions are peaked and depend on the position ids: a wrong position or mask changes the
    ranking."""
    ids = dict(
        vocab_size=len(item_tokenizer.tokenizer), pad_token_id=item_tokenizer.pad_token_id,
        eos_token_id=item_tokenizer.eos_token_id, bos_token_id=item_tokenizer.pad_token_id, initializer_range=0.3,
    )  # fmt: skip
    if backbone == "gpt2":
        config = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_inner=64, n_positions=128, **ids)
    else:
        sizes = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
        config_class, heads = {"llama": (LlamaConfig, 1), "qwen2": (Qwen2Config, 2)}[backbone]
        config = config_class(num_key_value_heads=heads, max_position_embeddings=128, **sizes, **ids)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def catalogue():
    return _catalogue(300, codebook_size=8)


@pytest.fixture(scope="module", params=BACKBONES)
def model(request, catalogue):
    return _causal_lm(request.param, catalogue)


def _histories(catalogue, batch: int = 5, seed: int = 0) -> list[list[str]]:
    """Histories of 1 to 8 items: one batch needs padding of different widths."""
    rng = np.random.default_rng(seed)
    lengths = [1, 8, *rng.integers(2, 8, size=batch - 2).tolist()]
    return [[f"i{j}" for j in rng.integers(0, catalogue.num_items, size=n)] for n in lengths]


def _every_path(model, catalogue, input_ids, mask, **search) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    trie = build_trie(catalogue)
    return {
        method: generate_items(model, catalogue, input_ids, mask, method=method, trie=trie, **search)
        for method in METHODS
    }


def _assert_same(result, expected):
    torch.testing.assert_close(result[1], expected[1], rtol=0, atol=2e-5)
    assert torch.equal(result[0], expected[0])


def _every_item_score(model, catalogue, histories) -> torch.Tensor:
    """``[batch, n_items]`` each item's log-probability after each history, by one unpadded forward pass over the
    history then the item's spelling (no search, no padding, default positions): what the searches must score."""
    spellings = torch.from_numpy(catalogue.item_token_ids).long()  # fixed length: every row is a full spelling
    width = spellings.shape[1]
    totals = []
    with torch.no_grad():
        for history in histories:
            prompt = torch.tensor(catalogue.encode_history(history))
            rows = torch.cat([prompt.expand(len(spellings), -1), spellings], dim=1)
            logits = model(input_ids=rows).logits[:, len(prompt) - 1 : -1].float()
            totals.append(torch.log_softmax(logits, dim=-1).gather(-1, spellings[..., None])[..., 0].sum(-1))
            assert logits.shape[1] == width
    return torch.stack(totals)


def test_every_path_finds_the_same_items_with_their_log_probabilities(model, catalogue):
    """Reference, vectorised and fast agree on a batch of histories of different lengths, with beams pruned at every
    level; every item is real and its score is its log-probability after the history computed without padding."""
    histories = _histories(catalogue)
    input_ids, mask = encode_histories(catalogue, histories)  # right-padded, as the collator pads them
    assert supports_shared_beam_search(model)
    found = _every_path(model, catalogue, input_ids, mask, num_beams=20, k=20)
    _assert_same(found["vectorised"], found["reference"])
    _assert_same(found["fast"], found["reference"])
    _assert_same(generate_items(model, catalogue, input_ids, mask, num_beams=20, k=20), found["fast"])  # "auto"
    items, scores = found["fast"]
    assert (items >= 0).all() and all(len(set(row)) == 20 for row in items.tolist())
    exact = _every_item_score(model, catalogue, histories)
    torch.testing.assert_close(scores, exact.gather(1, items), rtol=0, atol=2e-5)
    # the search prunes: some history misses one of its true top 20 items
    assert any(set(exact[row].topk(20).indices.tolist()) != set(items[row].tolist()) for row in range(len(items)))
    # the histories' padding side does not matter: left-padded in, the same out
    _assert_same(generate_items(model, catalogue, *left_pad(input_ids, mask, 0), num_beams=20, k=20), found["fast"])


def test_renormalised_scores_agree(model, catalogue):
    """A model trained with the trie-normalised loss decodes with ``renormalize_logits``: stock generate and the
    fast path still agree."""
    input_ids, mask = encode_histories(catalogue, _histories(catalogue, seed=2))
    model.generation_config.renormalize_logits = True
    try:
        found = {
            method: generate_items(model, catalogue, input_ids, mask, num_beams=10, k=10, method=method)
            for method in ("vectorised", "fast")
        }
    finally:
        model.generation_config.renormalize_logits = False
    _assert_same(found["fast"], found["vectorised"])
    plain = generate_items(model, catalogue, input_ids, mask, num_beams=10, k=10, method="fast")
    assert not torch.allclose(plain[1], found["fast"][1])  # the renormalisation reaches the search


def test_renormalised_fast_path_scores_only_the_tries_tokens(model, catalogue, monkeypatch):
    """With renormalised scores, these backbones' fast path runs the model's body and scores only the tokens that
    continue each beam (their logits are their output layer on their states): no whole-vocabulary step, and the
    items and scores of stock generate, with the history excluded and a prior fused."""
    from hf_genrec.decoding.causal_lm_decoder import _CausalLMDecoder

    histories = _histories(catalogue, seed=3)
    input_ids, mask = encode_histories(catalogue, histories)
    rows = [catalogue.index_of(h).tolist() for h in histories]
    n = catalogue.num_items
    rng = np.random.default_rng(1)
    transitions = ItemTransitions.fit([rng.integers(0, n, size=6).tolist() for _ in range(2000)], n)
    index = build_trie_index(catalogue)
    spellings = torch.from_numpy(item_spellings(catalogue))
    fusion = TransitionFusionLogitsProcessor(index, spellings, transitions.batch_prior(rows, 3), 2.0, 0.01)
    search = dict(num_beams=20, k=20, index=index, exclude_items=rows, fusion=fusion)
    found, expected = searches_without_dense_steps(
        monkeypatch, model, catalogue, input_ids, mask, _CausalLMDecoder, **search
    )
    _assert_same(found, expected)


def test_exclusion_and_fusion_agree_on_every_path(model, catalogue):
    """The history's items excluded and the successor prior fused in: the three paths return the same items with
    the same scores, none of them excluded, and the prior changes what is found."""
    histories = _histories(catalogue, seed=1)
    input_ids, mask = encode_histories(catalogue, histories)
    rows = [catalogue.index_of(h).tolist() for h in histories]
    rng = np.random.default_rng(0)
    n = catalogue.num_items
    transitions = ItemTransitions.fit([rng.integers(0, n, size=6).tolist() for _ in range(2000)], n)
    index = build_trie_index(catalogue)
    spellings = torch.from_numpy(item_spellings(catalogue))
    fusion = TransitionFusionLogitsProcessor(index, spellings, transitions.batch_prior(rows, 3), 2.0, 0.01)
    search = dict(num_beams=20, k=20, index=index, exclude_items=rows)
    found = _every_path(model, catalogue, input_ids, mask, fusion=fusion, **search)
    _assert_same(found["vectorised"], found["reference"])
    _assert_same(found["fast"], found["reference"])
    assert fusion.decoder_start_length == 1  # the caller's processor is left as built; a copy reads past the prompt
    items = found["fast"][0]
    assert (items >= 0).all()
    for row, banned in zip(items.tolist(), rows):
        assert not set(row) & set(banned)
    excluded_only = _every_path(model, catalogue, input_ids, mask, **search)
    _assert_same(excluded_only["fast"], excluded_only["vectorised"])
    assert not torch.equal(items, excluded_only["fast"][0])  # the fusion reaches the search
    plain = generate_items(model, catalogue, input_ids, mask, num_beams=20, k=20)
    assert any(set(row) & set(banned) for row, banned in zip(plain[0].tolist(), rows))  # exclusion changed it


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_catalogue_smaller_than_k(backbone):
    """Eleven items, 20 beams and k=20: every path returns every item once, then -1 at -inf."""
    catalogue = _catalogue(11, codebook_size=3, seed=1)
    model = _causal_lm(backbone, catalogue)
    input_ids, mask = encode_histories(catalogue, _histories(catalogue, batch=3))
    found = _every_path(model, catalogue, input_ids, mask, num_beams=20, k=20)
    _assert_same(found["vectorised"], found["reference"])
    _assert_same(found["fast"], found["reference"])
    items, scores = found["fast"]
    n = catalogue.num_items
    assert n < 20
    for row, row_scores in zip(items.tolist(), scores):
        assert sorted(row[:n]) == list(range(n)) and row[n:] == [-1] * (20 - n)
        assert torch.isfinite(row_scores[:n]).all() and torch.isinf(row_scores[n:]).all()


def test_an_ensemble_of_causal_lms_and_bad_histories(catalogue):
    """The fast path mixes causal LMs as it mixes T5s (a model with itself is that model); an empty history is
    refused with a message saying what to do."""
    model = _causal_lm("llama", catalogue)
    input_ids, mask = encode_histories(catalogue, _histories(catalogue, batch=3))
    alone = generate_items(model, catalogue, input_ids, mask, num_beams=10, k=10)
    together = generate_items([model, model], catalogue, input_ids, mask, num_beams=10, k=10)
    _assert_same(together, alone)
    mask[1] = 0
    with pytest.raises(ValueError, match="History 1 is empty"):
        generate_items(model, catalogue, input_ids, mask, num_beams=10, k=10)


def test_a_model_built_by_build_causal_lm_ranks_alike_on_every_path(catalogue):
    """`build_causal_lm`'s model, with its own generation config (renormalised steps for fixed-length IDs), ranks
    the same items with the same scores on every path."""
    model = build_causal_lm(catalogue, "llama", d_model=32, num_layers=2, num_heads=2, d_ff=64, dropout=0.0).eval()
    assert model.generation_config.renormalize_logits
    input_ids, mask = encode_histories(catalogue, _histories(catalogue, seed=3))
    found = _every_path(model, catalogue, input_ids, mask, num_beams=10, k=10)
    _assert_same(found["vectorised"], found["reference"])
    _assert_same(found["fast"], found["reference"])
    assert (found["fast"][0] >= 0).all()
