"""A decoder-only backbone behind the same objects as the T5 (issue 40): a tiny Llama trains with `GenRecTrainer`,
ranks, saves a bundle that `GenerativeRecommender`, the pipeline and the loopback Hub load back with the same
recommendations, and `hf-genrec train --model decoder` runs end to end."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, pipeline

import hf_genrec  # noqa: F401  (registers the pipeline task)
from hf_genrec.bundle.config import CONFIG_NAME, GenRecConfig
from hf_genrec.cli.main import main
from hf_genrec.models.causal_lm import build_causal_lm
from hf_genrec.semantic_ids import RandomIDs
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.examples import tokenize_causal_sequences, tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import cyclic_sequences, history_target_split, tiny_training_args
from .test_cli import data_root  # noqa: F401  (the tiny RecBole-format dataset fixture)

ITEMS = [f"item{i}" for i in range(30)]
TINY_LLAMA = dict(d_model=32, num_layers=2, num_heads=2, d_ff=64, dropout=0.0, num_key_value_heads=1)
#: `hf-genrec train --model decoder` at test sizes: the ml-100k recipe and the decoder overlay under these flags
TINY_DECODER_FLAGS = [
    "--d_model", "16", "--d_ff", "32", "--num_heads", "2", "--num_layers", "1", "--n_levels", "2",
    "--codebook_size", "4", "--num_train_epochs", "3", "--max_train_minutes", "2", "--per_device_train_batch_size",
    "16", "--learning_rate", "0.01", "--num_beams", "10", "--transition_weights", "0.0", "2.0", "--use_cpu", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny Llama trained for a few seconds on causal rows (every next item of a user in one pass), evaluated on
    held-out users and saved as a bundle."""
    quantizer = RandomIDs(n_levels=2, codebook_size=4, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(None, ITEMS), history_eos=False)
    sequences = cyclic_sequences(30, 40, 6, seed=2)
    train = tokenize_causal_sequences(sequences[:32], item_tokenizer, max_history=5)
    test = tokenize_examples(history_target_split(sequences[32:], 5, 6), item_tokenizer)
    out = tmp_path_factory.mktemp("llama-bundle")
    model = build_causal_lm(item_tokenizer, "llama", seed=0, **TINY_LLAMA)
    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    args = tiny_training_args(out, num_train_epochs=25, per_device_train_batch_size=8, num_beams=8, logging_steps=5)
    trainer = GenRecTrainer(
        model=model,
        args=args,
        item_tokenizer=item_tokenizer,
        train_dataset=train,
        genrec_config=GenRecConfig(num_beams=8, top_k=5, max_history=5, dataset="tiny-walk", id_scheme="random"),
        quantizer=quantizer,
    )
    trainer.train()
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    trainer.save_model(str(out))
    histories = [seq[:5] for seq in sequences[32:38]]
    return dict(out=out, trainer=trainer, metrics=metrics, histories=histories, initial=initial, sequences=sequences)


def _items(ranked):
    return [[item for item, _ in row] for row in ranked]


def _scores(ranked):
    return torch.tensor([[score for _, score in row] for row in ranked])


def test_a_tiny_llama_trains_in_causal_rows_and_ranks_the_next_item(trained):
    trainer, metrics = trained["trainer"], trained["metrics"]
    assert type(trainer.model).__name__ == "LlamaForCausalLM"
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) >= 3 and losses[-1] < 0.5 * losses[0]
    moved = max((p.detach() - trained["initial"][n]).abs().max().item() for n, p in trainer.model.named_parameters())
    assert moved > 0.05
    # the walk (item i is followed by item i + 1) is learnt: far above chance (5 of 30 items)
    assert metrics["test_recall@5"] > 0.8 and metrics["test_invalid_rate"] == 0.0
    assert "test_loss" in metrics and metrics["test_loss"] < losses[0]
    recommender = GenerativeRecommender(trainer.model, trainer.item_tokenizer, trainer.genrec_config)
    ranked = recommender.recommend([[f"item{i}", f"item{i + 1}", f"item{i + 2}"] for i in range(5)], k=5)
    assert [row[0][0] for row in ranked] == [f"item{i + 3}" for i in range(5)]
    assert all(item in ITEMS for row in _items(ranked) for item in row)


