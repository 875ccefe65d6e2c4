"""The ``hf-genrec`` command line: one module per command group (``hf_genrec/cli/<module>.py``, each with a
``run(argv) -> int``), loaded when its command runs, so ``hf-genrec --help`` imports none of them."""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Sequence

from huggingface_hub.errors import HfHubHTTPError

#: command -> (its module in this package, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "build-ids": ("ids", "read data, build item IDs with one scheme, print and save their diagnostics"),
    "train": ("train", "train and evaluate a recommender from the recipe shipped for --dataset, and save it"),
    "recommend": ("recommend", "print the top-K items for a history with a saved recommender"),
    "push": ("push", "upload a saved recommender (its whole bundle and card) to the Hugging Face Hub"),
    "catalog": ("catalog", "add items to, or retire items from, a saved recommender without retraining"),
    "recipes": ("recipes", "list the shipped recipes and their main settings, or print one"),
    "serve": ("serve", "serve a saved recommender over HTTP (micro-batched beam search; the serve extra)"),
    "demo": ("demo", "start a page to try a recommender in the browser, or write a Hugging Face Space for it"),
}

USAGE = (
    "hf-genrec <command> [options]\n\ncommands:\n"
    + "\n".join(f"  {name:<11} {summary}" for name, (_, summary) in COMMANDS.items())
    + "\n\nRun `hf-genrec <command> --help` for the options of a command."
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``hf-genrec`` command that ``argv`` (default: ``sys.argv[1:]``) names; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"hf-genrec: unknown command {command!r}.\n\n{USAGE}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # faiss logs each CPU build it tries at INFO; a user needs none of those lines
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)
    module = importlib.import_module(f"{__package__}.{COMMANDS[command][0]}")
    try:
        return module.run(rest)
    except Exception as err:
        if not is_users_to_fix(err):
            raise
        # Bad input (or a dataset that cannot be fetched, offline) is the user's to fix: say what was wrong and how
        # to fix it, without a traceback.
        print(f"hf-genrec {command}: error: {err}", file=sys.stderr)
        return 1


def is_users_to_fix(err: Exception) -> bool:
    """Whether ``err`` reports bad input (a wrong value, a missing file, a Hub refusal) or a failed dataset download
    (`hf_genrec.data.download.DownloadError`), which the command prints without a traceback. The download error's
    class is read from `sys.modules`, not imported: only a command that imported the download module can raise
    one, and importing it here would slow every command (``--help`` included) by a third of a second."""
    if isinstance(err, (ValueError, FileNotFoundError, KeyError, HfHubHTTPError)):
        return True
    download = sys.modules.get("hf_genrec.data.download")
    return download is not None and isinstance(err, download.DownloadError)


if __name__ == "__main__":
    sys.exit(main())
