"""The `hf-genrec` command line, end to end on a tiny RecBole-format dataset written in the test."""

import dataclasses
import json
import logging

import numpy as np
import pytest
import torch

from hf_genrec.cli.main import main
from hf_genrec.models.prior import ItemTransitions

from .conftest import cyclic_sequences

# `--recipe none`: the options' own defaults under these flags, not the recipe shipped for ml-100k
TINY_FLAGS = [
    "--recipe", "none", "--d_model", "16", "--d_ff", "32", "--d_kv", "8", "--num_heads", "2", "--num_layers", "1",
    "--num_decoder_layers", "1", "--n_levels", "2", "--codebook_size", "4", "--num_train_epochs", "2",
    "--per_device_train_batch_size", "64", "--num_beams", "10", "--use_cpu", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    """``<root>/ml-100k/`` in RecBole atomic format: 30 users walking 20 items, plus a features array."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "ml-100k"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u, seq in enumerate(cyclic_sequences(20, 30, 7, seed=1)):
        lines += [f"u{u}\t{item[4:]}\t5\t{1000 + t}" for t, item in enumerate(seq)]
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    items += [f"{i}\tMovie {i}\t199{i % 10}\tDrama" for i in range(20)]
    (folder / "ml-100k.item").write_text("\n".join(items) + "\n")
    np.save(root / "features.npy", np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32))
    return root


def test_train_then_recommend(data_root, tmp_path, capsys, caplog):
    out = tmp_path / "run"
    caplog.set_level(logging.INFO)
    # Items appear in sequences in first-appearance order, so the features file order is that order too.
    code = main(
        ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
         "--item_features", str(data_root / "features.npy"), *TINY_FLAGS]
    )  # fmt: skip
    assert code == 0
    # it said what it was doing, stage by stage, as each began
    said = [record.getMessage() for record in caplog.records]
    stages = ["[recipe] none", "[data] Reading ml-100k", "[ids] Building item IDs: rqkmeans", "[train] Training",
              "[test] Ranking 30 test users", f"[save] Saving the recommender and results.json to {out}"]  # fmt: skip
    at = [next(i for i, message in enumerate(said) if message.startswith(stage)) for stage in stages]
    assert at == sorted(at)
    assert "at most 2 epochs" in said[at[3]] and f"checkpoints in {out}" in said[at[3]]
    printed = capsys.readouterr().out
    assert "| hf_genrec (rqkmeans) |" in printed and "| most_popular |" in printed
    results = json.loads((out / "results.json").read_text())
    keys = {"recall@5", "recall@10", "ndcg@5", "ndcg@10", "invalid_rate"}
    assert results["dataset"] == "ml-100k" and "leave-one-out" in results["protocol"]
    assert keys <= set(results["test"]) and keys <= set(results["baselines"]["most_popular"])
    assert results["test"]["invalid_rate"] == 0.0
    assert results["train_seconds"] > 0 and results["data"]["users"] == 30
    # each test user's hits, by user id, for paired comparisons with another run (`paired.py files`)
    per_user = json.loads((out / "test_per_user.json").read_text())
    assert sorted(per_user["users"]) == sorted(f"u{u}" for u in range(30))
    assert sum(per_user["recall@10"]) == pytest.approx(30 * results["test"]["recall@10"])
    assert np.mean(per_user["ndcg@5"]) == pytest.approx(results["test"]["ndcg@5"])
    assert (out / "quantizer").is_dir() and (out / "semantic_ids").is_dir()
    # the data's titles travel with the bundle, for pages that show the items (hf-genrec demo)
    assert json.loads((out / "item_titles.json").read_text())["3"] == "Movie 3"

    assert main(["recommend", str(out), "--history", "3", "4", "-k", "5", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 5 and all(r["item_id"] in {str(i) for i in range(20)} for r in recs)

    assert main(["recommend", str(out), "--history", "3", "999"]) == 1
    assert "Unknown item id '999'" in capsys.readouterr().err


def test_yaml_config_and_flag_override(data_root, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("dataset: ml-100k\nnum_train_epochs: 1\nlearning_rate: 0.5\nweight_decay: 0.2\n")
    overlay = tmp_path / "overlay.yaml"  # a second --config layers over the first
    overlay.write_text("learning_rate: 0.25\nwarmup_steps: 3\n")
    out = tmp_path / "run"
    flags = [*TINY_FLAGS, "--num_train_epochs", "1"]
    code = main(
        ["train", "--config", str(config), "--data_dir", str(data_root), "--output_dir", str(out),
         "--item_features", str(data_root / "features.npy"), "--config", str(overlay), *flags]
    )  # fmt: skip
    assert code == 0
    args = json.loads((out / "training_args.json").read_text())
    assert (args["learning_rate"], args["weight_decay"], args["warmup_steps"]) == (0.25, 0.2, 3)
    code = main(
        ["train", "--config", str(config), "--config", str(overlay), "--data_dir", str(data_root), "--output_dir",
         str(out), "--item_features", str(data_root / "features.npy"), "--learning_rate", "0.001", *flags]
    )  # fmt: skip
    assert code == 0
    args = json.loads((out / "training_args.json").read_text())
    assert args["learning_rate"] == 0.001  # the flag beat both YAML files
    assert json.loads((out / "results.json").read_text())["epochs"] == pytest.approx(1.0)
    assert not (out / "training_args.bin").exists()  # no pickle in the bundle


def test_unknown_dataset_and_bad_config(tmp_path, capsys):
    assert (
        main(["train", "--dataset", "netflix-prize", "--data_dir", str(tmp_path), "--output_dir", str(tmp_path)]) == 1
    )
    err = capsys.readouterr().err
    assert "netflix-prize" in err and "ml-100k" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("learning_rat: 0.1\n")
    with pytest.raises(SystemExit):
        main(["train", "--config", str(bad)])
    assert "unknown options: learning_rat" in capsys.readouterr().err


def test_features_row_count_mismatch_is_reported(data_root, tmp_path, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((7, 4), dtype=np.float32))
    code = main(
        ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(tmp_path / "o"),
         "--item_features", str(wrong), *TINY_FLAGS]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "7" in err and "20" in err


def test_usage(capsys):
    assert main([]) == 2
    assert main(["--help"]) == 0
    assert "train" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2


@pytest.mark.parametrize("scheme", ["rqvae", "hierarchical", "title", "random", "atomic"])
def test_train_runs_every_id_scheme(scheme, data_root, tmp_path, capsys):
    out = tmp_path / scheme
    flags = list(TINY_FLAGS)
    flags[flags.index("--num_train_epochs") + 1] = "1"
    code = main(
        ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
         "--item_features", str(data_root / "features.npy"), "--id_scheme", scheme, "--max_title_tokens", "3",
         "--rqvae_epochs", "2", "--pca_dim", "0", "--title_vocab_size", "40", *flags]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["id_scheme"] == scheme and results["test"]["invalid_rate"] == 0.0
    assert results["semantic_ids"]["collision_rate_after"] == 0.0
    assert json.loads((out / "quantizer" / "quantizer_config.json").read_text())["scheme"] == scheme
    capsys.readouterr()
    # the saved bundle serves recommendations with the same IDs
    assert main(["recommend", str(out), "--history", "3", "4", "-k", "5", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 5 and all(r["item_id"] in {str(i) for i in range(20)} for r in recs)


def test_per_item_collision_codes_train_rank_and_reload(data_root, tmp_path, capsys):
    """collision_codes per_item: one last-level token per item (20 here), trained, ranked and read back."""
    from hf_genrec import GenerativeRecommender

    out = tmp_path / "per-item"
    flags = list(TINY_FLAGS)
    flags[flags.index("--num_train_epochs") + 1] = "1"
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
            "--item_features", str(data_root / "features.npy"), "--collision_codes", "per_item", *flags]  # fmt: skip
    assert main(argv) == 0, capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert results["test"]["invalid_rate"] == 0.0
    recommender = GenerativeRecommender.from_pretrained(out)
    ids = recommender.item_tokenizer.semantic_ids
    assert ids.codebook_sizes[-1] == 20 and sorted(ids.codes[:, -1].tolist()) == list(range(20))
    assert len(recommender.recommend([["3", "4"]], k=5)[0]) == 5
    assert main([*argv[: -len(flags)], "--id_scheme", "title", *flags]) == 1  # title IDs have no collision level
    assert "collision_codes='per_item' renumbers the collision level" in capsys.readouterr().err


def test_build_ids_prints_saves_and_plots(data_root, tmp_path, capsys):
    out = tmp_path / "ids"
    code = main(
        ["build-ids", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
         "--item_features", str(data_root / "features.npy"), "--id_scheme", "rqkmeans", "--balanced", "true",
         "--n_levels", "2", "--codebook_size", "4", "--pca_dim", "0", "--plot"]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "SemanticIDs(scheme='rqkmeans')" in printed and "perplexity" in printed and "collisions before" in printed
    saved = json.loads((out / "semantic_ids" / "semantic_ids.json").read_text())
    assert saved["diagnostics"]["levels"][0]["codebook_size"] == 4
    png = (out / "codebook_usage.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert json.loads((out / "quantizer" / "quantizer_config.json").read_text())["balanced"] is True


def test_build_ids_reports_bad_settings(data_root, tmp_path, capsys):
    code = main(
        ["build-ids", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(tmp_path / "x"),
         "--item_features", str(data_root / "features.npy"), "--id_scheme", "rqkmeans", "--codebook_size", "64"]
    )  # fmt: skip
    assert code == 1
    assert "Cannot learn a codebook of 64 codes from 20 items" in capsys.readouterr().err


def test_the_prior_fused_into_training_is_recorded_and_ranks_normalised(data_root, tmp_path):
    out = tmp_path / "run"
    flags = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
             "--item_features", str(data_root / "features.npy"), *TINY_FLAGS, "--causal_encoder", "true",
             "--constrained_loss", "true", "--transition_weight", "2", "--transition_weight_in_loss", "2",
             "--transition_shrinkage", "30"]  # fmt: skip
    flags[flags.index("--num_train_epochs") + 1] = "1"
    assert main(flags) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["transition_weight_in_loss"] == 2.0 and "transition_weight_in_loss 2.0" in results["protocol"]
    assert json.loads((out / "genrec_config.json").read_text())["fusion"]["transition_normalize"] is True
    from hf_genrec import GenerativeRecommender

    recommender = GenerativeRecommender.from_pretrained(out)
    fusion = dataclasses.replace(recommender.config.fusion, transition_weight=2.0)
    assert recommender._fusion([[0, 1]], fusion)[0].normalize
    flags[flags.index("--constrained_loss") + 1] = "false"
    assert main(flags) == 1  # the prior in the loss needs constrained_loss


def test_default_recipe_trains_packed_resumes_and_recommends(data_root, tmp_path, capsys, caplog):
    """causal_encoder + constrained_loss + a budget: the default recipe's path, end to end, then a resumed run (its
    rows memory-mapped from an Arrow file, as long runs do)."""
    out = tmp_path / "run"
    flags = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
             "--item_features", str(data_root / "features.npy"), *TINY_FLAGS, "--causal_encoder", "true",
             "--constrained_loss", "true", "--max_train_minutes", "5", "--eval_strategy", "epoch",
             "--save_strategy", "epoch", "--load_best_model_at_end", "false", "--save_total_limit", "1",
             "--transition_weight", "1", "--transition_weights", "0", "1", "4", "--transition_shrinkage", "30"]  # fmt: skip
    assert main(flags) == 0
    results = json.loads((out / "results.json").read_text())
    # the fusion's weight is the grid's best on validation, and the bundle keeps it and the transitions
    grid = results["transition_weight_validation"]
    assert set(grid) == {"0.0", "1.0", "4.0"}
    best = max(grid, key=lambda w: (grid[w]["ndcg@10"], -float(w)))
    assert results["transition_weight"] == float(best)
    assert json.loads((out / "genrec_config.json").read_text())["fusion"]["transition_weight"] == float(best)
    assert (out / "transitions.safetensors").is_file() and "successor prior fused in" in results["protocol"]
    assert (
        ItemTransitions.from_pretrained(out).shrinkage == 30.0 and "transition_shrinkage 30.0" in results["protocol"]
    )
    assert {"recall@10", "ndcg@10"} <= set(results["baselines"]["successor_prior"])
    # the model's lead over the prior alone, user by user on the same test users: the difference of the means
    lead = results["minus_baselines"]["successor_prior"]["ndcg@10"]
    assert lead["mean"] == pytest.approx(
        results["test"]["ndcg@10"] - results["baselines"]["successor_prior"]["ndcg@10"]
    )
    assert lead["standard_error"] >= 0 and set(results["minus_baselines"]) == set(results["baselines"])
    assert results["train_targets"] > results["train_examples"]  # packed: several targets per row
    assert [p["epoch"] for p in results["validation_curve"]] == [1.0, 2.0]
    minutes = [p["train_minutes"] for p in results["validation_curve"]]
    assert 0 < minutes[0] <= minutes[1] <= results["train_minutes"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "hf_genrec_t5"
    assert json.loads((out / "generation_config.json").read_text())["renormalize_logits"] is True

    # a longer run continues from the checkpoint: same IDs, the clock and the curve go on
    flags[flags.index("--num_train_epochs") + 1] = "3"
    caplog.set_level(logging.INFO)
    assert main([*flags, "--resume_from_checkpoint", "last", "--rows_on_disk_above", "0"]) == 0
    said = [record.getMessage() for record in caplog.records]
    assert any(
        m.startswith("Training rows go to") and m.endswith("rows-0.arrow, memory-mapped (rows_on_disk_above).")
        for m in said
    )
    assert not (out / "_train_rows").exists()  # gone once the bundle is saved: `push` uploads the output dir
    resumed = json.loads((out / "results.json").read_text())
    assert [p["epoch"] for p in resumed["validation_curve"]] == [1.0, 2.0, 3.0]
    assert resumed["train_minutes"] > results["train_minutes"]
    capsys.readouterr()
    assert main(["recommend", str(out), "--history", "3", "4", "-k", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 5


def test_train_with_content_map_then_add_an_item_by_its_text(data_root, tmp_path, capsys, monkeypatch):
    """--content_map true saves a content map in the bundle; `catalog add` then places an item from its text."""
    import re

    import hf_genrec.features.item_features as features_module

    content = np.random.default_rng(4).normal(size=(20, 6)).astype(np.float32)

    def fake_text_features(items, model_name_or_path, template=None, **kwargs):
        texts = [features_module.item_text(row, template) for row in features_module._rows(items)]
        return content[[int(re.search(r"Movie (\d+)", text).group(1)) for text in texts]]

    monkeypatch.setattr(features_module, "text_features", fake_text_features)
    out = tmp_path / "run"
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
            "--item_features", str(data_root / "features.npy"), *TINY_FLAGS, "--num_train_epochs", "1"]  # fmt: skip
    assert main([*argv, "--content_map", "true"]) == 0
    assert (out / "content_map.safetensors").is_file()
    results = json.loads((out / "results.json").read_text())
    facts = results["content_map"]  # every item is in the map, but those on the zero vector's code prefix
    assert facts["items"] + facts["left_out_on_zero_prefix"] == 20 and results["timings"]["content_map_s"] > 0
    (tmp_path / "new.jsonl").write_text(json.dumps({"item_id": "new", "title": "Movie 7"}) + "\n")
    capsys.readouterr()
    assert main(["catalog", "add", str(out), str(tmp_path / "new.jsonl")]) == 0
    assert "20 -> 21 items" in capsys.readouterr().out
    # a scheme with no features to place items by fails before training, not after
    assert main([*argv, "--id_scheme", "random", "--content_map", "true", "--output_dir", str(tmp_path / "r")]) == 1
    assert "content_map needs an ID scheme that encodes features" in capsys.readouterr().err


def hybrid_flags(data_root, out) -> list[str]:
    return ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out),
            "--item_features", str(data_root / "features.npy"), *TINY_FLAGS, "--causal_encoder", "true",
            "--constrained_loss", "true", "--exclude_history", "true", "--eval_strategy", "epoch",
            "--save_strategy", "epoch", "--load_best_model_at_end", "false", "--max_train_minutes", "5",
            "--transition_weight", "1", "--transition_weights", "0", "1", "--scorer", "sasrec",
            "--max_history", "3", "--scorer_epochs", "20", "--scorer_max_history", "10", "--scorer_dropout", "0.0",
            "--scorer_learning_rate", "0.01", "--scorer_weight", "1", "--scorer_weights", "0", "2", "8"]  # fmt: skip


def test_hybrid_run_stopped_while_its_scorer_trains_goes_on_from_the_scorers_checkpoint(
    data_root, tmp_path, monkeypatch
):
    """A run killed in its scorer's training resumes that training (`_scorer_training/`), not a new one: the
    scorer's validation curve and kept epoch are those of a run never stopped."""
    from hf_genrec.training.sasrec import BestValidationState

    whole = tmp_path / "whole"
    assert main(hybrid_flags(data_root, whole)) == 0
    rank = BestValidationState._rank

    def killed_at_epoch_9(self, state, control, model):
        if state.epoch >= 9:
            raise KeyboardInterrupt
        rank(self, state, control, model)

    stopped = tmp_path / "stopped"
    monkeypatch.setattr(BestValidationState, "_rank", killed_at_epoch_9)
    with pytest.raises(KeyboardInterrupt):
        main(hybrid_flags(data_root, stopped))
    monkeypatch.setattr(BestValidationState, "_rank", rank)
    assert not list(stopped.glob("checkpoint-*")) and list((stopped / "_scorer_training").glob("checkpoint-*"))
    assert main([*hybrid_flags(data_root, stopped), "--resume_from_checkpoint", "last"]) == 0
    curves = [json.loads((run / "results.json").read_text())["scorer"]["training"] for run in (whole, stopped)]
    assert [[{k: v for k, v in p.items() if k != "minutes"} for p in c["validation_curve"]] for c in curves] == [
        [{k: v for k, v in p.items() if k != "minutes"} for p in curves[0]["validation_curve"]]
    ] * 2
    assert curves[1]["best_epoch"] == curves[0]["best_epoch"] and curves[1]["steps"] == curves[0]["steps"]
    # a new run in the same folder (no resume) starts its scorer again
    assert main([*hybrid_flags(data_root, stopped), "--scorer_epochs", "2"]) == 0
    assert json.loads((stopped / "results.json").read_text())["scorer"]["training"]["epochs"] == 2.0


