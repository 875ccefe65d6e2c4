"""BitsDropout: the same Bernoulli masks as torch's dropout, drawn more cheaply on a CPU."""

import pytest
import torch
from torch import nn

from hf_genrec import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.models.dropout import BitsDropout, add_embedding_dropout, bits_dropout, use_bits_dropout
from hf_genrec.models.sasrec import SASRecConfig, SASRecModel
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RandomIDs


@pytest.mark.parametrize("p", [0.05, 0.1, 0.5, 0.9])
def test_rate_and_scale(p):
    torch.manual_seed(0)
    out = bits_dropout(torch.ones(400_000), p)
    dropped = (out == 0).float().mean().item()
    # binomial standard error at 400k draws is below 0.001
    assert abs(dropped - p) < 0.004
    kept = out[out != 0]
    assert torch.allclose(kept, torch.full_like(kept, 1 / (1 - p)), rtol=1e-4)
    # unbiased: the mean of the output stays the input's
    assert abs(out.mean().item() - 1.0) < 0.02


def test_elements_are_independent():
    torch.manual_seed(1)
    dropped = (bits_dropout(torch.ones(1_000_000), 0.5) == 0).float()
    # neighbours come from the same 64-bit draw; they must still be uncorrelated
    for lag in (1, 2, 3, 4):
        corr = torch.corrcoef(torch.stack([dropped[:-lag], dropped[lag:]]))[0, 1].item()
        assert abs(corr) < 0.005, lag


def test_gradient_is_the_mask_and_shape_kept():
    torch.manual_seed(2)
    x = torch.randn(3, 5, 7, requires_grad=True)
    out = bits_dropout(x, 0.3)
    assert out.shape == x.shape
    out.sum().backward()
    mask = (out != 0).float() / (1 - round(0.3 * 65536) / 65536)
    assert torch.allclose(x.grad, mask)


def test_eval_and_zero_rate_are_identity_and_bad_rate_fails():
    x = torch.randn(4, 4)
    assert bits_dropout(x, 0.5, training=False) is x
    assert bits_dropout(x, 0.0) is x
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        bits_dropout(x, 1.0)
    module = BitsDropout(0.5).eval()
    assert module(x) is x


def test_seeded_draws_repeat():
    torch.manual_seed(3)
    a = bits_dropout(torch.ones(1000), 0.2)
    torch.manual_seed(3)
    assert torch.equal(a, bits_dropout(torch.ones(1000), 0.2))


def _tokenizer():
    items = [f"i{k}" for k in range(20)]
    return ItemTokenizer(minimal_t5_tokenizer(), RandomIDs(2, 8, seed=0).fit(None, items))


@pytest.mark.parametrize("causal", [False, True])
def test_models_use_it_without_changing_weights(causal, tmp_path):
    tokenizer = _tokenizer()
    model = build_t5_model(tokenizer, d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, seed=0,
                           causal_encoder=causal)  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    use_bits_dropout(model)
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert any(isinstance(m, BitsDropout) and m.p == model.config.dropout_rate for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    if causal:  # the causal T5 swaps its own at construction; a seeded build gives the same weights as before
        model.save_pretrained(tmp_path)
        loaded = type(model).from_pretrained(tmp_path)
        assert not any(type(m) is nn.Dropout for m in loaded.modules())


def test_trainer_swaps_a_plain_t5s_dropout(tmp_path):
    from hf_genrec import GenRecTrainer, GenRecTrainingArguments

    tokenizer = _tokenizer()
    model = build_t5_model(tokenizer, d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, seed=0)
    assert any(type(m) is nn.Dropout for m in model.modules())
    GenRecTrainer(
        model=model,
        args=GenRecTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, report_to="none", eval_strategy="no", load_best_model_at_end=False
        ),
        item_tokenizer=tokenizer,
    )
    assert not any(type(m) is nn.Dropout for m in model.modules())


def test_sasrec_uses_it():
    model = SASRecModel(SASRecConfig(num_items=10, hidden_size=8, num_layers=1, num_heads=1, max_positions=5))
    assert not any(type(m) is nn.Dropout for m in model.modules())


@pytest.mark.parametrize("backbone", ["llama", "t5"])
def test_embedding_dropout_drops_the_input_embeddings_only_while_training(backbone):
    from hf_genrec.recipes.arguments import ModelArguments
    from hf_genrec.recipes.backbone import build_backbone

    item_tokenizer = ItemTokenizer(
        minimal_t5_tokenizer(), RandomIDs(2, 8, seed=0).fit(None, [f"i{n}" for n in range(30)])
    )
    sizes = dict(d_model=16, d_ff=32, d_kv=8, num_heads=2, num_layers=1, num_decoder_layers=1)
    if backbone == "llama":
        sizes.update(backbone="llama", causal_encoder=False, item_positions=False)
    plain = build_backbone(item_tokenizer, ModelArguments(**sizes), seed=0)
    dropped = build_backbone(item_tokenizer, ModelArguments(**sizes, embedding_dropout=0.5), seed=0)
    # the same weights: the option adds a hook, not a parameter, so checkpoints do not change
    assert plain.state_dict().keys() == dropped.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), dropped.state_dict().values()))
    tokens = torch.arange(len(item_tokenizer))
    torch.manual_seed(0)
    dropped.train()
    share = (dropped.get_input_embeddings()(tokens) == 0).float().mean().item()
    assert 0.4 < share < 0.6
    dropped.eval()
    assert torch.equal(dropped.get_input_embeddings()(tokens), plain.get_input_embeddings()(tokens))
    # the backbone's own dropout is what it was (the T5's dropout_rate; the Llama's attention dropout)
    assert plain.config.to_dict() == dropped.config.to_dict()


def test_embedding_dropout_out_of_range_is_refused_when_the_arguments_are_built():
    from hf_genrec.recipes.arguments import ModelArguments

    with pytest.raises(ValueError, match=r"embedding_dropout must be in \[0, 1\)"):
        ModelArguments(embedding_dropout=1.0)
    with pytest.raises(ValueError, match="embedding_dropout must be in"):
        ModelArguments(embedding_dropout=-0.1)
    with pytest.raises(ValueError, match="has no input embeddings"):
        add_embedding_dropout(nn.Linear(2, 2), 0.1)  # a module without get_input_embeddings
