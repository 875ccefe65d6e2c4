"""The checkpoint bundle: its files, its model card, the pipeline task, and clear errors for broken bundles."""

import json
import logging
import shutil

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

import hf_genrec  # noqa: F401  (registers the pipeline task)
from hf_genrec.bundle.config import CONFIG_NAME, GenRecConfig
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RandomIDs
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.arguments import GenRecTrainingArguments
from hf_genrec.training.examples import tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import (
    TINY_T5,
    assert_plain_tokenizer_spells_items,
    cyclic_sequences,
    history_target_split,
    tiny_training_args,
)

ITEMS = [f"item{i}" for i in range(30)]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny recommender trained for a few seconds, evaluated on a test split, saved as a bundle."""
    quantizer = RandomIDs(n_levels=2, codebook_size=4, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(None, ITEMS))
    sequences = cyclic_sequences(30, 40, 6, seed=2)
    train = tokenize_examples(history_target_split(sequences[:32], 1, 6), item_tokenizer)
    test = tokenize_examples(history_target_split(sequences[32:], 5, 6), item_tokenizer)
    out = tmp_path_factory.mktemp("bundle")
    args = tiny_training_args(
        out, num_train_epochs=8, per_device_train_batch_size=32, num_beams=8, logging_steps=2, seed=42,
        disable_tqdm=False,
    )  # fmt: skip
    trainer = GenRecTrainer(
        model=build_t5_model(item_tokenizer, seed=0, **TINY_T5),
        args=args,
        item_tokenizer=item_tokenizer,
        train_dataset=train,
        genrec_config=GenRecConfig(num_beams=8, top_k=5, dataset="tiny-walk", id_scheme="random"),
        quantizer=quantizer,
    )
    trainer.train()
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    trainer.save_model(str(out))
    return out, metrics, [seq[:5] for seq in sequences[32:38]]


def test_bundle_files(bundle):
    out, _, _ = bundle
    must = [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        CONFIG_NAME,
        "README.md",
        "semantic_ids/semantic_ids.json",
        "semantic_ids/codes.safetensors",
        "semantic_ids/item_ids.json",
        "quantizer/quantizer_config.json",
        "quantizer/quantizer.safetensors",
    ]
    assert [name for name in must if not (out / name).is_file()] == []
    for pattern in ("*.bin", "*.pt", "*.pth", "*.pkl", "*.pickle"):
        assert not list(out.rglob(pattern)), pattern
    # plain Transformers classes load it, no remote code
    assert type(AutoModelForSeq2SeqLM.from_pretrained(out)).__name__ == "T5ForConditionalGeneration"
    # the tokenizer spells items as a fresh item tokenizer of the same IDs does (what the model was trained on)
    item_tokenizer = ItemTokenizer(
        minimal_t5_tokenizer(), RandomIDs(n_levels=2, codebook_size=4, seed=0).fit(None, ITEMS)
    )
    assert_plain_tokenizer_spells_items(AutoTokenizer.from_pretrained(out), item_tokenizer)
    assert json.loads((out / "quantizer" / "quantizer_config.json").read_text())["scheme"] == "random"


def test_model_card_metadata_and_text(bundle):
    out, metrics, _ = bundle
    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "hf_genrec"
    assert {"generative-recommendation", "semantic-ids"} <= set(card.data.tags)
    assert card.data.datasets == ["tiny-walk"]
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["recall@5"] == pytest.approx(metrics["test_recall@5"], abs=1e-6)
    assert results["ndcg@5"] == pytest.approx(metrics["test_ndcg@5"], abs=1e-6)
    assert all(r.dataset_split == "test" for r in card.data.eval_results)
    text = card.text
    assert 'pipeline("generative-recommendation"' in text and "GenerativeRecommender.from_pretrained" in text
    assert "Scheme `random`: 30 items" in text and "perplexity" in text  # the ID diagnostics
    assert "`learning_rate`: `0.01`" in text and "`num_beams`: `8`" in text  # non-default hyperparameters
    # values Trainer's __post_init__ normalises are not choices of the user (they used to be listed)
    for normalised in ("`debug`", "`accelerator_config`", "`gradient_checkpointing`"):
        assert normalised not in text
    assert "| epoch | step | loss" in text  # the training log
    assert "- Transformers: " in text and "- hf_genrec: " in text


def test_model_card_sets_the_bundle_beside_its_baselines(bundle):
    from hf_genrec.bundle.model_card import GenRecCardData, build_model_card

    out, _, _ = bundle
    recommender = GenerativeRecommender.from_pretrained(out)
    card_data = GenRecCardData(
        test_metrics={"recall@10": 0.25, "ndcg@10": 0.125, "invalid_rate": 0.0},
        baselines={"most_popular": {"recall@10": 0.0625, "ndcg@10": 0.03125}, "my_ranker": {"recall@10": 0.5}},
    )
    lines = build_model_card(recommender.item_tokenizer, recommender.config, card_data).splitlines()
    header = lines.index("| ranker | recall@10 | ndcg@10 |")
    # the bundle first, each baseline under it; a metric a baseline lacks stays empty, unknown names are shown as given
    assert lines[header + 2 : header + 5] == [
        "| **this bundle** | **0.2500** | **0.1250** |",
        "| the most popular items | 0.0625 | 0.0312 |",
        "| `my_ranker` | 0.5000 |  |",
    ]
    no_baselines = build_model_card(recommender.item_tokenizer, recommender.config, GenRecCardData())
    assert "| ranker |" not in no_baselines and "Simpler rankers" not in no_baselines


def test_recommender_and_pipeline_agree(bundle):
    out, _, histories = bundle
    recommender = GenerativeRecommender.from_pretrained(out)
    assert recommender.quantizer is not None and recommender.quantizer.n_encoded == 30
    expected = recommender.recommend(histories, k=5)
    recommend = pipeline("generative-recommendation", model=str(out))
    batch = recommend(histories, top_k=5)
    assert [[r["item_id"] for r in row] for row in batch] == [[i for i, _ in row] for row in expected]
    one = recommend(histories[0], top_k=3)
    assert [r["item_id"] for r in one] == [i for i, _ in expected[0][:3]]
    torch.testing.assert_close(torch.tensor([r["score"] for r in one]), torch.tensor([s for _, s in expected[0][:3]]))


# ------------------------------------------------------------------ broken bundles
@pytest.fixture
def copy(bundle, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(bundle[0], target)
    return target


def test_missing_item_map(copy):
    shutil.rmtree(copy / "semantic_ids")
    with pytest.raises(FileNotFoundError, match="missing semantic_ids/"):
        GenerativeRecommender.from_pretrained(copy)


def test_item_map_and_tokenizer_disagree(copy):
    bigger = RandomIDs(n_levels=2, codebook_size=9, seed=1).fit(None, ITEMS)
    shutil.rmtree(copy / "semantic_ids")
    bigger.save(copy / "semantic_ids")
    with pytest.raises(ValueError, match="lacks .* of the ID tokens its item map needs"):
        GenerativeRecommender.from_pretrained(copy)


def test_config_from_a_newer_version_warns_and_missing_keys_raise(copy, caplog):
    path = copy / CONFIG_NAME
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "library_version": "9.1.0", "speculative_decoding": True}))
    with caplog.at_level(logging.WARNING, logger="hf_genrec.bundle.config"):
        GenerativeRecommender.from_pretrained(copy)
    assert "speculative_decoding" in caplog.text and "pip install -U hf_genrec" in caplog.text
    assert "newer than this one" in caplog.text
    del data["num_beams"]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"lacks the required keys \['num_beams'\]"):
        GenerativeRecommender.from_pretrained(copy)


def test_truncated_weights(copy):
    weights = copy / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ValueError, match="truncated or damaged"):
        GenerativeRecommender.from_pretrained(copy)


def test_plain_t5_folder_in_the_pipeline(copy):
    for name in (CONFIG_NAME, "README.md"):
        (copy / name).unlink()
    shutil.rmtree(copy / "semantic_ids")
    with pytest.raises(FileNotFoundError, match="not an hf_genrec checkpoint"):
        pipeline("generative-recommendation", model=str(copy))


# ------------------------------------------------------------------ the Hub, end to end (loopback server)
FRESH_PROCESS = """
import json, sys
from hf_genrec import GenerativeRecommender
rec = GenerativeRecommender.from_pretrained(sys.argv[1], revision="main")
print(json.dumps(rec.recommend(json.loads(sys.argv[2]), k=5)))
"""


@pytest.fixture
def hub(monkeypatch, tmp_path):
    from .hub_server import use_loopback_hub

    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        yield hub


def _no_pickles(files):
    return [name for name in files if name.endswith((".bin", ".pt", ".pth", ".pkl")) or "checkpoint-" in name]


def test_push_then_load_by_repo_id_in_a_fresh_process(bundle, hub, tmp_path):
    import os
    import subprocess
    import sys

    out, _, histories = bundle
    recommender = GenerativeRecommender.from_pretrained(out)
    expected = recommender.recommend(histories, k=5)
    recommender.push_to_hub("someone/tiny-recommender")
    files = hub.files("someone/tiny-recommender")
    assert {"model.safetensors", "config.json", "tokenizer.json", CONFIG_NAME, "README.md"} <= set(files)
    assert {"semantic_ids/codes.safetensors", "quantizer/quantizer.safetensors"} <= set(files)
    assert _no_pickles(files) == []
    assert b"someone/tiny-recommender" in files["README.md"]  # the card's quick start names the repo

    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")}
    env.update(hub.env(str(tmp_path / "fresh-home")))
    run = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, "someone/tiny-recommender", json.dumps(histories)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert [[i for i, _ in row] for row in got] == [[i for i, _ in row] for row in expected]
    torch.testing.assert_close(
        torch.tensor([[s for _, s in row] for row in got]), torch.tensor([[s for _, s in row] for row in expected])
    )


def test_cached_bundle_loads_offline_and_missing_repos_say_so(bundle, hub, tmp_path):
    from huggingface_hub.errors import RepositoryNotFoundError

    out, _, histories = bundle
    GenerativeRecommender.from_pretrained(out).push_to_hub("someone/cached")
    cache = tmp_path / "cache"
    online = GenerativeRecommender.from_pretrained("someone/cached", cache_dir=cache)
    offline = GenerativeRecommender.from_pretrained("someone/cached", cache_dir=cache, local_files_only=True)
    assert offline.recommend(histories[:2], k=3) == online.recommend(histories[:2], k=3)
    with pytest.raises(RepositoryNotFoundError):
        GenerativeRecommender.from_pretrained("someone/never-pushed", cache_dir=cache)
    # offline, a mistyped folder reads as a repo id: the error names both readings
    with pytest.raises(FileNotFoundError, match=r"'outputs/ml-1mm' is not a folder here .* not in the local cache"):
        GenerativeRecommender.from_pretrained("outputs/ml-1mm", cache_dir=cache, local_files_only=True)


def test_trainer_push_to_hub_pushes_the_bundle_without_pickles(hub, tmp_path):
    quantizer = RandomIDs(n_levels=2, codebook_size=4, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(None, ITEMS))
    train = tokenize_examples(history_target_split(cyclic_sequences(30, 16, 5, seed=3), 1, 5), item_tokenizer)
    args = GenRecTrainingArguments(
        output_dir=str(tmp_path / "run"),
        num_train_epochs=2,
        per_device_train_batch_size=32,
        eval_strategy="no",
        save_strategy="epoch",
        load_best_model_at_end=False,
        push_to_hub=True,
        hub_model_id="someone/trained",
        hub_strategy="every_save",
        num_beams=8,
        eval_ks=[5],
        use_cpu=True,
    )
    trainer = GenRecTrainer(
        model=build_t5_model(item_tokenizer, seed=0, **TINY_T5),
        args=args,
        item_tokenizer=item_tokenizer,
        train_dataset=train,
        quantizer=quantizer,
    )
    trainer.train()
    trainer.push_to_hub()
    files = hub.files("someone/trained")
    assert {"model.safetensors", "README.md", CONFIG_NAME, "semantic_ids/item_ids.json"} <= set(files)
    assert "quantizer/quantizer_config.json" in files
    assert _no_pickles(files) == [] and "training_args.json" in files
    assert b"library_name: hf_genrec" in files["README.md"]
    # every checkpoint folder is a bundle with its card
    checkpoint = next((tmp_path / "run").glob("checkpoint-*"))
    assert (checkpoint / "README.md").is_file() and (checkpoint / "semantic_ids").is_dir()


def test_cli_push(bundle, hub, capsys):
    from hf_genrec.cli.main import main

    out, _, _ = bundle
    assert main(["push", str(out), "someone/from-cli", "--commit-message", "first"]) == 0
    assert "Pushed" in capsys.readouterr().out
    assert "model.safetensors" in hub.files("someone/from-cli")
    assert main(["push", str(out.parent / "nowhere"), "someone/from-cli"]) == 1
    assert "not a complete hf_genrec bundle" in capsys.readouterr().err


def test_non_default_arguments_lists_only_what_was_set(tmp_path):
    from hf_genrec.training.arguments import non_default_arguments

    assert non_default_arguments(GenRecTrainingArguments(output_dir=str(tmp_path))) == {}
    args = GenRecTrainingArguments(output_dir=str(tmp_path), learning_rate=0.003, transition_weights=[0.0, 2.0])
    assert non_default_arguments(args) == {"learning_rate": 0.003, "transition_weights": [0.0, 2.0]}
