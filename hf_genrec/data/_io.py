"""Small file helpers shared by the readers: gzip-aware opening, line iteration and clear parse errors."""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

PathLike = str | os.PathLike


class DataFormatError(ValueError):
    """
    Raised when a data file cannot be parsed. The message names the file, the line, what was wrong and what to do.

    Args:
        path: The file being read.
        line: 1-based line number of the bad record (`None` when the problem is not tied to one line).
        problem: What was wrong, e.g. `"expected 4 fields, found 3"`.
        hint: What the user can do about it.
    """

    def __init__(self, path: PathLike, line: int | None, problem: str, hint: str | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.problem = problem
        self.hint = hint
        where = f"{self.path}, line {line}" if line is not None else str(self.path)
        message = f"{where}: {problem}."
        if hint:
            message += f" {hint}"
        super().__init__(message)

    def __reduce__(self):  # keep the error picklable (e.g. raised inside a `datasets.map(num_proc=...)` worker)
        return type(self), (self.path, self.line, self.problem, self.hint)


FIX_HINT = "Fix or remove that line, or download a fresh copy of the file."


def open_text(path: PathLike, encoding: str = "utf-8", newline: str | None = None) -> IO[str]:
    """Open a text file for reading, transparently decompressing `.gz` files."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding=encoding, newline=newline)
    return open(path, encoding=encoding, newline=newline)


_BLOCK = 1 << 22


def iter_lines(path: PathLike, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """
    Yield `(line_number, line)` pairs (1-based, line ending stripped) and turn decoding or gzip errors into
    [`DataFormatError`]s that say where the file broke.
    """
    path = Path(path)
    lineno = 0
    pending = b""
    try:
        with gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb") as f:
            # Decoding 4 MiB blocks of whole lines is much faster than line by line. Splitting the bytes at b"\n"
            # is safe for UTF-8 and Latin-1 (no multi-byte character contains that byte).
            while True:
                block = f.read(_BLOCK)
                data = pending + block
                cut = len(data) if not block else data.rfind(b"\n") + 1
                pending, data = data[cut:], data[:cut]
                if data:
                    try:
                        text = data.decode(encoding)
                    except UnicodeDecodeError as e:
                        bad_line = lineno + data.count(b"\n", 0, e.start) + 1
                        raise DataFormatError(
                            path,
                            bad_line,
                            f"the text is not valid {encoding} ({e.reason})",
                            "Check that this is the right file.",
                        ) from e
                    lines = text.split("\n")
                    if text.endswith("\n"):
                        lines.pop()
                    for line in lines:
                        lineno += 1
                        yield lineno, line[:-1] if line.endswith("\r") else line
                if not block:
                    break
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise DataFormatError(
            path, lineno + 1, f"the compressed file is damaged or truncated ({e})", "Delete it and download it again."
        ) from e


def find_file(folder: PathLike, names: Sequence[str]) -> Path | None:
    """Return the first of `names` (or its `.gz` version) that exists under `folder`, else `None`."""
    folder = Path(folder)
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def missing_files_error(folder: PathLike, what: str, looked_for: Sequence[str]) -> FileNotFoundError:
    """Build the error for a folder that holds none of the files a reader understands."""
    folder = Path(folder)
    if not folder.is_dir():
        return FileNotFoundError(f"{folder} is not a folder; expected a folder with {what}.")
    listing = "\n".join(f"  - {name} (or {name}.gz)" if "*" not in name else f"  - {name}" for name in looked_for)
    present = sorted(p.name for p in folder.iterdir())[:20]
    return FileNotFoundError(
        f"{folder} holds no {what}. Looked for (relative to the folder):\n{listing}\n"
        f"Found instead: {present or 'nothing (the folder is empty)'}. Put the files there, or delete the folder "
        "so that `load_interactions` downloads the dataset again."
    )


def parse_int(value: str, path: PathLike, line: int, field: str) -> int:
    """Parse an integer field or raise a [`DataFormatError`] naming the field."""
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, line, f"{field} {value!r} is not an integer", FIX_HINT) from None


def parse_timestamp(value: str, path: PathLike, line: int) -> int:
    """Parse unix seconds; accepts `"881250949"` and `"881250949.0"` (RecBole writes timestamps as floats)."""
    try:
        return int(value)
    except ValueError:
        pass
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number.is_integer():
        raise DataFormatError(path, line, f"timestamp {value!r} is not a whole number of unix seconds", FIX_HINT)
    return int(number)


def parse_optional_float(value: str | None, path: PathLike, line: int, field: str) -> float | None:
    """Parse a float field; empty values (and `None`) become `None`."""
    if value is None or value.strip() == "":
        return None
    try:
        return float(value)
    except ValueError:
        raise DataFormatError(path, line, f"{field} {value!r} is not a number", FIX_HINT) from None


def clean_str(value: object) -> str | None:
    """Strip a text value; empty text and `None` both become `None` (one way to say "missing")."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def read_user_sequences(path: PathLike, encoding: str = "utf-8") -> tuple[list[str], list[list[str]], list[int]]:
    """
    Read a `user item item ...` file (whitespace separated, one user per line, items oldest first).

    Returns `(user_ids, item_seqs, line_numbers)`. A line with no items, or a user on two lines, is an error.
    """
    user_ids: list[str] = []
    item_seqs: list[list[str]] = []
    lines: list[int] = []
    seen: dict[str, int] = {}
    for line, text in iter_lines(path, encoding):
        parts = text.split()
        if not parts:
            continue
        if len(parts) < 2:
            raise DataFormatError(
                path, line, f"user {parts[0]!r} has no items", "Each line must be `user item item ...`."
            )
        if parts[0] in seen:
            raise DataFormatError(
                path, line, f"user {parts[0]!r} already appeared on line {seen[parts[0]]}", "Keep one line per user."
            )
        seen[parts[0]] = line
        user_ids.append(parts[0])
        item_seqs.append(parts[1:])
        lines.append(line)
    return user_ids, item_seqs, lines