def test_the_bundle_loads_back_with_the_same_recommendations(trained):
    out, trainer, histories = trained["out"], trained["trainer"], trained["histories"]
    in_memory = GenerativeRecommender(trainer.model, trainer.item_tokenizer, trainer.genrec_config)
    expected = in_memory.recommend(histories, k=5)
    loaded = GenerativeRecommender.from_pretrained(out)
    assert type(loaded.model).__name__ == "LlamaForCausalLM" and not loaded.model.config.is_encoder_decoder
    got = loaded.recommend(histories, k=5)
    assert _items(got) == _items(expected)
    torch.testing.assert_close(_scores(got), _scores(expected))
    # the bundle says what its model is, and plain Transformers loads the weights with the causal-LM Auto class
    assert json.loads((out / CONFIG_NAME).read_text())["backbone"] == "llama"
    assert AutoConfig.from_pretrained(out).model_type == "llama"
    assert type(AutoModelForCausalLM.from_pretrained(out)).__name__ == "LlamaForCausalLM"
    card = (out / "README.md").read_text()
    assert "decoder-only causal LM (`llama`)" in card and "`AutoModelForCausalLM`" in card
    assert "decoder-only" in card.split("---")[1] and "- t5" not in card.split("---")[1]  # the tags
    # the search methods agree: the reference prefix_allowed_tokens_fn, stock generate, the default
    for method in ("reference", "vectorised"):
        other = loaded.recommend(histories, k=5, method=method)
        assert _items(other) == _items(got), method
        torch.testing.assert_close(_scores(other), _scores(got), atol=1e-4, rtol=1e-4)


def test_the_pipeline_loads_a_decoder_only_bundle(trained):
    out, histories = trained["out"], trained["histories"]
    expected = GenerativeRecommender.from_pretrained(out).recommend(histories, k=5)
    recommend = pipeline("generative-recommendation", model=str(out))
    assert type(recommend.model).__name__ == "LlamaForCausalLM"
    got = recommend(histories, top_k=5)
    assert [[entry["item_id"] for entry in row] for row in got] == _items(expected)
    torch.testing.assert_close(torch.tensor([[entry["score"] for entry in row] for row in got]), _scores(expected))
    one = recommend(histories[0], top_k=3)  # one history in, one list out
    assert [entry["item_id"] for entry in one] == _items(expected)[0][:3]


def test_the_bundle_round_trips_through_the_hub(trained, monkeypatch, tmp_path):
    from .hub_server import use_loopback_hub

    out, histories = trained["out"], trained["histories"]
    recommender = GenerativeRecommender.from_pretrained(out)
    expected = recommender.recommend(histories, k=5)
    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        recommender.push_to_hub("someone/tiny-llama-recommender")
        files = hub.files("someone/tiny-llama-recommender")
        assert {"model.safetensors", "config.json", "tokenizer.json", CONFIG_NAME, "README.md"} <= set(files)
        assert not [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl"))]
        assert json.loads(files["config.json"])["model_type"] == "llama"
        pulled = GenerativeRecommender.from_pretrained("someone/tiny-llama-recommender", cache_dir=tmp_path / "dl")
        got = pulled.recommend(histories, k=5)
        by_pipeline = pipeline("generative-recommendation", model="someone/tiny-llama-recommender")(histories, top_k=5)
    assert type(pulled.model).__name__ == "LlamaForCausalLM"
    assert _items(got) == _items(expected)
    torch.testing.assert_close(_scores(got), _scores(expected))
    assert [[entry["item_id"] for entry in row] for row in by_pipeline] == _items(expected)


def test_saving_records_the_backbone_of_whatever_model_is_saved(trained, tmp_path):
    """A recommender built in Python, with a `GenRecConfig` that names no backbone, still writes it."""
    trainer = trained["trainer"]
    GenerativeRecommender(trainer.model, trainer.item_tokenizer, GenRecConfig()).save_pretrained(tmp_path / "llama")
    assert GenRecConfig.from_pretrained(tmp_path / "llama").backbone == "llama"
    from hf_genrec.models.t5 import build_t5_model

    from .conftest import TINY_T5

    t5 = build_t5_model(trainer.item_tokenizer, seed=0, **TINY_T5)
    GenerativeRecommender(t5, trainer.item_tokenizer, GenRecConfig()).save_pretrained(tmp_path / "t5")
    assert GenRecConfig.from_pretrained(tmp_path / "t5").backbone == "t5"
    assert "a T5 reads" in (tmp_path / "t5" / "README.md").read_text()


def test_cli_trains_the_decoder_recipe_end_to_end(data_root, tmp_path, capsys, caplog):  # noqa: F811
    from hf_genrec.recipes.shipped import recipe_path

    out = tmp_path / "decoder"
    caplog.set_level(logging.INFO)
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out), "--model",
            "decoder", "--item_features", str(data_root / "features.npy"), *TINY_DECODER_FLAGS]  # fmt: skip
    assert main(argv) == 0
    said = [record.getMessage() for record in caplog.records]
    assert f"[recipe] {recipe_path('ml-100k')} + {recipe_path('decoder')}" in said
    printed = capsys.readouterr().out
    assert "| hf_genrec (rqkmeans) |" in printed and "| most_popular |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "decoder" and results["backbone"] == "llama"
    assert results["test"]["invalid_rate"] == 0.0 and results["data"]["users"] == 30
    # every next item of each user's training part (7 items, 2 held out) in one causal row per user
    assert results["train_targets"] == 30 * (7 - 2 - 1) and results["train_examples"] == 30
    recommender = GenerativeRecommender.from_pretrained(out)
    assert type(recommender.model).__name__ == "LlamaForCausalLM"
    assert recommender.model.config.num_hidden_layers == 1 and recommender.model.config.hidden_size == 16
    assert recommender.config.backbone == "llama" and recommender.item_tokenizer.history_eos is False
    assert recommender.transitions is not None  # the recipe's successor prior, fused as for the T5
    assert main(["recommend", str(out), "--history", "3", "4", "-k", "5", "--json"]) == 0
    ranked = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(ranked) == 5 and {"3", "4"}.isdisjoint(entry["item_id"] for entry in ranked)  # exclude_history


