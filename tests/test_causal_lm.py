"""Decoder-only backbones (GPT-2, Llama, Qwen2): built from a type, a config or a checkpoint; packed causal rows train
every target of a window in one pass, with the loss of one row per target; GenRecTrainer trains and ranks them."""

import datasets
import pytest
import torch
from transformers import GPT2Config, LlamaConfig, Qwen2Config

from hf_genrec.models.causal_lm import build_causal_lm, causal_rows, is_decoder_only
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.collator import GenRecCollator
from hf_genrec.training.examples import tokenize_causal_sequences, tokenize_examples, tokenize_sequences
from hf_genrec.training.losses import ConstrainedLoss
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, cyclic_sequences, make_semantic_ids, random_codes, tiny_training_args

BACKBONES = ["gpt2", "llama", "qwen2"]
TINY = dict(d_model=32, num_layers=2, num_heads=2, d_ff=64, dropout=0.0)


@pytest.fixture
def causal_tokenizer():
    return ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False)


def _variable_tokenizer():
    import numpy as np

    codes = random_codes(np.random.default_rng(0), 30, 4, 5)
    ids = from_codes(codes, [f"item{i}" for i in range(len(codes))], codebook_sizes=[5] * codes.shape[1])
    return ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_build_from_a_type_name_maps_the_sizes(causal_tokenizer, backbone):
    heads = {} if backbone == "gpt2" else {"num_key_value_heads": 1}
    model = build_causal_lm(causal_tokenizer, backbone, **TINY, **heads)
    config = model.config
    assert is_decoder_only(model) and config.model_type == backbone
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads) == (32, 2, 2)
    assert config.vocab_size == len(causal_tokenizer) == model.get_input_embeddings().weight.shape[0]
    assert config.max_position_embeddings == 1024
    assert (config.pad_token_id, config.eos_token_id) == (causal_tokenizer.pad_token_id, causal_tokenizer.eos_token_id)
    if backbone == "gpt2":
        assert config.n_inner == 64 and config.resid_pdrop == config.attn_pdrop == config.embd_pdrop == 0.0
    else:
        assert config.intermediate_size == 64 and config.num_key_value_heads == 1
    generation = model.generation_config
    assert generation.max_new_tokens == causal_tokenizer.id_length and generation.num_beams == 20
    assert generation.renormalize_logits  # fixed-length IDs: the untrained closing EOS scores 0
    again = build_causal_lm(causal_tokenizer, backbone, **TINY, **heads)
    for (name, weight), other in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(weight, other), name  # seeded


@pytest.mark.parametrize(
    "config",
    [
        GPT2Config(n_embd=32, n_layer=1, n_head=2, n_inner=64, n_positions=64),
        LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                    intermediate_size=64),
        Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                    intermediate_size=64),
    ],
    ids=BACKBONES,
)  # fmt: skip
def test_build_from_a_config_keeps_its_sizes(causal_tokenizer, config):
    model = build_causal_lm(causal_tokenizer, config, d_model=999)  # the sizes are the config's
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert model.config.vocab_size == len(causal_tokenizer)
    assert model.config.eos_token_id == causal_tokenizer.eos_token_id
    assert config.vocab_size != len(causal_tokenizer)  # the caller's config is not changed


@pytest.mark.parametrize("backbone", BACKBONES)
def test_a_pretrained_checkpoint_is_resized_to_the_item_vocabulary(causal_tokenizer, backbone, tmp_path):
    small = build_causal_lm(
        ItemTokenizer(minimal_t5_tokenizer(), from_codes([[0], [1]], ["a", "b"])), backbone, **TINY
    )
    small.save_pretrained(tmp_path)
    assert small.config.vocab_size < len(causal_tokenizer)
    model = build_causal_lm(causal_tokenizer, str(tmp_path))
    assert type(model) is type(small) and model.config.vocab_size == len(causal_tokenizer)
    embeddings = model.get_input_embeddings().weight
    assert embeddings.shape[0] == len(causal_tokenizer)
    # the checkpoint's own rows are kept, the new ID tokens get new rows
    old = small.get_input_embeddings().weight
    torch.testing.assert_close(embeddings[: len(old)], old)
    assert model.generation_config.eos_token_id == causal_tokenizer.eos_token_id
    tokens = torch.tensor([causal_tokenizer.encode_history(["item1", "item2"])])
    assert model(input_ids=tokens).logits.shape == (1, tokens.shape[1], len(causal_tokenizer))


def test_unknown_or_encoder_decoder_backbones_are_refused_clearly(causal_tokenizer):
    with pytest.raises(ValueError, match="Unknown backbone 'not-a-model'.*llama, gpt2, qwen2"):
        build_causal_lm(causal_tokenizer, "not-a-model")
    with pytest.raises(ValueError, match="no causal LM for the model type 't5'.*build_t5_model"):
        build_causal_lm(causal_tokenizer, "t5")


