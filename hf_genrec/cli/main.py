"""The ``hf-genrec`` command line: ``build-ids``, ``train``, ``recommend``, ``push`` and ``catalog``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from huggingface_hub.errors import HfHubHTTPError
from transformers import HfArgumentParser

USAGE = """hf-genrec <command> [options]

commands:
  build-ids   read data, build item IDs with one scheme, print and save their diagnostics (--plot: a PNG)
  train       read data, build item IDs, train and evaluate a generative recommender, save it (--plot: PNGs)
  recommend   print the top-K items for a history with a saved recommender
  push        upload a saved recommender (model, tokenizer, item map, quantiser, card) to the Hugging Face Hub
  catalog     add items to, or remove items from, a saved recommender without retraining

Run `hf-genrec <command> --help` for the options of a command."""


def _parse_with_config(
    parser: HfArgumentParser, argv: Sequence[str], default_output: str = "outputs/{dataset}"
) -> tuple[list[str], dict]:
    """Apply ``--config file.yaml`` as defaults (flags override it; a later ``--config`` overrides an earlier one,
    so a recipe can take an overlay such as ``configs/hybrid.yaml``); returns the remaining argv and the defaults."""
    parser.add_argument(
        "--config",
        default=None,
        action="append",
        help="A YAML file of any of these options; flags override it. Repeat it to layer files, later ones winning.",
    )
    argv = list(argv)
    defaults: dict = {}
    known = {action.dest for action in parser._actions}
    while "--config" in argv:
        i = argv.index("--config")
        if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
            parser.error("--config needs a path to a YAML file.")
        config_path = argv[i + 1]
        del argv[i : i + 2]
        with open(config_path) as f:
            layer = yaml.safe_load(f) or {}
        if not isinstance(layer, dict):
            parser.error(f"{config_path} must hold a mapping of option names to values.")
        unknown = sorted(set(layer) - known)
        if unknown:
            parser.error(f"{config_path} has unknown options: {', '.join(unknown)}.")
        defaults.update(layer)
    if defaults:
        parser.set_defaults(**defaults)
    if "--output_dir" not in argv and "--output-dir" not in argv and "output_dir" not in defaults:
        dataset = _option(argv, "dataset") or defaults.get("dataset") or "ml-100k"
        argv += ["--output_dir", default_output.format(dataset=dataset)]
    return argv, defaults


@dataclass
class TrainOutputArguments:
    """What ``train`` draws, and how much it says."""

    plot: bool = field(
        default=False,
        metadata={
            "help": "Also draw training_curves.png (loss, validation metrics), codebook_usage.png (items per code, "
            "per level) and recall_at_k.png (test Recall@K against K, beside popularity) next to results.json."
        },
    )
    quiet: bool = field(
        default=False, metadata={"help": "No progress bars and no info log lines (warnings still show); the results."}
    )


def _silence() -> None:
    """``--quiet``: no progress bars anywhere (embedding, IDs, training, evaluation) and warnings only."""
    from ..utils.progress import disable_progress_bars

    disable_progress_bars()
    logging.getLogger().setLevel(logging.WARNING)
    import transformers

    transformers.logging.set_verbosity_warning()


def parse_train_arguments(argv: Sequence[str]) -> tuple:
    """``hf-genrec train``'s arguments, ``--config`` files applied: data, IDs, model, training, scorer, output."""
    from ..recipes.arguments import DataArguments, ItemIDArguments, ModelArguments
    from ..recipes.scorer import ScorerArguments
    from ..training.trainer import GenRecTrainingArguments

    parser = HfArgumentParser(
        (
            DataArguments,
            ItemIDArguments,
            ModelArguments,
            GenRecTrainingArguments,
            ScorerArguments,
            TrainOutputArguments,
        ),
        prog="hf-genrec train",
        description="Train and evaluate a generative recommender (TIGER recipe).",
    )
    argv, _ = _parse_with_config(parser, argv)
    # The trailing namespace holds `--config`, already consumed above.
    return tuple(parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)[:6])


def _train(argv: Sequence[str]) -> int:
    from ..recipes.results import format_results_table
    from ..recipes.run import run_experiment

    data_args, id_args, model_args, training_args, scorer_args, out_args = parse_train_arguments(argv)
    if out_args.quiet:
        _silence()
    resume = training_args.resume_from_checkpoint  # a checkpoint folder, or "last" for the output dir's newest
    resume = True if resume in ("last", "true", "True") else resume
    results = run_experiment(
        data_args, id_args, model_args, training_args, resume_from_checkpoint=resume, scorer_args=scorer_args
    )
    if training_args.process_index != 0:  # under `accelerate launch`, one table is enough
        return 0
    print()
    print(f"Test metrics on {results['dataset']} ({results['protocol']}):")
    print(format_results_table(results))
    print(
        f"\nTraining: {results['train_seconds']:.0f} s, {results['train_steps']} steps. Saved to {training_args.output_dir}"
    )
    if out_args.plot:
        from ..evaluation.plots import plot_results
        from ..semantic_ids import SemanticIDs
        from ..tokenization import ITEM_MAP_DIR

        output_dir = Path(training_args.output_dir)
        semantic_ids = SemanticIDs.load(output_dir / ITEM_MAP_DIR)
        for path in plot_results(results, output_dir, semantic_ids):
            print(f"Plot: {path}")
    return 0


