"""Keeping a history's own items out of constrained beam search (``exclude_history``)."""

import numpy as np
import pytest
import torch

from hf_genrec.decoding.exclude_history import ExcludeItemsLogitsProcessor
from hf_genrec.decoding.generate import build_trie_index, generate_items, item_spellings
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import encode_histories, make_semantic_ids


@pytest.mark.parametrize("method", ["fast", "vectorised", "reference"])
def test_excluded_items_are_the_next_best_items_of_an_exact_search(tiny_model, item_tokenizer, method):
    """With as many beams as items the search is exact, so banning items leaves the unbanned ranking without them."""
    histories = [["item1", "item2", "item3"], ["item5"], ["item7", "item7", "item30", "item9"]]
    input_ids, mask = encode_histories(item_tokenizer, histories)
    n = item_tokenizer.num_items
    full_items, full_scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=n, method=method
    )
    excluded = [item_tokenizer.index_of(h).tolist() for h in histories]
    items, scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=10, method=method, exclude_items=excluded
    )
    for row, banned in enumerate(excluded):
        keep = ~torch.isin(full_items[row], torch.tensor(banned))
        assert torch.equal(items[row], full_items[row][keep][:10])
        torch.testing.assert_close(scores[row], full_scores[row][keep][:10])
        assert not set(items[row].tolist()) & set(banned)


def test_closed_prefixes_turn_beams_early_and_every_search_still_returns_k(tiny_model, item_tokenizer):
    # every item under the first code of item0 is banned: no beam may enter that prefix
    first = item_tokenizer.semantic_ids.codes[:, 0]
    banned = np.flatnonzero(first == first[0]).tolist()
    input_ids, mask = encode_histories(item_tokenizer, [["item0"]])
    index = build_trie_index(item_tokenizer)
    processor = ExcludeItemsLogitsProcessor(index, torch.from_numpy(item_spellings(item_tokenizer)), [banned])
    start = torch.full((1, 1), item_tokenizer.pad_token_id)
    scores = processor(start, torch.zeros(1, len(item_tokenizer)))
    first_token = item_tokenizer.item_token_ids[banned[0], 0]
    assert scores[0, first_token] == float("-inf") and (scores[0] == 0).sum() == len(item_tokenizer) - 1
    left = item_tokenizer.num_items - len(banned)
    items, _ = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=left, k=left, exclude_items=[banned]
    )
    assert (items >= 0).all() and not set(items[0].tolist()) & set(banned)


def test_variable_length_ids_ban_the_eos_after_an_item_that_others_extend():
    codes = np.array([[0, -1], [0, 1], [1, -1]])  # item "a" is a prefix of item "b"
    from hf_genrec.semantic_ids import from_codes

    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), from_codes(codes, ["a", "b", "c"], codebook_sizes=[2, 2]))
    index = build_trie_index(tokenizer)
    processor = ExcludeItemsLogitsProcessor(index, torch.from_numpy(item_spellings(tokenizer)), [[0]])
    spelling_a = tokenizer.item_token_ids[0, : tokenizer.item_lengths[0]].tolist()  # [code, EOS]
    start = torch.full((1, 1), tokenizer.pad_token_id)
    assert (processor(start, torch.zeros(1, len(tokenizer))) == 0).all()  # "b" still lies below the first code
    after_code = torch.tensor([[tokenizer.pad_token_id, spelling_a[0]]])
    scores = processor(after_code, torch.zeros(1, len(tokenizer)))
    assert scores[0, tokenizer.eos_token_id] == float("-inf") and (scores[0] == 0).sum() == len(tokenizer) - 1


def test_decode_history_inverts_encode_history(item_tokenizer):
    history = ["item3", "item0", "item3", "item17"]
    assert item_tokenizer.decode_history(item_tokenizer.encode_history(history)) == [3, 0, 3, 17]
    packed = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)
    assert packed.decode_history(packed.encode_history(history) + [packed.pad_token_id] * 3) == [3, 0, 3, 17]
    with pytest.raises(ValueError, match="do not spell items"):
        packed.decode_history(packed.encode_history(history)[:-1])


def test_bad_exclusions_fail_clearly(tiny_model, item_tokenizer):
    input_ids, mask = encode_histories(item_tokenizer, [["item1"], ["item2"]])
    with pytest.raises(ValueError, match="one list of item rows per history"):
        generate_items(tiny_model, item_tokenizer, input_ids, mask, num_beams=5, k=5, exclude_items=[[1]])
    with pytest.raises(ValueError, match="excludes every item"):
        every = list(range(item_tokenizer.num_items))
        generate_items(tiny_model, item_tokenizer, input_ids, mask, num_beams=5, k=5, exclude_items=[[1], every])
    with pytest.raises(ValueError, match="must lie in"):
        generate_items(tiny_model, item_tokenizer, input_ids, mask, num_beams=5, k=5, exclude_items=[[1], [99]])