def test_hybrid_recipe_trains_a_scorer_fuses_it_resumes_and_ranks_as_the_bundle(data_root, tmp_path, capsys):
    """--scorer sasrec: a SASRec trained first, fused into validation and test ranking with the weights the grid
    picks, saved in the bundle, read back (not trained again) on resume; the bundle ranks the test users alike."""
    from hf_genrec import GenerativeRecommender
    from hf_genrec.data import leave_one_out, load_interactions
    from hf_genrec.evaluation.metrics import ranking_metrics
    from hf_genrec.models.sasrec import SASRecModel

    out = tmp_path / "run"
    flags = hybrid_flags(data_root, out)
    assert main(flags) == 0
    assert not (out / "_scorer_training").exists()  # the bundle holds the scorer
    results = json.loads((out / "results.json").read_text())
    assert set(results["fusion_validation"]) == {f"{t}/{s}" for t in ("0.0", "1.0") for s in ("0.0", "2.0", "8.0")}
    best = max(
        results["fusion_validation"],
        key=lambda p: (results["fusion_validation"][p]["ndcg@10"], *(-float(w) for w in p.split("/"))),
    )
    assert f"{results['transition_weight']}/{results['scorer_weight']}" == best
    # the scorer steers the search: alone with the model it ranks far better than the model alone
    grid = results["fusion_validation"]
    assert results["scorer_weight"] > 0 and grid["0.0/2.0"]["ndcg@10"] > grid["0.0/0.0"]["ndcg@10"] + 0.2
    training = results["scorer"]["training"]
    assert training["epochs"] == 20.0 and training["train_minutes"] > 0
    # it ranked the run's validation users after every epoch and kept its best state
    assert len(training["validation_curve"]) == 20
    assert training["validation_ndcg@10"] == max(point["ndcg@10"] for point in training["validation_curve"])
    # the scorer alone learns the walk (item i is followed by i + 1) in its 20 epochs
    assert results["baselines"]["scorer"]["recall@5"] > 0.8
    config = json.loads((out / "genrec_config.json").read_text())
    assert (config["fusion"]["scorer_weight"], config["fusion"]["transition_weight"]) == (
        results["scorer_weight"],
        results["transition_weight"],
    )
    assert (out / "scorer" / "config.json").is_file() and "SASRec trained on the same sequences" in results["protocol"]
    assert "history capped at 3 items (the scorer's at 10)" in results["protocol"]
    # the model card sets the bundle beside its parts alone, with the figures results.json records
    card = (out / "README.md").read_text()
    scorer_row = next(line for line in card.splitlines() if line.startswith("| the SASRec scorer alone"))
    assert f"{results['baselines']['scorer']['recall@5']:.4f}" in scorer_row
    assert "| the successor prior alone" in card and "| the most popular items |" in card
    assert f"**{results['test']['ndcg@10']:.4f}**" in card

    # the saved bundle, asked for the test users' top 10 with the picked weights, scores what evaluation scored: the
    # model reads the last 3 items, the scorer (and the exclusion) the whole history, in evaluation as in the bundle
    recommender = GenerativeRecommender.from_pretrained(out)
    assert isinstance(recommender.scorer, SASRecModel)
    test = leave_one_out(load_interactions("ml-100k", str(data_root)), max_history=20)["test"]
    ranked = recommender.recommend(test["history"][:], k=10)
    index = recommender.item_tokenizer.item_to_index
    ranked_rows = np.array([[index[item] for item, _ in r] for r in ranked])
    targets = np.array([index[t] for t in test["target"][:]])
    bundle = ranking_metrics(ranked_rows, targets, [5, 10])
    assert bundle["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)

    # resuming reads the scorer back: the same weights, no second training
    before = SASRecModel.from_pretrained(out / "scorer").item_embeddings.weight.detach().clone()
    flags[flags.index("--num_train_epochs") + 1] = "3"
    capsys.readouterr()
    assert main([*flags, "--resume_from_checkpoint", "last"]) == 0
    resumed = json.loads((out / "results.json").read_text())
    assert resumed["scorer"]["training"] == results["scorer"]["training"]
    assert torch.equal(SASRecModel.from_pretrained(out / "scorer").item_embeddings.weight, before)
    # ... and a resume that drops the scorer, or a scorer weight without a scorer, says what is wrong
    no_scorer = flags[: flags.index("--scorer")]
    assert main([*no_scorer, "--resume_from_checkpoint", "last"]) == 1
    assert "was trained with a scorer" in capsys.readouterr().err
    assert main([*no_scorer, "--output_dir", str(tmp_path / "other"), "--scorer_weight", "1"]) == 1
    assert "pass `scorer=`" in capsys.readouterr().err


@pytest.mark.parametrize("overlay", [False, True])
def test_every_shipped_recipe_parses_alone_and_under_the_hybrid_overlay(overlay):
    """Each shipped recipe holds only real options with valid values, on its own and with the hybrid layered on."""
    from hf_genrec.cli.train import parse_train_arguments
    from hf_genrec.recipes.shipped import DATASET_RECIPES, recipe_path

    assert len(DATASET_RECIPES) >= 4
    for name in DATASET_RECIPES:
        layers = ["--config", str(recipe_path("hybrid"))] if overlay else []
        args = parse_train_arguments(["--recipe", name, *layers])
        assert args.layers[0] == str(recipe_path(name))
        training_args, scorer_args = args.training, args.scorer
        assert training_args.max_train_minutes or training_args.num_train_epochs
        if overlay:
            assert scorer_args.scorer == "sasrec" and training_args.scorer_weights
            # the scorer must leave the model at least half of the recipe's budget, whatever the budget
            assert scorer_args.scorer_budget_share <= 0.5 and scorer_args.scorer_max_minutes is None
            assert scorer_args.scorer_patience is not None
            # window and dropout come from the data (scorer_settings_for), not from one dataset's values
            assert scorer_args.scorer_max_history is None and scorer_args.scorer_dropout is None
        else:
            assert scorer_args.scorer is None and training_args.scorer_weight == 0.0
