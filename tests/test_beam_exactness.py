"""The fast beam search returns exactly what stock ``generate`` returns at the benchmark's shape, where beams are
pruned at every level: 4 levels of 256 codes, a catalogue of thousands of items, 20 and 50 beams; alone, with the
successor prior and the SASRec scorer fused in, and with the history's items excluded."""

import numpy as np
import pytest
import torch
from transformers import LogitsProcessorList

from hf_genrec.decoding.fusion import TransitionFusionLogitsProcessor, scorer_priors
from hf_genrec.decoding.generate import build_trie, build_trie_index, generate_items, item_spellings
from hf_genrec.models.prior import ItemTransitions
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5, encode_histories, searches_without_dense_steps

CODEBOOK, LEVELS = 256, 4
#: children per node on levels 1..3 below 64 first codes: 64 * 4 * 4 prefixes of 3 codes, 4 items under each
FAN_OUT = (64, 4, 4, 4)


def _benchmark_codes(seed: int = 0) -> np.ndarray:
    """``[4096, 4]`` distinct codes over 256 values per level, as a tree whose every level offers more candidates
    than 50 beams can hold (64 first codes; then each beam's 4 children), so the search prunes at every step."""
    rng = np.random.default_rng(seed)
    rows = [()]
    for fan_out in FAN_OUT:
        rows = [(*row, int(c)) for row in rows for c in rng.choice(CODEBOOK, size=fan_out, replace=False)]
    return np.array(rows, dtype=np.int64)[rng.permutation(len(rows))]


@pytest.fixture(scope="module")
def catalogue():
    codes = _benchmark_codes()
    names = [f"i{i}" for i in range(len(codes))]
    ids = from_codes(codes, names, add_collision_level=False, codebook_sizes=[CODEBOOK] * LEVELS)
    return ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)


@pytest.fixture(scope="module", params=["t5", "causal encoder"])
def model(request, catalogue):
    if request.param == "t5":
        return build_t5_model(catalogue, seed=0, **TINY_T5).eval()
    # the recipes' model: causal encoder, one position per item, recency embeddings, decoding from the last state
    model = build_t5_model(
        catalogue, seed=0, causal_encoder=True, item_positions=True, recency_embeddings=True,
        start_from_last_state=True, **TINY_T5,
    ).eval()  # fmt: skip
    for table in (model.encoder.item_embeddings, model.encoder.recency):  # they start at zero, which hides a bug
        if table is not None:
            torch.nn.init.normal_(table.weight, generator=torch.Generator().manual_seed(1))
    return model


def _histories(catalogue, batch: int = 6, seed: int = 0) -> list[list[str]]:
    rng = np.random.default_rng(seed)
    n = catalogue.num_items
    return [[f"i{j}" for j in rng.integers(0, n, size=int(rng.integers(1, 9)))] for _ in range(batch)]


def _assert_same(result, expected):
    items, scores = result
    expected_items, expected_scores = expected
    assert (expected_items >= 0).all()
    assert torch.equal(items, expected_items)
    # the same beams in the same order; the sums may differ by float rounding only
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=2e-5)


@pytest.fixture(scope="module")
def every_item_score(model, catalogue) -> torch.Tensor:
    """``[batch, n_items]`` each item's log-probability under the model for each of `_histories`, one forward pass
    over its spelling (no search): what a beam search's score of that item must be."""
    input_ids, mask = encode_histories(catalogue, _histories(catalogue))
    labels = torch.from_numpy(catalogue.item_token_ids).long()  # fixed length: every row is a full spelling
    start = torch.full((len(labels), 1), model.config.decoder_start_token_id)
    decoder_input_ids = torch.cat([start, labels[:, :-1]], dim=1)
    totals = []
    with torch.no_grad():
        for history, history_mask in zip(input_ids[:, None], mask[:, None]):
            # the history encoded once; the decoder reads every item's spelling beside it
            encoded = model.get_encoder()(input_ids=history, attention_mask=history_mask)
            encoded = type(encoded)(
                **{key: value.expand(len(labels), *value.shape[1:]) for key, value in encoded.items()}
            )
            logits = model(
                encoder_outputs=encoded,
                attention_mask=history_mask.expand(len(labels), -1),
                decoder_input_ids=decoder_input_ids,
            ).logits
            log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None])[..., 0]
            totals.append(log_probs.sum(-1))
    return torch.stack(totals)


