"""The successor prior fused into the training loss (``transition_weight_in_loss``): the batched prior, the prior
that leaves a training user's own sequence out, and the normalised fusion such a model is ranked with."""

import numpy as np
import pytest
import torch

from hf_genrec.decoding.fusion import TransitionFusionLogitsProcessor
from hf_genrec.decoding.generate import build_trie_index, generate_items, item_spellings
from hf_genrec.models.prior import ItemTransitions
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.arguments import GenRecTrainingArguments
from hf_genrec.training.examples import tokenize_sequences
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, encode_histories, make_semantic_ids, tiny_training_args


def _random_sequences(n_items=30, n_users=120, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.choice(n_items, size=int(rng.integers(2, 12)), replace=False).tolist() for _ in range(n_users)]


def _mixed_by_hand(transitions, history, recent=3):
    """The prior's definition written out: each recent item's successor distribution, the most recent weighing
    most (1, 1/2, 1/3), normalised over the items that have successors."""
    mixed, total = {}, 0.0
    for position, item in enumerate(reversed(history[-recent:])):
        rows, probs = transitions.probabilities(item)
        if len(rows):
            total += 1.0 / (position + 1)
            for row, p in zip(rows.tolist(), probs.tolist()):
                mixed[row] = mixed.get(row, 0.0) + p / (position + 1)
    return {row: p / total for row, p in mixed.items()}


@pytest.mark.parametrize("shrinkage", [0.0, 30.0])
def test_batch_prior_mixes_recent_successors_and_leaving_a_sequence_out_unfits_it(shrinkage):
    sequences = _random_sequences()
    transitions = ItemTransitions.fit(sequences, 30, window=3, shrinkage=shrinkage)
    rng = np.random.default_rng(1)
    histories = [s[: int(rng.integers(1, len(s)))] for s in sequences[:60]] + [[], [29]]
    items, probs = transitions.batch_prior(histories, recent=3)
    assert items.shape == probs.shape and items.shape[0] == len(histories)
    for n, history in enumerate(histories):
        kept = items[n] >= 0
        expected = _mixed_by_hand(transitions, history)
        assert items[n][kept].tolist() == sorted(expected)  # by item row, then padding
        np.testing.assert_allclose(probs[n][kept], [expected[i] for i in sorted(expected)], rtol=1e-5)
        assert (probs[n][~kept] == 0).all()
        got = transitions.prior(history, 3)
        assert got[0].tolist() == items[n][kept].tolist() and np.allclose(got[1], probs[n][kept])
    # leaving a fitted sequence out gives the prior of the counts fitted without it, for each history at once
    users = list(range(12))
    histories = [sequences[u][: 1 + u % (len(sequences[u]) - 1)] for u in users]
    items, probs = transitions.batch_prior(histories, 3, leave_out=[sequences[u] for u in users])
    for n, u in enumerate(users):
        without = ItemTransitions.fit(sequences[:u] + sequences[u + 1 :], 30, window=3, shrinkage=shrinkage)
        expected = _mixed_by_hand(without, histories[n])
        kept = items[n] >= 0
        assert items[n][kept].tolist() == sorted(expected)
        np.testing.assert_allclose(probs[n][kept], [expected[i] for i in sorted(expected)], rtol=1e-5)
    with pytest.raises(ValueError, match="entries for"):
        transitions.batch_prior(histories, 3, leave_out=[None])


def test_padded_priors_cached_paths_and_normalised_fusion_agree(tiny_model, item_tokenizer):
    n = item_tokenizer.num_items
    transitions = ItemTransitions.fit(_random_sequences(n_items=n), n, window=3)
    histories = [["item1", "item5"], ["item7", "item3"], ["item39"]]
    rows = [item_tokenizer.index_of(h).tolist() for h in histories]
    index = build_trie_index(item_tokenizer)
    spellings = torch.from_numpy(item_spellings(item_tokenizer))
    paths = index.item_paths(spellings, torch.arange(n))[1]
    listed = TransitionFusionLogitsProcessor(index, spellings, [transitions.prior(r, 3) for r in rows], 2.0, 0.01)
    padded = TransitionFusionLogitsProcessor(
        index, spellings, transitions.batch_prior(rows, 3), 2.0, 0.01, paths=paths
    )
    torch.testing.assert_close(listed.node_bonus, padded.node_bonus)
    input_ids, mask = encode_histories(item_tokenizer, histories)
    fused = {}
    for name, fusion in (("listed", listed), ("padded", padded)):
        fused[name] = generate_items(
            tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=n, index=index, fusion=fusion
        )
    assert torch.equal(fused["listed"][0], fused["padded"][0])
    # normalised at every step, the fused scores are a distribution over the catalogue (an exact search sums to 1)
    normalized = TransitionFusionLogitsProcessor(
        index, spellings, transitions.batch_prior(rows, 3), 2.0, 0.01, normalize=True
    )
    items, scores = generate_items(
        tiny_model, item_tokenizer, input_ids, mask, num_beams=n, k=n, index=index, fusion=normalized
    )
    torch.testing.assert_close(scores.exp().sum(-1), torch.ones(3), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="shape of spellings"):
        TransitionFusionLogitsProcessor(index, spellings, transitions.batch_prior(rows, 3), 2.0, 0.01, paths=paths[:3])


