"""The shipped recipes: `hf-genrec train --dataset NAME` starts from NAME's, `--config` files lay over it, flags over
both, and `hf-genrec recipes` lists them. Nothing here trains on a real dataset: the arguments are resolved only."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from hf_genrec.cli.main import main
from hf_genrec.cli.train import parse_train_arguments, train_parser
from hf_genrec.recipes.shipped import (
    DATASET_RECIPES,
    RECIPE_DIR,
    describe_recipes,
    recipe_for_dataset,
    recipe_names,
    recipe_path,
)

from .test_cli import data_root  # noqa: F401  (the tiny RecBole-format dataset fixture)


def test_a_dataset_name_resolves_to_its_shipped_recipe():
    args = parse_train_arguments(["--dataset", "ml-100k"])
    assert args.layers == [str(RECIPE_DIR / "ml-100k.yaml")]
    shipped = yaml.safe_load((RECIPE_DIR / "ml-100k.yaml").read_text())
    # every option the recipe sets reaches the argument dataclasses
    parsed = {}
    for group in (args.data, args.ids, args.model, args.training, args.scorer):
        parsed.update({name: getattr(group, name) for name in shipped if hasattr(group, name)})
    assert set(parsed) == set(shipped)
    for name, value in shipped.items():
        assert parsed[name] == value or (name == "eval_strategy" and parsed[name].value == value), name
    # the recipe's headline settings, as the README quick start promises them
    assert (args.model.d_model, args.model.num_layers, args.model.num_decoder_layers) == (64, 2, 1)
    assert args.training.max_train_minutes == 10 and args.ids.item_features == "collaborative"
    assert args.training.output_dir == "outputs/ml-100k" and args.recipe.recipe is None


@pytest.mark.parametrize(
    ("dataset", "recipe"),
    [
        ("ml-1m", "ml-1m"),
        ("amazon-beauty", "amazon-beauty"),
        ("amazon-sports-and-outdoors", "amazon-default"),
        ("Amazon-Toys_and_Games", "amazon-default"),
    ],
)
def test_every_dataset_gets_its_recipe_and_amazon_categories_the_general_one(dataset, recipe):
    assert recipe_for_dataset(dataset) == recipe
    args = parse_train_arguments(["--dataset", dataset])
    assert args.layers == [str(recipe_path(recipe))] and args.data.dataset == dataset
    assert args.training.max_train_minutes == yaml.safe_load(recipe_path(recipe).read_text())["max_train_minutes"]


def test_config_files_lay_over_the_recipe_and_flags_over_both(tmp_path):
    first = tmp_path / "first.yaml"
    first.write_text("learning_rate: 0.01\nd_model: 32\nmax_train_minutes: 3\n")
    second = tmp_path / "second.yaml"
    second.write_text("learning_rate: 0.02\n")
    args = parse_train_arguments(
        ["--dataset", "ml-1m", "--config", str(first), "--config", str(second), "--max_train_minutes", "2"]
    )
    assert args.layers == [str(recipe_path("ml-1m")), str(first), str(second)]
    assert args.training.learning_rate == 0.02  # the later file wins
    assert args.model.d_model == 32  # a file over the recipe
    assert args.training.max_train_minutes == 2  # the flag over every file
    assert args.data.max_history == 50 and args.training.eval_steps == 600  # the rest is ml-1m's recipe
    # a --config file may name the dataset, and then its recipe is the one under it
    named = tmp_path / "named.yaml"
    named.write_text("dataset: amazon-beauty\nnum_beams: 30\n")
    args = parse_train_arguments(["--config", str(named)])
    assert args.layers == [str(recipe_path("amazon-beauty")), str(named)]
    assert args.training.num_beams == 30 and args.training.max_train_minutes == 60


def test_recipe_none_and_another_recipe_by_name():
    bare = parse_train_arguments(["--dataset", "ml-100k", "--recipe", "none"])
    assert bare.layers == [] and bare.model.d_model == 128 and bare.training.max_train_minutes is None
    other = parse_train_arguments(["--dataset", "amazon-sports-and-outdoors", "--recipe", "amazon-beauty"])
    assert other.layers == [str(recipe_path("amazon-beauty"))]
    assert other.data.dataset == "amazon-sports-and-outdoors"  # the flag beats the recipe's dataset
    # a recipe alone names its dataset
    assert parse_train_arguments(["--recipe", "ml-1m"]).data.dataset == "ml-1m"


def test_unknown_dataset_or_recipe_is_an_error_listing_the_choices(tmp_path, capsys):
    argv = ["--data_dir", str(tmp_path), "--output_dir", str(tmp_path / "out")]
    assert main(["train", "--dataset", "netflix-prize", *argv]) == 1
    err = capsys.readouterr().err
    assert "Unknown dataset 'netflix-prize'" in err and "ml-100k" in err and "ml-1m" in err and "amazon-beauty" in err
    # an Amazon name that is no 2014 category has no recipe: the error names the way out
    assert main(["train", "--dataset", "amazon-not-a-category", *argv]) == 1
    err = capsys.readouterr().err
    assert "No recipe ships for dataset 'amazon-not-a-category'" in err and "--recipe amazon-default" in err
    assert main(["train", "--dataset", "ml-100k", "--recipe", "ml-10m", *argv]) == 1
    err = capsys.readouterr().err
    assert "No recipe called 'ml-10m'" in err and all(name in err for name in recipe_names())
    assert not (tmp_path / "out").exists()  # nothing was started


def test_recipes_command_lists_each_recipe_with_its_headline_settings(capsys):
    assert main(["recipes"]) == 0
    out = capsys.readouterr().out
    names = [line.split()[0] for line in out.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert names[: len(describe_recipes())] == [entry["name"] for entry in describe_recipes()]
    shipped = [*DATASET_RECIPES, "tiger", "hybrid", "decoder", "sasrec"]
    assert [entry["name"] for entry in describe_recipes()] == shipped
    for entry in describe_recipes():
        assert " ".join(entry["summary"].split()[:3]) in " ".join(out.split())
    assert "max_train_minutes 10" in out and "max_train_minutes 60" in out and "codebook_size 256" in out
    assert "accelerate/ddp.yaml" in out
    assert main(["recipes", "ml-1m"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == recipe_path("ml-1m").read_text().splitlines()
    assert main(["recipes", "nope"]) == 1
    assert "No recipe called 'nope'" in capsys.readouterr().err


def test_every_shipped_recipe_sets_only_known_options():
    parser_options = {action.dest for action in train_parser()._actions}
    assert set(recipe_names()) >= set(DATASET_RECIPES)
    for name in recipe_names():
        settings = yaml.safe_load(recipe_path(name).read_text())
        assert isinstance(settings, dict) and settings, name
        assert set(settings) <= parser_options, (name, sorted(set(settings) - parser_options))
        assert "output_dir" not in settings  # where a run goes is the user's (default outputs/<dataset>)


def test_recipes_are_package_data():
    """setup.cfg ships the recipe files (and the accelerate configs) in the wheel."""
    setup = (Path(__file__).resolve().parents[1] / "setup.cfg").read_text()
    line = next(line for line in setup.splitlines() if line.startswith("hf_genrec.recipes ="))
    patterns = [p.strip() for p in line.split("=", 1)[1].split(",")]
    shipped = {p.relative_to(RECIPE_DIR) for pattern in patterns for p in RECIPE_DIR.glob(pattern)}
    assert {Path(f"{name}.yaml") for name in recipe_names()} <= shipped
    assert Path("accelerate/ddp.yaml") in shipped


def test_model_hybrid_lays_the_scorer_settings_over_the_recipe(tmp_path):
    args = parse_train_arguments(["--dataset", "ml-100k", "--model", "hybrid"])
    assert args.layers == [str(recipe_path("ml-100k")), str(recipe_path("hybrid"))]
    assert args.recipe.model == "hybrid" and args.scorer.scorer == "sasrec"
    assert args.scorer.scorer_budget_share == 0.5 and args.scorer.scorer_patience == 10
    assert args.training.scorer_weights == [0.0, 1.0, 2.0, 4.0, 8.0, 16.0]
    assert args.training.max_train_minutes == 10 and args.model.d_model == 64  # the rest is still ml-100k's
    assert args.training.output_dir == "outputs/ml-100k-hybrid"  # beside the generative run, not over it
    # a --config file lays over the overlay too
    overlay = tmp_path / "half.yaml"
    overlay.write_text("scorer_budget_share: 0.25\n")
    args = parse_train_arguments(["--dataset", "ml-100k", "--model", "hybrid", "--config", str(overlay)])
    assert args.scorer.scorer_budget_share == 0.25 and args.layers[-1] == str(overlay)
    # the plain recipe has no scorer
    assert parse_train_arguments(["--dataset", "ml-100k"]).scorer.scorer is None


def test_unknown_model_is_an_error_listing_the_choices(tmp_path, capsys):
    argv = ["train", "--dataset", "ml-100k", "--model", "bert4rec", "--output_dir", str(tmp_path / "out")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Unknown model 'bert4rec'" in err and "tiger, hybrid, decoder, sasrec" in err
    assert not (tmp_path / "out").exists()


def test_model_sasrec_trains_and_ranks_under_the_recipes_protocol(data_root, tmp_path, capsys, caplog):  # noqa: F811
    """--model sasrec: SASRec alone, with the ml-100k recipe's split, exclusion and baselines, recorded in the
    layout of a generative run; the saved model ranks the test users as the run did. The command says what it does
    as each stage starts."""
    from hf_genrec.data import leave_one_out, load_interactions
    from hf_genrec.evaluation.metrics import ranking_metrics
    from hf_genrec.models.sasrec import SASRecModel, rank_histories
    from hf_genrec.recipes.results import metric_names

    out = tmp_path / "sasrec"
    argv = ["train", "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out), "--model",
            "sasrec", "--scorer_epochs", "20", "--scorer_max_history", "10", "--scorer_dropout", "0.0",
            "--scorer_learning_rate", "0.01", "--scorer_hidden_size", "16", "--use_cpu", "true"]  # fmt: skip
    caplog.set_level(logging.INFO)
    assert main(argv) == 0
    said = [record.getMessage() for record in caplog.records]
    stages = [next(m for m in said if m.startswith(stage)) for stage in ("[recipe]", "[data]", "[train]", "[test]")]
    assert stages[0] == f"[recipe] {recipe_path('ml-100k')} + {recipe_path('sasrec')}"
    assert stages[1] == f"[data] Reading ml-100k from {data_root / 'ml-100k'}"
    assert "at most 10.0 minutes" in stages[2] and "validating on 30 users" in stages[2]  # the recipe's budget
    assert stages[3] == "[test] Ranking 30 test users"
    assert f"[save] Saving SASRec, its item ids and results.json to {out}" in said
    assert said.index(stages[1]) < said.index(stages[2]) < said.index(stages[3])
    printed = capsys.readouterr().out
    assert "| SASRec |" in printed and "| most_popular |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["model"] == "sasrec" and results["dataset"] == "ml-100k"
    assert list(results["test"]) == metric_names([5, 10])  # the generative run's metrics, in its order
    assert set(results["baselines"]) == {"most_popular", "successor_prior"}
    assert all(list(metrics) == metric_names([5, 10]) for metrics in results["baselines"].values())
    assert "leave-one-out" in results["protocol"] and "exclude_history" in results["protocol"]  # the recipe's
    assert "all 30 test users" in results["protocol"]
    # the walk (item i is followed by i + 1) is easy: SASRec learns it, far above the most popular items
    assert results["test"]["recall@5"] > 0.8 > results["baselines"]["most_popular"]["recall@5"]
    assert results["test"]["invalid_rate"] == 0.0
    # its lead over each baseline, user by user on the same users: the difference of the means, with an error
    for baseline, diffs in results["minus_baselines"].items():
        lead = results["test"]["recall@5"] - results["baselines"][baseline]["recall@5"]
        assert diffs["recall@5"]["mean"] == pytest.approx(lead) and diffs["recall@5"]["standard_error"] >= 0
        assert f"| SASRec minus {baseline}, per user | {diffs['recall@5']['mean']:+.4f} ± " in printed
    assert results["minus_baselines"]["most_popular"]["recall@5"]["mean"] > 0.5
    training = results["sasrec"]["training"]
    # the overlay's patience (10 rankings without a better NDCG@10) may stop it before its 20 epochs
    assert training["epochs"] <= 20 and len(results["validation_curve"]) == training["epochs"]
    assert training["validation_ndcg@10"] == max(p["ndcg@10"] for p in results["validation_curve"])
    assert results["recall_curve"]["SASRec"][4] == pytest.approx(results["test"]["recall@5"])
    assert not (out / "_scorer_training").exists()
    # each test user's hits, by user id, for paired comparisons with another run on the same users
    per_user = json.loads((out / "test_per_user.json").read_text())
    assert sorted(per_user["users"]) == sorted(f"u{u}" for u in range(30))
    for metric in ("recall@5", "ndcg@10"):
        assert np.mean(per_user[metric]) == pytest.approx(results["test"][metric])

    # the saved SASRec and its item ids rank the test users (history window 10, history excluded) alike
    model = SASRecModel.from_pretrained(out).eval()
    item_ids = json.loads((out / "item_ids.json").read_text())
    index = {item: row for row, item in enumerate(item_ids)}
    data = load_interactions("ml-100k", str(data_root))
    test = leave_one_out(data, max_history=10)["test"]
    histories = [[index[i] for i in history] for history in test["history"][:]]
    targets = np.array([index[t] for t in test["target"][:]])
    again = ranking_metrics(rank_histories(model, histories, 10, exclude_history=True), targets, [5, 10])
    assert again["ndcg@10"] == pytest.approx(results["test"]["ndcg@10"], abs=1e-6)


def test_every_key_of_every_shipped_recipe_carries_a_one_line_comment():
    """Each option line says what it is (`key: value  # what`), and each file starts by saying what it is and
    where the evidence behind its values is (docs/recipes.md), which names every option the recipes set."""
    docs = (Path(__file__).resolve().parents[1] / "docs" / "recipes.md").read_text()
    for name in recipe_names():
        lines = recipe_path(name).read_text().splitlines()
        assert lines[0].startswith("# ") and "docs/recipes.md" in lines[1], name
        options = [line for line in lines if line and not line.startswith("#")]
        assert len(options) == len(yaml.safe_load(recipe_path(name).read_text())), name  # one line per key
        for line in options:
            key, _, rest = line.partition(":")
            value, hash_, comment = rest.partition("  # ")
            assert hash_ and len(comment.split()) >= 2, f"{name}.yaml: {key} has no comment saying what it is"
            assert yaml.safe_load(f"{key}:{value}") == {key: yaml.safe_load(recipe_path(name).read_text())[key]}
            assert f"`{key}`" in docs, f"docs/recipes.md says nothing of {key}"
        assert len(lines) == len(options) + 2, f"{name}.yaml: only the first two lines are whole-line comments"


def test_every_pilot_overlay_names_options_a_recipe_reads_each_with_a_comment():
    """benchmarks/overlays/*.yaml (laid over a recipe by `reproduce.py --overlay`): a misspelt key would be refused
    only when a long run starts, so each is read here as `--config` reads a file (`read_layer`)."""
    from hf_genrec.recipes.launch import recipe_parser
    from hf_genrec.recipes.layers import read_layer

    parser = recipe_parser()
    overlays = sorted((Path(__file__).resolve().parents[1] / "benchmarks" / "overlays").glob("*.yaml"))
    assert overlays
    for path in overlays:
        assert read_layer(parser, str(path)), f"{path.name} sets nothing"  # an unknown key exits, naming it
        options = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
        assert all("  # " in line for line in options), f"{path.name}: every key gets a one-line comment"


def test_misspelt_options_are_named_with_the_closest_one(tmp_path, capsys):
    """Transformers' parser says only that some arguments were not used; the CLI names each and what it may mean."""
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "ml-100k", "--learning_rat", "0.1"])
    err = capsys.readouterr().err
    assert "--learning_rat (did you mean --learning_rate?)" in err
    # the one line that says what was wrong is not buried under the ~170-line usage of every option
    assert "usage:" not in err and len(err.splitlines()) <= 3 and "hf-genrec train --help" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_train_minuts: 3\n")
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "ml-100k", "--config", str(bad)])
    assert "max_train_minuts (did you mean max_train_minutes?)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "--dataset", "ml-100k", "--config", str(tmp_path / "missing.yaml")])
    assert "missing.yaml: no such file" in capsys.readouterr().err


def test_python_options_lay_over_the_recipe_as_the_flags_do(tmp_path):
    """`run_recipe(dataset, **options)` reads the same settings as `hf-genrec train --dataset ... --option value`."""
    from hf_genrec.recipes.launch import parse_recipe_arguments

    overlay = tmp_path / "overlay.yaml"
    overlay.write_text("learning_rate: 0.001\nd_model: 32\n")
    from_python = parse_recipe_arguments(
        ["--config", str(overlay)],
        options={"dataset": "ml-1m", "max_train_minutes": 3, "eval_ks": [1, 10], "d_model": 48, "model": "hybrid"},
    )
    from_flags = parse_train_arguments(
        ["--config", str(overlay), "--dataset", "ml-1m", "--max_train_minutes", "3", "--eval_ks", "1", "10",
         "--d_model", "48", "--model", "hybrid"]
    )  # fmt: skip
    assert (
        from_python.layers
        == from_flags.layers
        == [str(recipe_path("ml-1m")), str(recipe_path("hybrid")), str(overlay)]
    )
    for group in ("data", "ids", "model", "scorer", "recipe"):
        assert getattr(from_python, group) == getattr(from_flags, group), group
    assert from_python.training.to_dict() == from_flags.training.to_dict()
    assert from_python.model.d_model == 48 and from_python.training.learning_rate == 0.001  # options over files
    assert from_python.training.output_dir == "outputs/ml-1m-hybrid"


def test_run_recipe_names_a_misspelt_option_before_reading_anything(capsys):
    from hf_genrec import run_recipe

    with pytest.raises(SystemExit):
        run_recipe("ml-100k", max_train_minuts=1)
    err = capsys.readouterr().err
    assert "run_recipe's options has unknown options: max_train_minuts (did you mean max_train_minutes?)" in err