def test_causal_windows_read_at_most_max_history_items(causal_tokenizer):
    sequence = [f"item{i}" for i in range(30)]  # item i sits at position i
    rows = tokenize_causal_sequences([sequence], causal_tokenizer, max_history=8, window_stride=4)
    width = causal_tokenizer.id_length - 1  # no EOS between items
    targets, per_row = [], []
    for row in rows:
        per_row.append([])
        assert len(row["labels"]) == len(row["input_ids"]) == row["length"]
        items = causal_tokenizer.decode_history(row["input_ids"])
        for k, item in enumerate(items):
            labels = row["labels"][k * width : (k + 1) * width]
            if labels == [-100] * width:
                continue
            assert labels == row["input_ids"][k * width : (k + 1) * width]  # the target's codes, no EOS
            assert k >= 1 and min(item, 8 - 4 + 1) <= k <= 8  # it reads the k items before it
            targets.append(item)
            per_row[-1].append(item)
    assert sorted(targets) == list(range(1, 30))  # every next item once
    # the same windows and targets as the causal-encoder T5's packed rows
    packed = tokenize_sequences([sequence], causal_tokenizer, max_history=8, window_stride=4)
    assert [causal_tokenizer.decode_index(row["labels"]) for row in packed] == per_row
    with pytest.raises(ValueError, match="history_eos=False"):
        tokenize_causal_sequences([sequence], ItemTokenizer(minimal_t5_tokenizer(), make_semantic_ids()))


def _loss(model, batch):
    """The causal LM's loss in float64 (Transformers' own casts the logits to float32 first)."""
    logits = model(**{name: value for name, value in batch.items() if name != "labels"}).logits
    labels = batch["labels"][:, 1:]
    return torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels, ignore_index=-100)


def _prefix_rows(sequences):
    rows = {"history": [], "target": []}
    for seq in sequences:
        for j in range(1, len(seq)):
            rows["history"].append(seq[:j])
            rows["target"].append(seq[j])
    return datasets.Dataset.from_dict(rows)


@pytest.mark.parametrize("variable_length", [False, True], ids=["fixed", "variable"])
@pytest.mark.parametrize("backbone", BACKBONES)
def test_packed_loss_equals_one_row_per_target(backbone, variable_length):
    """Short users fit one window, so each target reads its whole history at the positions a row of its own gives
    it. The causal LM's loss is a mean over label tokens: the packed loss is the per-target losses weighted by their
    tokens, which for fixed-length IDs (every target the same number of tokens) is their plain mean."""
    tokenizer = _variable_tokenizer() if variable_length else ItemTokenizer(
        minimal_t5_tokenizer(), make_semantic_ids(), history_eos=False
    )  # fmt: skip
    model = build_causal_lm(tokenizer, backbone, **TINY).eval().double()
    sequences = cyclic_sequences(tokenizer.num_items, 4, 6, seed=1)
    collator = GenRecCollator(pad_token_id=tokenizer.pad_token_id)
    packed = tokenize_causal_sequences(sequences, tokenizer, max_history=20)
    assert len(packed) == len(sequences)
    batch = collator(list(packed))
    packed_loss = _loss(model, batch)
    torch.testing.assert_close(model(**batch).loss.double(), packed_loss, rtol=1e-6, atol=1e-6)

    eos = None if variable_length else tokenizer.eos_token_id
    single = collator(list(tokenize_examples(_prefix_rows(sequences), tokenizer, max_history=20)))
    rows = causal_rows(single["input_ids"], single["attention_mask"], single["labels"], tokenizer.pad_token_id, eos)
    losses, tokens = [], []
    for i in range(len(rows["input_ids"])):
        n = int(rows["attention_mask"][i].sum())  # one unpadded row at a time
        row = {name: value[i : i + 1, :n] for name, value in rows.items()}
        losses.append(_loss(model, row))
        tokens.append(int((row["labels"] != -100).sum()))
    weighted = sum(loss * n for loss, n in zip(losses, tokens)) / sum(tokens)
    torch.testing.assert_close(packed_loss, weighted, rtol=1e-10, atol=1e-10)
    if not variable_length:
        assert set(tokens) == {tokenizer.id_length - 1}  # codes only: the closing EOS is not a label
        torch.testing.assert_close(packed_loss, torch.stack(losses).mean(), rtol=1e-10, atol=1e-10)
    # the causal rows batched together (right-padded) give the same mean
    torch.testing.assert_close(_loss(model, rows), weighted, rtol=1e-10, atol=1e-10)

    # the trie-normalised loss too: packed equals one row per target, and it is below the full softmax's
    from hf_genrec.decoding.generate import build_trie_index, item_spellings

    constrained = ConstrainedLoss(
        tokenizer, build_trie_index(tokenizer), torch.from_numpy(item_spellings(tokenizer)), exclude_history=True
    )
    packed_constrained = constrained(model, batch)
    torch.testing.assert_close(packed_constrained, constrained(model, rows), rtol=1e-10, atol=1e-10)
    # scoring the trie's tokens alone (training) equals the loss over the full logits (evaluation, with outputs)
    dense, _ = constrained(model, batch, return_outputs=True)
    torch.testing.assert_close(packed_constrained, dense, rtol=1e-6, atol=1e-6)  # float32 sums, in another order
    assert packed_constrained < packed_loss