def test_a_decoder_backbone_with_t5_options_on_fails_before_reading_data(tmp_path, capsys):
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(tmp_path / "nowhere"), "--output_dir",
            str(tmp_path / "out"), "--backbone", "gpt2"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "backbone='gpt2' is a decoder-only causal LM" in err and "--model decoder" in err
    assert "causal_encoder" in err and "--causal_encoder false" in err
    assert not (tmp_path / "nowhere").exists()


def test_two_processes_train_a_decoder_only_model_and_rank_every_user_once(tmp_path):
    """`accelerate launch` with 2 CPU processes (gloo), as tests/test_accelerate.py runs the T5: the Llama's
    gradients are shared (both processes end with the same weights after training on different rows), and every test
    user is ranked exactly once, with the metrics one process gets from the saved bundle."""
    from pathlib import Path

    from safetensors.torch import load_file

    from . import accelerate_eval
    from .test_accelerate import launch_two_processes

    bundle, multi, single = tmp_path / "bundle", tmp_path / "multi.json", tmp_path / "single.json"
    launch_two_processes(bundle, multi, "--train", "--decoder")
    accelerate_eval.main(str(bundle), str(single))  # the same bundle, ranked by a single process

    two, one = json.loads(multi.read_text()), json.loads(single.read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    ranks = [json.loads(Path(f"{multi}.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) > 0
    assert all(a != b for a, b in zip(ranks[0]["batches"], ranks[1]["batches"]))
    weights = [load_file(f"{multi}.rank{rank}.safetensors") for rank in (0, 1)]
    assert weights[0].keys() == weights[1].keys() and any("self_attn" in name for name in weights[0])
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0)
    assert ranks[0]["largest_change"] > 0.05 and two["train_losses"][-1] < 0.8 * two["train_losses"][0]
    assert json.loads((bundle / "config.json").read_text())["model_type"] == "llama"
    assert len(two["labels"]) == len(two["predictions"]) == accelerate_eval.N_USERS
    assert two["labels"] == one["labels"] == one["expected_labels"]
    assert two["predictions"] == one["predictions"]
    ranking = [k for k in one["metrics"] if "@" in k or "invalid" in k]
    assert {k: two["metrics"][k] for k in ranking} == {k: one["metrics"][k] for k in ranking}
    assert one["metrics"]["test_recall@5"] > 0.3


def test_cli_starts_from_a_pretrained_causal_lm_and_its_own_tokenizer(data_root, tmp_path, capsys):  # noqa: F811
    """``--backbone FOLDER``: the checkpoint's weights and sizes (not the flags'), its own tokenizer taking the item
    tokens, and its embeddings resized to them."""
    from transformers import GPT2Config, GPT2LMHeadModel

    checkpoint = tmp_path / "my-gpt2"
    tokenizer = minimal_t5_tokenizer()
    tokenizer.add_tokens(["<only-mine>"])  # a token of this checkpoint's tokenizer alone
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_embd=24, n_layer=1, n_head=2, n_positions=256)
    ).save_pretrained(checkpoint)
    tokenizer.save_pretrained(checkpoint)
    out = tmp_path / "from-pretrained"
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out), "--model",
            "decoder", "--backbone", str(checkpoint), "--item_features", str(data_root / "features.npy"),
            *TINY_DECODER_FLAGS]  # fmt: skip
    assert main(argv) == 0
    recommender = GenerativeRecommender.from_pretrained(out)
    config = recommender.model.config
    assert (config.model_type, config.n_embd, config.n_positions) == ("gpt2", 24, 256)  # the checkpoint's sizes
    assert "<only-mine>" in recommender.item_tokenizer.tokenizer.get_vocab()
    assert recommender.model.get_input_embeddings().num_embeddings == len(recommender.item_tokenizer)
    assert recommender.config.backbone == str(checkpoint)
    results = json.loads((out / "results.json").read_text())
    assert results["backbone"] == str(checkpoint) and results["test"]["invalid_rate"] == 0.0