@pytest.mark.parametrize("num_beams", [20, 50])
def test_fast_search_equals_generate_when_beams_are_pruned(model, catalogue, every_item_score, num_beams):
    """Items and scores of the fast path equal stock ``generate`` with the `TrieLogitsProcessor`, and every score
    is the item's log-probability under the model; the catalogue is large enough that the search is not exact."""
    input_ids, mask = encode_histories(catalogue, _histories(catalogue))
    index = build_trie_index(catalogue)
    found = {}
    try:
        for renormalize in (False, True):  # raw log-probabilities; trie-renormalised ones (the constrained loss)
            model.generation_config.renormalize_logits = renormalize
            for method in ("fast", "vectorised"):
                found[method, renormalize] = generate_items(
                    model, catalogue, input_ids, mask, num_beams=num_beams, k=num_beams, method=method, index=index
                )
    finally:
        model.generation_config.renormalize_logits = False
    for renormalize in (False, True):
        _assert_same(found["fast", renormalize], found["vectorised", renormalize])
    items, scores = found["fast", False]
    torch.testing.assert_close(scores, every_item_score.gather(1, items), rtol=0, atol=2e-5)
    # pruning costs the search some of the catalogue's true top items: a search over all items would differ
    exact = every_item_score.topk(num_beams, dim=1).indices
    assert any(set(exact[row].tolist()) != set(items[row].tolist()) for row in range(len(items)))


def _fusion(catalogue, index, histories_rows, seed: int = 0, normalize: bool = False):
    """The successor prior and the SASRec scorer, fused as the hybrid recipe fuses them (prior first)."""
    rng = np.random.default_rng(seed)
    n = catalogue.num_items
    # walks that mostly stay under one first code, so that the prior's mass gathers on a few prefixes
    first = catalogue.semantic_ids.codes[:, 0]
    by_first = {code: np.flatnonzero(first == code) for code in np.unique(first)}
    sequences = [rng.choice(by_first[first[int(rng.integers(n))]], size=6).tolist() for _ in range(3000)]
    sequences += [[h[-1], int(rng.integers(n))] for h in histories_rows]  # every last item has successors
    transitions = ItemTransitions.fit(sequences, n)
    scorer = SASRecModel(
        SASRecConfig(num_items=n, max_positions=8, hidden_size=16, dropout=0.0, initializer_range=0.5)
    )
    scorer.eval()
    spellings = torch.from_numpy(item_spellings(catalogue))
    paths = index.item_paths(spellings, torch.arange(n))[1]
    prior = TransitionFusionLogitsProcessor(
        index, spellings, transitions.batch_prior(histories_rows, 3), weight=2.0, smoothing=0.01, paths=paths,
        normalize=normalize,
    )  # fmt: skip
    with torch.no_grad():
        dense = scorer_priors(scorer, histories_rows, top_k=200, exclude_history=True)
    scored = TransitionFusionLogitsProcessor(index, spellings, dense, weight=1.0, smoothing=0.01, paths=paths)
    return LogitsProcessorList([prior, scored])


