"""The checkpoint bundle: its files, its model card, the pipeline task, and clear errors for broken bundles."""

import json
import logging
import shutil

import datasets
import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer, pipeline

import hf_genrec  # noqa: F401  (registers the pipeline task)
from hf_genrec.configuration import CONFIG_NAME, GenRecConfig
from hf_genrec.examples import tokenize_examples
from hf_genrec.modeling import build_t5_model
from hf_genrec.recommender import GenerativeRecommender
from hf_genrec.semantic_ids import RandomIDs
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.trainer import GenRecTrainer, GenRecTrainingArguments

from .conftest import TINY_T5, cyclic_sequences

ITEMS = [f"item{i}" for i in range(30)]


def _split(sequences, start, stop):
    return datasets.Dataset.from_dict(
        {
            "history": [seq[:t] for seq in sequences for t in range(start, stop)],
            "target": [seq[t] for seq in sequences for t in range(start, stop)],
        }
    )


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A tiny recommender trained for a few seconds, evaluated on a test split, saved as a bundle."""
    quantizer = RandomIDs(n_levels=2, codebook_size=4, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(None, ITEMS))
    sequences = cyclic_sequences(30, 40, 6, seed=2)
    train = tokenize_examples(_split(sequences[:32], 1, 6), item_tokenizer)
    test = tokenize_examples(_split(sequences[32:], 5, 6), item_tokenizer)
    out = tmp_path_factory.mktemp("bundle")
    args = GenRecTrainingArguments(
        output_dir=str(out),
        num_train_epochs=8,
        per_device_train_batch_size=32,
        learning_rate=1e-2,
        eval_strategy="no",
        save_strategy="no",
        load_best_model_at_end=False,
        num_beams=8,
        eval_ks=[1, 5],
        logging_steps=2,
        use_cpu=True,
    )
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
    assert AutoTokenizer.from_pretrained(out).convert_tokens_to_ids("<b_3>") > 3
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
    assert "| epoch | step | loss" in text  # the training log
    assert "- Transformers: " in text and "- hf_genrec: " in text


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
    with caplog.at_level(logging.WARNING, logger="hf_genrec.configuration"):
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
