"""One `FusionConfig`: the training arguments inherit its fields, the bundle's config keeps it, `recommend` takes it."""

from __future__ import annotations

import dataclasses
import json

import pytest

from hf_genrec.bundle.config import CONFIG_NAME, GenRecConfig
from hf_genrec.decoding.fusion import FusionConfig
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.training.arguments import GenRecTrainingArguments


def test_training_arguments_carry_the_fusion_fields_once(tmp_path):
    args = GenRecTrainingArguments(
        output_dir=str(tmp_path), transition_weight=2.0, scorer_top_k=7, exclude_history=True, use_cpu=True
    )
    assert args.fusion == FusionConfig(transition_weight=2.0, scorer_top_k=7, exclude_history=True)
    # a model trained with the prior in its loss ranks with renormalised steps
    in_loss = GenRecTrainingArguments(
        output_dir=str(tmp_path), constrained_loss=True, transition_weight_in_loss=1.0, use_cpu=True
    )
    assert in_loss.fusion.transition_normalize
    own = {f.name for f in dataclasses.fields(GenRecTrainingArguments)}
    assert set(FusionConfig.field_names()) <= own
    with pytest.raises(ValueError, match="scorer_weight must be >= 0"):
        GenRecTrainingArguments(output_dir=str(tmp_path), scorer_weight=-1.0, use_cpu=True)


def test_bundle_config_nests_fusion_and_reads_the_flat_keys_of_older_bundles(tmp_path):
    config = GenRecConfig(num_beams=8, fusion=FusionConfig(transition_weight=4.0, exclude_history=True))
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / CONFIG_NAME).read_text())
    assert saved["fusion"]["transition_weight"] == 4.0 and "transition_weight" not in saved
    assert GenRecConfig.from_pretrained(tmp_path) == dataclasses.replace(
        config, library_version=saved["library_version"]
    )
    # hf_genrec 0.1 wrote the fusion settings beside the other keys
    legacy = {k: v for k, v in saved.items() if k != "fusion"} | {"transition_weight": 2.0, "scorer_top_k": 50}
    (tmp_path / CONFIG_NAME).write_text(json.dumps(legacy))
    loaded = GenRecConfig.from_pretrained(tmp_path)
    assert loaded.fusion == FusionConfig(transition_weight=2.0, scorer_top_k=50)


def test_fusion_config_rejects_unknown_settings_by_name():
    with pytest.raises(TypeError, match="transition_wieght"):
        FusionConfig.from_dict({"transition_wieght": 1.0})
    assert FusionConfig(transition_weight=1.0).replace(transition_weight=None, scorer_weight=2.0) == FusionConfig(
        transition_weight=1.0, scorer_weight=2.0
    )


def test_recommend_takes_a_fusion_config_or_its_fields(tiny_model, item_tokenizer):
    recommender = GenerativeRecommender(tiny_model, item_tokenizer, GenRecConfig(num_beams=6, top_k=3))
    history = [[item_tokenizer.item_ids[0], item_tokenizer.item_ids[1]]]
    plain = recommender.recommend(history)
    excluded = recommender.recommend(history, exclude_history=True)
    assert recommender.recommend(history, fusion=FusionConfig(exclude_history=True)) == excluded
    assert not {item for item, _ in excluded[0]} & set(history[0])
    assert plain != excluded or not {item for item, _ in plain[0]} & set(history[0])
    with pytest.raises(TypeError, match="scorer_wieght"):
        recommender.recommend(history, scorer_wieght=1.0)
    with pytest.raises(ValueError, match="transition_weight needs the item transitions"):
        recommender.recommend(history, transition_weight=1.0)
