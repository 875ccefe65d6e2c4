"""Ensembles decode with the mean of their members' next-token distributions, exactly, on every path that takes them."""

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from hf_genrec import GenerativeRecommender, generate_items
from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.decoding.beam_search import shared_beam_search
from hf_genrec.decoding.fusion import FusionConfig
from hf_genrec.decoding.generate import build_trie_index
from hf_genrec.decoding.trie import TrieLogitsProcessor
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5, encode_histories, make_semantic_ids

HISTORIES = [["item3", "item7", "item1"], ["item12"], ["item5", "item5", "item30", "item2"]]


def _models(item_tokenizer, seeds=(0, 1)):
    return [build_t5_model(item_tokenizer, seed=seed, **TINY_T5).eval() for seed in seeds]


def _mixture_scores(models, item_tokenizer, input_ids, attention_mask, renormalize):
    """Every item's score under the step-wise mixture, by teacher forcing each spelling through each model."""
    index = build_trie_index(item_tokenizer)
    processor = TrieLogitsProcessor(index)
    start = item_tokenizer.pad_token_id
    spellings = [item_tokenizer.item_token_ids[i, : item_tokenizer.item_lengths[i]].tolist() for i in range(40)]
    scores = torch.zeros(input_ids.shape[0], len(spellings))
    with torch.no_grad():
        for item, spelling in enumerate(spellings):
            decoder_input = torch.tensor([[start] + spelling[:-1]]).expand(input_ids.shape[0], -1)
            per_model = [
                F.log_softmax(m(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input)
                              .logits.float(), dim=-1)
                for m in models
            ]  # fmt: skip
            for step, token in enumerate(spelling):
                prefix = decoder_input[:, : step + 1]
                steps = []
                for log_probs in per_model:
                    masked = processor(prefix, log_probs[:, step])
                    steps.append(F.log_softmax(masked, dim=-1) if renormalize else masked)
                mixed = torch.logsumexp(torch.stack(steps), dim=0) - math.log(len(models))
                scores[:, item] += mixed[:, token]
    return scores


@pytest.mark.parametrize("renormalize", [False, True])
def test_ensemble_search_returns_the_mixture_top_k(item_tokenizer, renormalize):
    models = _models(item_tokenizer)
    for m in models:
        m.generation_config.renormalize_logits = renormalize
    input_ids, attention_mask = encode_histories(item_tokenizer, HISTORIES)
    # as many beams as items: the search is exhaustive, so it must return the reference's top k exactly
    indices, scores = generate_items(models, item_tokenizer, input_ids, attention_mask, num_beams=40, k=10)
    reference = _mixture_scores(models, item_tokenizer, input_ids, attention_mask, renormalize)
    top = reference.topk(10, dim=-1)
    assert torch.allclose(scores, top.values, atol=1e-4)
    assert torch.allclose(reference.gather(1, indices), scores, atol=1e-4)
    # the members disagree, so the mixture is not a copy of either
    for member in models:
        alone = _mixture_scores([member], item_tokenizer, input_ids, attention_mask, renormalize)
        assert (alone - reference).abs().max() > 1e-2


def test_ensemble_of_copies_is_the_model(item_tokenizer, tiny_model):
    input_ids, attention_mask = encode_histories(item_tokenizer, HISTORIES)
    one = generate_items(tiny_model, item_tokenizer, input_ids, attention_mask, num_beams=8, k=5)
    three = generate_items([tiny_model] * 3, item_tokenizer, input_ids, attention_mask, num_beams=8, k=5)
    assert torch.equal(one[0], three[0])
    assert torch.allclose(one[1], three[1], atol=1e-5)


def test_ensemble_refuses_stock_generate_and_mismatched_members(item_tokenizer):
    models = _models(item_tokenizer)
    input_ids, attention_mask = encode_histories(item_tokenizer, HISTORIES)
    with pytest.raises(ValueError, match="method='fast'"):
        generate_items(models, item_tokenizer, input_ids, attention_mask, num_beams=8, k=5, method="vectorised")
    with pytest.raises(ValueError, match="non-empty list"):
        generate_items([], item_tokenizer, input_ids, attention_mask, num_beams=8, k=5)
    models[1].generation_config.renormalize_logits = True
    with pytest.raises(ValueError, match="renormalised"):
        generate_items(models, item_tokenizer, input_ids, attention_mask, num_beams=8, k=5)
    other = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(n_items=40, codebook_size=6))
    with pytest.raises(ValueError, match="share one vocabulary"):
        shared_beam_search(
            [models[0], build_t5_model(other, seed=0, **TINY_T5)],
            input_ids,
            attention_mask,
            TrieLogitsProcessor(build_trie_index(item_tokenizer)),
            num_beams=8,
            num_return_sequences=5,
            max_new_tokens=item_tokenizer.id_length,
            decoder_start_token_id=item_tokenizer.pad_token_id,
            eos_token_id=item_tokenizer.eos_token_id,
            pad_token_id=item_tokenizer.pad_token_id,
        )


def test_recommender_ensemble(item_tokenizer, tmp_path):
    config = GenRecConfig(num_beams=10, top_k=5, fusion=FusionConfig(exclude_history=True))
    members = [GenerativeRecommender(m, item_tokenizer, config) for m in _models(item_tokenizer)]
    combined = GenerativeRecommender.ensemble(members)
    ranked = combined.recommend(HISTORIES)
    input_ids, attention_mask = encode_histories(item_tokenizer, HISTORIES)
    exclude = [item_tokenizer.index_of(h).tolist() for h in HISTORIES]
    indices, scores = generate_items(
        [m.model for m in members], item_tokenizer, input_ids, attention_mask, num_beams=10, k=5,
        exclude_items=exclude,
    )  # fmt: skip
    assert [[item for item, _ in row] for row in ranked] == [
        [item_tokenizer.item_ids[i] for i in row] for row in indices.tolist()
    ]
    assert np.allclose([[s for _, s in row] for row in ranked], scores.numpy(), atol=1e-5)
    assert all(not set(row_items) & set(h) for row_items, h in zip(([i for i, _ in r] for r in ranked), HISTORIES))
    # one member is the member itself
    assert GenerativeRecommender.ensemble(members[:1]).recommend(HISTORIES) == members[0].recommend(HISTORIES)
    # catalogue changes on the ensemble stay on the ensemble
    combined.remove_items(["item39"])
    assert "item39" not in combined.item_ids and "item39" in members[0].item_ids
    assert not members[0].catalog.retired
    with pytest.raises(ValueError, match="save each member"):
        combined.save_pretrained(tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_recommender_ensemble_refuses_other_catalogues(item_tokenizer):
    member = GenerativeRecommender(_models(item_tokenizer)[0], item_tokenizer)
    other_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(seed=1))
    other = GenerativeRecommender(build_t5_model(other_tokenizer, seed=0, **TINY_T5), other_tokenizer)
    with pytest.raises(ValueError, match="different catalogue"):
        GenerativeRecommender.ensemble([member, other])
    longer = GenerativeRecommender(member.model, item_tokenizer, GenRecConfig(max_history=5))
    with pytest.raises(ValueError, match="history items"):
        GenerativeRecommender.ensemble([member, longer])
    with pytest.raises(ValueError, match="at least one"):
        GenerativeRecommender.ensemble([])