def _rows(tokenizer, sequences):
    return tokenize_examples(
        datasets.Dataset.from_dict({"history": [s[:-1] for s in sequences], "target": [s[-1] for s in sequences]}),
        tokenizer,
    )


def _eval_loss(model, tokenizer, rows, loss=None):
    batch = GenRecCollator(pad_token_id=tokenizer.pad_token_id)(list(rows))
    inputs = causal_rows(
        batch["input_ids"], batch["attention_mask"], batch["labels"], tokenizer.pad_token_id, tokenizer.eos_token_id
    )
    with torch.no_grad():
        return (loss(model.eval(), inputs) if loss else model.eval()(**inputs).loss).item()


@pytest.mark.parametrize("backbone", BACKBONES)
def test_trainer_trains_each_backbone_on_packed_rows(causal_tokenizer, backbone, tmp_path):
    sequences = cyclic_sequences(40, 60, 6)
    train = tokenize_causal_sequences(sequences[:50], causal_tokenizer)
    held_out = _rows(causal_tokenizer, sequences[50:])
    model = build_causal_lm(causal_tokenizer, backbone, **TINY)
    before = _eval_loss(model, causal_tokenizer, held_out)
    args = tiny_training_args(tmp_path, num_train_epochs=8, per_device_train_batch_size=8, learning_rate=1e-2)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=causal_tokenizer, train_dataset=train)
    trainer.train()
    after = _eval_loss(trainer.model, causal_tokenizer, held_out)
    assert after < 0.5 * before, (before, after)
    # Trainer's own evaluation loss reads history → target rows through causal_rows: the same number
    trainer.args.predict_with_generate = False
    trainer.args.prediction_loss_only = True
    loss = trainer.evaluate(held_out)["eval_loss"]
    assert loss == pytest.approx(after, rel=1e-5)


def test_constrained_loss_trains_a_decoder_only_model(causal_tokenizer, tmp_path):
    sequences = cyclic_sequences(40, 60, 6)
    train = tokenize_causal_sequences(sequences[:50], causal_tokenizer)
    held_out = _rows(causal_tokenizer, sequences[50:])
    model = build_causal_lm(causal_tokenizer, "llama", **TINY)
    args = tiny_training_args(tmp_path, num_train_epochs=8, per_device_train_batch_size=8, constrained_loss=True)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=causal_tokenizer, train_dataset=train)
    loss = trainer._constrained_loss()
    before = _eval_loss(model, causal_tokenizer, held_out, loss)
    trainer.train()
    assert _eval_loss(trainer.model, causal_tokenizer, held_out, loss) < 0.5 * before
    assert trainer.model.generation_config.renormalize_logits


def test_trainer_refuses_rows_of_the_other_kind(causal_tokenizer, tmp_path):
    sequences = cyclic_sequences(40, 4, 5)
    decoder = build_causal_lm(causal_tokenizer, "llama", **TINY)
    args = tiny_training_args(tmp_path)
    with pytest.raises(ValueError, match="tokenize_causal_sequences"):
        rows = tokenize_sequences(sequences, causal_tokenizer)
        GenRecTrainer(model=decoder, args=args, item_tokenizer=causal_tokenizer, train_dataset=rows)
    t5 = build_t5_model(causal_tokenizer, **TINY_T5)
    with pytest.raises(ValueError, match="encoder-decoder.*build_causal_lm"):
        rows = tokenize_causal_sequences(sequences, causal_tokenizer)
        GenRecTrainer(model=t5, args=args, item_tokenizer=causal_tokenizer, train_dataset=rows)
    short = build_causal_lm(causal_tokenizer, "llama", **TINY, max_positions=8)
    with pytest.raises(ValueError, match="reads 8 positions.*max_positions"):
        rows = tokenize_causal_sequences(sequences, causal_tokenizer)
        GenRecTrainer(model=short, args=args, item_tokenizer=causal_tokenizer, train_dataset=rows)
    with pytest.raises(ValueError, match="transition_weight_in_loss is not implemented for decoder-only"):
        prior_args = tiny_training_args(tmp_path, constrained_loss=True, transition_weight_in_loss=0.5)
        GenRecTrainer(model=decoder, args=prior_args, item_tokenizer=causal_tokenizer, transitions=object())


def test_trained_decoder_only_model_ranks_the_next_item(causal_tokenizer, tmp_path):
    """`trainer.evaluate` ranks with generate_items, which left-pads the histories as prompts for a causal LM."""
    sequences = cyclic_sequences(40, 120, 7)
    train = tokenize_causal_sequences(sequences[:108], causal_tokenizer)
    args = tiny_training_args(tmp_path, num_train_epochs=30, per_device_train_batch_size=8)
    model = build_causal_lm(causal_tokenizer, "llama", **TINY)
    trainer = GenRecTrainer(model=model, args=args, item_tokenizer=causal_tokenizer, train_dataset=train)
    trainer.train()
    metrics = trainer.evaluate(_rows(causal_tokenizer, sequences[108:]))
    assert metrics["eval_recall@1"] >= 0.75, metrics  # the next item of 40 (chance: 0.025)
