"""Shared fixtures: tiny catalogues, tokenizers and models built offline in milliseconds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

TINY_T5 = dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=2, num_decoder_layers=2, dropout_rate=0.0)


def make_semantic_ids(n_items: int = 40, n_levels: int = 3, codebook_size: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, codebook_size, size=(n_items, n_levels))
    return from_codes(codes, [f"item{i}" for i in range(n_items)], codebook_sizes=[codebook_size] * n_levels)


@pytest.fixture
def semantic_ids():
    return make_semantic_ids()


@pytest.fixture
def item_tokenizer(semantic_ids):
    return ItemTokenizer(minimal_t5_tokenizer(), semantic_ids)


@pytest.fixture
def tiny_model(item_tokenizer):
    from hf_genrec.models.t5 import build_t5_model

    return build_t5_model(item_tokenizer, seed=0, **TINY_T5).eval()


def tiny_training_args(output_dir, **overrides):
    """`GenRecTrainingArguments` for the few-second training runs of the tests (no saving or evaluation while
    training, CPU, quiet); ``overrides`` replace any setting."""
    from hf_genrec.training.arguments import GenRecTrainingArguments

    settings = dict(
        num_train_epochs=30, per_device_train_batch_size=16, learning_rate=1e-2, eval_strategy="no",
        save_strategy="no", load_best_model_at_end=False, num_beams=10, eval_ks=[1, 5], seed=0, use_cpu=True,
        disable_tqdm=True,
    )  # fmt: skip
    return GenRecTrainingArguments(output_dir=str(output_dir), **{**settings, **overrides})


def random_codes(rng, n_items: int, max_len: int, alphabet: int, variable: bool = True) -> np.ndarray:
    """Up to ``n_items`` distinct code rows over ``0..alphabet-1`` (``-1`` padded when ``variable``), in draw order."""
    seen, rows = set(), []
    for _ in range(n_items * 4):
        length = int(rng.integers(1, max_len + 1)) if variable else max_len
        row = tuple(int(c) for c in rng.integers(alphabet, size=length))
        if row not in seen:
            seen.add(row)
            rows.append(row)
        if len(rows) == n_items:
            break
    codes = np.full((len(rows), max(map(len, rows))), -1, dtype=np.int64)
    for i, row in enumerate(rows):
        codes[i, : len(row)] = row
    return codes


def history_target_split(sequences: list[list[str]], start: int, stop: int):
    """Leave-one-out-like rows: for each sequence and each ``t`` in ``[start, stop)``, ``seq[:t]`` → ``seq[t]``."""
    import datasets

    return datasets.Dataset.from_dict(
        {
            "history": [seq[:t] for seq in sequences for t in range(start, stop)],
            "target": [seq[t] for seq in sequences for t in range(start, stop)],
        }
    )


def cyclic_sequences(n_items: int, n_users: int, length: int, seed: int = 0) -> list[list[str]]:
    """Users walk the catalogue in order (item i is followed by item i+1): a pattern a model can learn fast."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, n_items, size=n_users)
    return [[f"item{(s + t) % n_items}" for t in range(length)] for s in starts]


def pytest_configure(config):
    # Tiny models gain nothing from intra-op threads, and oversubscribed cores slow them down a lot.
    import torch

    torch.set_num_threads(1)


def searches_without_dense_steps(monkeypatch, model, item_tokenizer, input_ids, mask, decoder_class, **search):
    """Stock ``generate``'s items (``method="vectorised"``) and the fast path's with trie-renormalised scores, the
    fast path run with ``decoder_class.step`` (the whole-vocabulary step) made to fail: ``(found, expected)``."""
    from hf_genrec.decoding.generate import generate_items

    def dense_step(self, tokens, position):
        raise AssertionError("the renormalised fast path computed every token's logit")

    model.generation_config.renormalize_logits = True
    try:
        expected = generate_items(model, item_tokenizer, input_ids, mask, method="vectorised", **search)
        monkeypatch.setattr(decoder_class, "step", dense_step)
        found = generate_items(model, item_tokenizer, input_ids, mask, method="fast", **search)
    finally:
        model.generation_config.renormalize_logits = False
    return found, expected


def encode_histories(item_tokenizer, histories):
    """``(input_ids, attention_mask)`` of histories encoded as `ItemTokenizer.encode_history` does, right-padded."""
    rows = [item_tokenizer.encode_history(h) for h in histories]
    width = max(map(len, rows))
    input_ids = torch.tensor([r + [item_tokenizer.pad_token_id] * (width - len(r)) for r in rows])
    mask = (torch.arange(width)[None] < torch.tensor([len(r) for r in rows])[:, None]).long()
    return input_ids, mask


def assert_plain_tokenizer_spells_items(tokenizer, item_tokenizer) -> None:
    """``tokenizer`` (a bundle's, loaded by plain Transformers) spells every item of ``item_tokenizer``'s catalogue
    with the token ids the model was trained on, none of them ``<unk>``, and decodes them back to the spelling.
    (``convert_tokens_to_ids`` of an unknown token returns ``<unk>``'s id, never None: checking for None proves
    nothing.)"""
    for item in item_tokenizer.item_ids:
        spelling = item_tokenizer.item_spelling(item)
        ids = tokenizer(spelling).input_ids
        assert ids == item_tokenizer.encode_target(item), (item, spelling, ids)
        assert tokenizer.unk_token_id not in ids, (item, spelling, ids)
        assert tokenizer.decode(ids[:-1]) == spelling
