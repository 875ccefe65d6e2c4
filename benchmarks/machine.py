"""What every benchmark script shares: the one-line machine description, the writing of a record (stamped with the
command, machine and date that made it), and the dispatch of a script's subcommands."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import torch


def describe_machine() -> str:
    """CPU model, core count, torch version and its thread count, e.g. for a results JSON."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} threads"


def invocation() -> str:
    """The command line that runs now, as a user would type it from the repository root."""
    script = Path(sys.argv[0])
    shown = (
        f"benchmarks/{script.name}" if script.parent.name == "benchmarks" or script.parent == Path() else sys.argv[0]
    )
    return " ".join(["python", shown, *map(shlex.quote, sys.argv[1:])])


def stamp(record: dict) -> dict:
    """``record`` with ``command``, ``machine`` and ``date`` filled where the script did not set them: every record
    says what made it, where and when (`benchmarks/report.py` prints them beside each table)."""
    record.setdefault("command", invocation())
    record.setdefault("machine", describe_machine())
    record.setdefault("date", datetime.date.today().isoformat())
    return record


def write_record(record: dict, path: Path | str) -> None:
    """Write a benchmark record, stamped (`stamp`), as indented JSON (creating its folder) and say where."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stamp(record), indent=2, default=str) + "\n")
    print(f"wrote {path}")


def dispatch(doc: str, commands: dict[str, Callable[[list[str]], None]], argv: list[str] | None = None) -> None:
    """Run ``commands[argv[0]](argv[1:])``: one script per question, one subcommand per measurement of it. Without
    a known subcommand, print the script's docstring and the subcommands and exit with status 2."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in commands:
        commands[argv[0]](argv[1:])
        return
    if argv and argv[0] not in ("-h", "--help"):
        print(f"unknown subcommand {argv[0]!r}; pick one of: {', '.join(commands)}\n", file=sys.stderr)
    print(doc.strip() + "\n\nsubcommands (each takes --help):")
    for name, command in commands.items():
        print(f"  {name:<14} {(command.__doc__ or '').strip().splitlines()[0]}")
    raise SystemExit(0 if argv and argv[0] in ("-h", "--help") else 2)


def bundle_parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """A subcommand's parser that reads a trained bundle and its dataset: ``BUNDLE --dataset --data-dir``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("bundle", help="A folder written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    return parser