@dataclass
class BuildIDsArguments:
    """Where ``build-ids`` writes, and whether it draws."""

    output_dir: str = field(
        default="outputs/ids",
        metadata={"help": "Folder for semantic_ids/ and quantizer/ (default: outputs/<dataset>/ids)."},
    )
    plot: bool = field(default=False, metadata={"help": "Also draw codebook usage per level to codebook_usage.png."})
    quiet: bool = field(
        default=False, metadata={"help": "No progress bars and no info log lines (warnings still show); the summary."}
    )
    base_tokenizer: str | None = field(
        default=None, metadata={"help": "title IDs: the T5 tokenizer to spell titles with (default: learn one)."}
    )


def _build_ids(argv: Sequence[str]) -> int:
    from ..data import load_interactions
    from ..evaluation.baselines import training_part
    from ..recipes.arguments import DataArguments, ItemIDArguments
    from ..recipes.item_ids import fit_item_ids

    parser = HfArgumentParser(
        (DataArguments, ItemIDArguments, BuildIDsArguments),
        prog="hf-genrec build-ids",
        description="Build item IDs with one scheme and report their codebook usage and collisions.",
    )
    argv, _ = _parse_with_config(parser, argv, default_output="outputs/{dataset}/ids")
    data_args, id_args, out_args, *_ = parser.parse_args_into_dataclasses(args=argv, look_for_args_file=False)
    if out_args.quiet:
        _silence()
    data = load_interactions(data_args.dataset, data_args.data_dir, min_count=data_args.min_count)
    base_tokenizer = None
    if out_args.base_tokenizer:
        from transformers import AutoTokenizer

        base_tokenizer = AutoTokenizer.from_pretrained(out_args.base_tokenizer)
    scheme, semantic_ids, timings = fit_item_ids(
        data.items, id_args, base_tokenizer, sequences=training_part(data.sequences["item_ids"][:])
    )
    output_dir = Path(out_args.output_dir)
    semantic_ids.save(output_dir / "semantic_ids")
    scheme.save_pretrained(output_dir / "quantizer")
    print(semantic_ids.summary())
    print(f"Features {timings['features_s']:.1f} s, IDs {timings['semantic_ids_s']:.1f} s. Saved to {output_dir}")
    if out_args.plot:
        from ..evaluation.plots import plot_codebook_usage

        print(f"Codebook usage plot: {plot_codebook_usage(semantic_ids, output_dir / 'codebook_usage.png')}")
    return 0


