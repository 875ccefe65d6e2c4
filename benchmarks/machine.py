"""The one-line machine description every benchmark record carries, and the writing of a record."""

from __future__ import annotations

import json
import os
import platform
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


def write_record(record: dict, path: Path) -> None:
    """Write a benchmark record as indented JSON (creating its folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {path}")