def _manual_fused_loss(logits, blocks, histories, own, transitions, tokenizer, weight, smoothing):
    """The trie-normalised cross-entropy of softmax(logits + bonus) at each step, the bonus of a node being
    ``weight * log(1 + prior mass below it / smoothing)``, written out with Python loops over the trie."""
    spellings = tokenizer.spellings()
    losses = []
    for n, (row, labels) in enumerate(zip(logits, blocks.tolist())):
        if labels[0] == -100:
            continue
        items, probs = transitions.prior(histories[n], 3, leave_out=own[n])
        prior = dict(zip(items.tolist(), probs.tolist()))

        def bonus(prefix, prior=prior):
            mass = sum(p for i, p in prior.items() if tuple(spellings[i][: len(prefix)]) == tuple(prefix))
            return weight * np.log1p(mass / smoothing) if prefix else 0.0

        for step, token in enumerate(labels):
            prefix = labels[:step]
            allowed = sorted({s[step] for s in spellings if len(s) > step and list(s[:step]) == prefix})
            fused = torch.stack([row[step, t] + bonus(prefix + [t]) - bonus(prefix) for t in allowed])
            losses.append(-torch.log_softmax(fused, dim=0)[allowed.index(token)])
    return torch.stack(losses).mean()


def test_the_loss_fuses_the_prior_without_the_users_own_transitions(tmp_path):
    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)
    n = tokenizer.num_items
    rng = np.random.default_rng(3)
    rows_of = [rng.choice(n, size=int(rng.integers(3, 7)), replace=False).tolist() for _ in range(6)]
    # two users share a transition, so the prior keeps part of it after leaving each one out
    rows_of[1][:2] = rows_of[0][:2]
    sequences = [[f"item{i}" for i in s] for s in rows_of]
    transitions = ItemTransitions.fit(rows_of, n, window=3, shrinkage=2.0)
    model = build_t5_model(tokenizer, seed=0, causal_encoder=True, item_positions=True, **TINY_T5)
    args = tiny_training_args(tmp_path, constrained_loss=True, transition_weight_in_loss=3.0, transition_shrinkage=2.0)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=tokenizer, transitions=transitions)
    packed = tokenize_sequences(sequences, tokenizer, max_history=20)
    batch = trainer.data_collator([packed[i] for i in range(len(packed))])
    per_row = batch["target_ends"].shape[1]
    histories, own = [], []
    for s in rows_of:  # one window per user, targets in order, then padding targets
        histories += [s[:j] for j in range(1, len(s))] + [[]] * (per_row - len(s) + 1)
        own += [s] * per_row
    width = tokenizer.id_length
    blocks = batch["labels"].reshape(-1, width)
    model.train()
    logits = model(**batch).logits.reshape(-1, width, model.config.vocab_size)
    expected = _manual_fused_loss(
        logits, blocks, histories, own, transitions, tokenizer, 3.0, args.transition_smoothing
    )
    torch.testing.assert_close(trainer.compute_loss(model, batch), expected, rtol=1e-4, atol=1e-5)
    # leaving the user out matters here: the first target's transition is gone from its prior for user 2 onwards
    leaked = transitions.prior(rows_of[2][:1], 3)[0].tolist()
    assert (
        rows_of[2][1] in leaked and rows_of[2][1] not in transitions.prior(rows_of[2][:1], 3, rows_of[2])[0].tolist()
    )
    plain = GenRecTrainer(
        model=model, args=tiny_training_args(tmp_path, constrained_loss=True), item_tokenizer=tokenizer
    ).compute_loss(model, batch)
    assert not torch.isclose(plain, expected)
    # ranking with the prior normalises each step, as the loss did
    trainer.args.transition_weight = 3.0
    fusion = trainer._fusion([[0, 1], [2]])
    assert len(fusion) == 1 and fusion[0].normalize


def test_prior_in_loss_settings_are_checked(tmp_path):
    with pytest.raises(ValueError, match="needs constrained_loss"):
        GenRecTrainingArguments(output_dir=str(tmp_path), transition_weight_in_loss=1.0)
    with pytest.raises(ValueError, match=">= 0"):
        GenRecTrainingArguments(output_dir=str(tmp_path), constrained_loss=True, transition_weight_in_loss=-1.0)
    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)
    model = build_t5_model(tokenizer, seed=0, causal_encoder=True, **TINY_T5)
    trainer = GenRecTrainer(
        model=model,
        args=tiny_training_args(tmp_path, constrained_loss=True, transition_weight_in_loss=1.0),
        item_tokenizer=tokenizer,
    )
    packed = tokenize_sequences([["item0", "item1", "item2"]], tokenizer)
    with pytest.raises(ValueError, match="pass transitions="):
        trainer.compute_loss(model, trainer.data_collator([packed[0]]))