def _option(argv: Sequence[str], name: str) -> str | None:
    for flag in (f"--{name}", f"--{name.replace('_', '-')}"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return None


def _recommend(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-genrec recommend", description="Top-K items for one history.")
    parser.add_argument("model", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("--history", nargs="+", required=True, help="Item ids, oldest first.")
    parser.add_argument("-k", "--k", type=int, default=None, help="How many items (default: the model's top_k).")
    parser.add_argument("--num-beams", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="Print JSON instead of a table.")
    args = parser.parse_args(argv)

    from ..serving.recommender import GenerativeRecommender

    recommender = GenerativeRecommender.from_pretrained(args.model)
    (items,) = recommender.recommend([args.history], k=args.k, num_beams=args.num_beams)
    if args.json:
        print(json.dumps([{"item_id": item, "score": score} for item, score in items]))
    else:
        print(f"{'rank':>4}  {'item_id':<20} {'log-prob':>9}  semantic ID")
        for rank, (item, score) in enumerate(items, 1):
            print(f"{rank:>4}  {item:<20} {score:>9.3f}  {recommender.item_tokenizer.item_spelling(item)}")
    return 0


def _push(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="hf-genrec push", description="Upload a recommender bundle to the Hub.")
    parser.add_argument("output_dir", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("repo_id", help="The Hub repo, e.g. `your-name/tiger-beauty`; created if missing.")
    parser.add_argument("--private", action="store_true", help="Create the repo as private.")
    parser.add_argument("--revision", default=None, help="Branch to push to (default: main).")
    parser.add_argument("--token", default=None, help="A write token (default: the one `hf auth login` saved).")
    parser.add_argument("--commit-message", default="Upload hf_genrec recommender")
    parser.add_argument("--create-pr", action="store_true", help="Open a pull request instead of committing.")
    args = parser.parse_args(argv)

    from ..bundle.config import GenRecConfig
    from ..bundle.hub import check_bundle, push_folder
    from ..bundle.model_card import build_model_card
    from ..tokenization import ItemTokenizer

    folder = Path(args.output_dir)
    check_bundle(folder)
    if not (folder / "README.md").is_file():  # older bundles: give them a card before they go public
        card = build_model_card(
            ItemTokenizer.from_pretrained(folder), GenRecConfig.from_pretrained(folder), None, args.repo_id
        )
        (folder / "README.md").write_text(card, encoding="utf-8")
    info = push_folder(
        folder,
        args.repo_id,
        token=args.token,
        private=args.private or None,
        revision=args.revision,
        commit_message=args.commit_message,
        create_pr=args.create_pr,
    )
    print(f"Pushed {folder} to {getattr(info, 'commit_url', args.repo_id)}")
    return 0


def _catalog(argv: Sequence[str]) -> int:
    from ..serving.catalog import IF_FULL_CHOICES, ITEMS_FILE_HELP

    parser = argparse.ArgumentParser(
        prog="hf-genrec catalog",
        description="Add items to, or retire items from, a saved recommender; no retraining, no new tokens.",
        epilog=ITEMS_FILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", choices=["add", "remove"])
    parser.add_argument("bundle", help="A folder written by `hf-genrec train` or `save_pretrained`.")
    parser.add_argument("items_file", help="The items (see below).")
    parser.add_argument("--output", default=None, help="Write the updated bundle here (default: update BUNDLE).")
    parser.add_argument("--text-model", default=None, help="Embeds item fields (default: all-MiniLM-L6-v2).")
    parser.add_argument("--if-full", choices=IF_FULL_CHOICES, default="error", help="A prefix with no free ID.")
    parser.add_argument(
        "--histories",
        default=None,
        help="add only: a .jsonl of interaction histories (one JSON list of item ids per line, oldest first) that "
        "mention the new items; each new item is placed beside the catalogue items it sits next to there "
        "(GenerativeRecommender.features_from_sequences), so ITEMS_FILE needs only `item_id`. This is how items "
        "join a catalogue whose IDs came from collaborative features (the default recipe).",
    )
    args = parser.parse_args(argv)

    from ..serving.catalog import items_file_inputs, read_histories_file, read_items_file
    from ..serving.recommender import GenerativeRecommender

    rows = read_items_file(args.items_file)
    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    before = len(recommender.item_ids)
    if args.action == "add":
        if args.histories:
            ids, codes = [row["item_id"] for row in rows], None
            if any(len(row) > 1 for row in rows):
                raise ValueError("With --histories, the items file gives only `item_id`: features come from them.")
            features = recommender.features_from_sequences(ids, read_histories_file(args.histories))
        else:
            codes_from_fields = None
            content_map = recommender.content_map
            if content_map is not None:  # item text or attributes -> the codes of catalogue items alike
                if args.text_model is not None and content_map.attributes is not None:
                    raise ValueError(
                        "This bundle's content map embeds items by their attributes, not their text; leave "
                        "--text-model out."
                    )
                if args.text_model not in (None, content_map.text_model):
                    raise ValueError(
                        f"--text-model {args.text_model} differs from the model of this bundle's content map "
                        f"({content_map.text_model}); leave --text-model out."
                    )
                codes_from_fields = lambda fields: recommender.codes_from_content(items=fields)  # noqa: E731
            ids, features, codes = items_file_inputs(rows, args.text_model, codes_from_fields)
        added = recommender.add_items(ids, features, codes=codes, if_full=args.if_full)
        for item, item_codes in added.items():
            print(f"added    {item:<20} {list(item_codes)}")
        if len(added) < len(ids):
            print(f"not added (their prefix has no free ID): {[i for i in ids if i not in added]}")
    else:
        ids = [row["item_id"] for row in rows]
        recommender.remove_items(ids)
        for item in ids:
            print(f"retired  {item}")
    output = args.output or args.bundle
    recommender.save_pretrained(output)
    print(f"{output}: {before} -> {len(recommender.item_ids)} items")
    return 0


COMMANDS = {"build-ids": _build_ids, "train": _train, "recommend": _recommend, "push": _push, "catalog": _catalog}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-genrec: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[command](rest)
    except (ValueError, FileNotFoundError, KeyError, HfHubHTTPError) as err:
        # Bad input is the user's to fix: say what was wrong without a traceback.
        print(f"hf-genrec {command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:
        from ..data.download import DownloadError  # here, so commands that read no data do not import it

        if not isinstance(err, DownloadError):
            raise
        # A failed dataset download (offline, unreachable source) says how to use a local copy: no traceback.
        print(f"hf-genrec {command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