@pytest.mark.parametrize("num_beams", [20, 50])
@pytest.mark.parametrize("normalize", [False, True])
def test_fusion_and_history_exclusion_agree_on_every_path_when_beams_are_pruned(
    model, catalogue, num_beams, normalize
):
    """The successor prior and the scorer fused in, the history's items (and one whole first code) banned: the
    fast path, stock ``generate`` with the `TrieLogitsProcessor` and with the reference function return the same
    items with the same scores, none of them banned, and fusion changes what is found."""
    histories = _histories(catalogue, seed=1)
    input_ids, mask = encode_histories(catalogue, histories)
    rows = [catalogue.index_of(h).tolist() for h in histories]
    index = build_trie_index(catalogue)
    fusion = _fusion(catalogue, index, rows, normalize=normalize)
    # the history, and for the first history every item under its last item's first code: a closed subtree
    first = catalogue.semantic_ids.codes[:, 0]
    banned = [list(r) for r in rows]
    banned[0] = sorted({*rows[0], *np.flatnonzero(first == first[rows[0][-1]]).tolist()})
    model.generation_config.renormalize_logits = normalize  # a model trained with the prior in its loss renormalises
    search = dict(num_beams=num_beams, k=num_beams, index=index, exclude_items=banned)
    try:
        found = {
            method: generate_items(
                model, catalogue, input_ids, mask, method=method, trie=trie, fusion=fusion, **search
            )
            for method, trie in (("fast", None), ("vectorised", None), ("reference", build_trie(catalogue)))
        }
        unfused = generate_items(model, catalogue, input_ids, mask, **search)
    finally:
        model.generation_config.renormalize_logits = False
    _assert_same(found["fast"], found["vectorised"])
    _assert_same(found["reference"], found["vectorised"])
    items = found["fast"][0]
    for row, ban in enumerate(banned):
        assert not set(items[row].tolist()) & set(ban)
    assert not torch.equal(items, unfused[0])  # the fusion reaches the search


def test_renormalised_search_scores_only_the_tries_tokens(model, catalogue, monkeypatch):
    """With trie-renormalised scores the fast path never computes a vocabulary-wide row: the T5 decoder's
    full-logits step is never called, and the items and scores still equal stock ``generate``'s, with the history
    excluded and the prior fused (its first step scores the 64 first codes in one product, later steps gather each
    beam's 4 children)."""
    from hf_genrec.decoding.beam_search import _T5Decoder

    histories = _histories(catalogue, seed=2)
    input_ids, mask = encode_histories(catalogue, histories)
    rows = [catalogue.index_of(h).tolist() for h in histories]
    index = build_trie_index(catalogue)
    fusion = _fusion(catalogue, index, rows)
    search = dict(num_beams=20, k=20, index=index, exclude_items=rows, fusion=fusion)
    found, expected = searches_without_dense_steps(
        monkeypatch, model, catalogue, input_ids, mask, _T5Decoder, **search
    )
    _assert_same(found, expected)


def test_a_renormalised_search_over_fewer_items_than_beams():
    """Eleven items, 20 beams, k=20, the history excluded and a renormalising prior fused: beams run out of items,
    and the fast path (candidates only) still returns what stock ``generate`` returns, the spent slots as -1."""
    codes = np.array([[a, b] for a in range(3) for b in range(4)])[:11]
    ids = from_codes(codes, [f"i{i}" for i in range(11)], add_collision_level=False, codebook_sizes=[4, 4])
    catalogue = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    model = build_t5_model(catalogue, seed=0, **TINY_T5).eval()
    histories = _histories(catalogue, batch=3)
    input_ids, mask = encode_histories(catalogue, histories)
    rows = [catalogue.index_of(h).tolist() for h in histories]
    index = build_trie_index(catalogue)
    spellings = torch.from_numpy(item_spellings(catalogue))
    transitions = ItemTransitions.fit([[0, 1, 2], [3, 4, 5], [1, 6, 7], [8, 9, 10]], 11)
    fusion = TransitionFusionLogitsProcessor(
        index, spellings, transitions.batch_prior(rows, 3), weight=2.0, smoothing=0.01, normalize=True
    )
    search = dict(num_beams=20, k=20, index=index, exclude_items=rows, fusion=fusion)
    model.generation_config.renormalize_logits = True
    try:
        found = {
            m: generate_items(model, catalogue, input_ids, mask, method=m, **search) for m in ("fast", "vectorised")
        }
    finally:
        model.generation_config.renormalize_logits = False
    (items, scores), (expected_items, expected_scores) = found["fast"], found["vectorised"]
    assert torch.equal(items, expected_items)
    assert ((items == -1) == torch.isinf(scores)).all() and (items == -1).any()
    torch.testing.assert_close(scores, expected_scores, rtol=0, atol=2e-5)
    for row, banned in zip(items.tolist(), rows):
        assert sorted(i for i in row if i >= 0) == sorted(set(range(11)) - set(banned))