def test_trainer_and_recommender_keep_history_items_out(tmp_path, tiny_model, item_tokenizer):
    import datasets

    from hf_genrec import GenerativeRecommender
    from hf_genrec.bundle.config import GenRecConfig
    from hf_genrec.decoding.fusion import FusionConfig
    from hf_genrec.training.examples import tokenize_examples
    from hf_genrec.training.trainer import GenRecTrainer

    from .conftest import tiny_training_args

    rng = np.random.default_rng(0)
    histories = [[f"item{i}" for i in rng.choice(40, size=6, replace=False)] for _ in range(12)]
    rows = datasets.Dataset.from_dict({"history": histories, "target": ["item0"] * len(histories)})
    seen = [set(item_tokenizer.index_of(h).tolist()) for h in histories]
    overlaps = {}
    for exclude in (False, True):
        args = tiny_training_args(tmp_path, exclude_history=exclude, num_beams=10, eval_ks=[1, 10])
        trainer = GenRecTrainer(model=tiny_model, args=args, item_tokenizer=item_tokenizer)
        predictions = trainer.predict(tokenize_examples(rows, item_tokenizer)).predictions
        overlaps[exclude] = sum(len(set(p.tolist()) & s) for p, s in zip(predictions, seen))
        assert (predictions >= 0).all()
    assert overlaps[False] > 0 and overlaps[True] == 0  # the untrained model does rank history items

    recommender = GenerativeRecommender(
        tiny_model, item_tokenizer, config=GenRecConfig(fusion=FusionConfig(exclude_history=True))
    )
    ranked = recommender.recommend(histories, k=10, num_beams=10)
    assert all(len(r) == 10 and not {item for item, _ in r} & set(h) for r, h in zip(ranked, histories))
    plain = recommender.recommend(histories, k=10, num_beams=10, exclude_history=False)
    assert sum(len({item for item, _ in r} & set(h)) for r, h in zip(plain, histories)) == overlaps[False]


def test_baselines_keep_history_items_out():
    from hf_genrec import MostPopular
    from hf_genrec.models.sasrec import SASRecConfig, SASRecModel, left_pad

    popular = MostPopular({"a": 0, "b": 1, "c": 2, "d": 3}).fit([["b", "b", "a"], ["b", "c", "a"], ["d"]])
    assert popular.predict(2, 3).tolist() == [[1, 0, 2], [1, 0, 2]]
    assert popular.predict(2, 3, exclude=[[1], [0, 2, 3]]).tolist() == [[0, 2, 3], [1, -1, -1]]
    with pytest.raises(ValueError, match="one per user"):
        popular.predict(2, 3, exclude=[[1]])

    torch.manual_seed(0)
    model = SASRecModel(SASRecConfig(num_items=30, max_positions=8, hidden_size=16, num_layers=1, num_heads=1))
    histories = [[0, 1, 2, 3], [5], [7, 8, 9, 10, 11, 12]]
    tokens = left_pad(histories, 8)
    full = model.recommend(tokens, k=30)[0]
    kept = model.recommend(tokens, k=10, exclude_history=True)[0]
    for row, history in enumerate(histories):
        assert kept[row].tolist() == [i for i in full[row].tolist() if i not in history][:10]


@pytest.mark.parametrize("variable", [False, True])
def test_items_under_each_node_counts_the_spellings_through_it(variable):
    from hf_genrec.semantic_ids import from_codes

    from .conftest import random_codes

    codes = random_codes(np.random.default_rng(0), 60, 3, 3, variable=variable)
    tokenizer = ItemTokenizer(
        minimal_t5_tokenizer(), from_codes(codes, [str(i) for i in range(len(codes))], codebook_sizes=[3] * 3)
    )
    index = build_trie_index(tokenizer)
    spellings = torch.from_numpy(item_spellings(tokenizer))
    expected = torch.zeros(index.num_nodes, dtype=torch.long)
    expected[0] = len(spellings)
    for spelling in spellings:
        spelling = spelling[spelling >= 0]
        for d in range(len(spelling)):
            expected[index.walk(spelling[None, : d + 1])[0]] += 1
    assert torch.equal(index.items_under.long(), expected)
