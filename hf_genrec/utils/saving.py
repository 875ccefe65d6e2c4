"""Crash-safe saving: a bundle or a checkpoint is either the previous one or the new one, never half of each.

Bundles are written into a hidden sibling folder first and moved into place only once every file is complete, so a
crash (or an error, or a full disk) while writing leaves the previous bundle where it was, loadable. Trainer
checkpoints are marked complete by their last file; resuming skips any that lack it, and checks the files it will
read before reading them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

#: weight files a new save replaces as a set (a sharded model saved over a single-file one, or the reverse)
WEIGHT_PATTERNS = ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json")
#: written last into every `GenRecTrainer` checkpoint (by the training clock): a checkpoint without it is incomplete
COMPLETE_MARKER = "training_clock.json"


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder and ``os.replace``: readers see the
    old file or the new one, never a truncated one."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def staged_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh folder beside ``directory`` to write a bundle into; on success, move its entries into
    ``directory`` (created if needed), replacing entries of the same name; on any error, delete it and leave
    ``directory`` untouched. Staging folders left by a save that was killed are removed first.

    Entries of ``directory`` that the new bundle does not write (``checkpoint-*`` folders, logs) are kept, except old
    weight files the new ones supersede. Each move is one ``rename`` on the same file system, so the only window in
    which a crash could mix old and new files is the few renames at the end, after everything has been written.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    for stale in directory.parent.glob(f".{directory.name}.saving-*"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.saving-", dir=directory.parent))
    try:
        yield staging
        _fsync_tree(staging)
        directory.mkdir(exist_ok=True)
        _publish(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging: Path, directory: Path) -> None:
    new_names = {entry.name for entry in staging.iterdir()}
    if any(name in new_names for name in ("model.safetensors", "model.safetensors.index.json")):
        for pattern in WEIGHT_PATTERNS:
            for old in directory.glob(pattern):
                if old.name not in new_names:
                    old.unlink()
    # folders first, the weights and configs last: a bundle is recognised by its config files
    entries = sorted(staging.iterdir(), key=lambda e: (not e.is_dir(), e.name.endswith(".json"), e.name))
    for entry in entries:
        target = directory / entry.name
        if entry.is_dir() and target.is_file():
            target.unlink()
        if entry.is_dir() and target.exists():
            aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=directory))
            os.rename(target, aside / entry.name)
            os.rename(entry, target)
            shutil.rmtree(aside, ignore_errors=True)
        else:
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(entry, target)


class CheckpointError(ValueError):
    """A Trainer checkpoint that cannot be resumed from: incomplete or damaged. The message says what to do."""


def checkpoint_problem(folder: str | os.PathLike) -> str | None:
    """What is wrong with the checkpoint in ``folder`` (``None`` when it looks resumable).

    Checks without loading anything: the completion marker, that ``trainer_state.json`` and the marker parse as JSON,
    that every safetensors file's header and size agree, and that every ``.pt``/``.pth`` file is a whole archive.
    """
    folder = Path(folder)
    if not (folder / COMPLETE_MARKER).is_file():
        return f"it has no {COMPLETE_MARKER}, which is written last: the save was interrupted"
    for name in (COMPLETE_MARKER, "trainer_state.json"):
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            return f"{name} is not valid JSON ({err})"
    for path in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(path)
        if problem:
            return f"{path.name} {problem}"
    for path in sorted([*folder.glob("*.pt"), *folder.glob("*.pth")]):
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError) as err:
            return f"{path.name} is damaged or truncated ({err})"
        if bad is not None:
            return f"{path.name} is damaged (member {bad} fails its checksum)"
    return None


def _safetensors_problem(path: Path) -> str | None:
    size = path.stat().st_size
    if size < 8:
        return "is truncated (shorter than its header)"
    with open(path, "rb") as f:
        header_length = int.from_bytes(f.read(8), "little")
        if 8 + header_length > size:
            return "is truncated (its header runs past the end of the file)"
        try:
            header = json.loads(f.read(header_length))
        except (ValueError, UnicodeDecodeError):
            return "has a damaged header"
    ends = [info["data_offsets"][1] for key, info in header.items() if key != "__metadata__"]
    if 8 + header_length + max(ends, default=0) != size:
        return (
            f"is truncated or damaged ({size} bytes, its header describes {8 + header_length + max(ends, default=0)})"
        )
    return None


def _step(folder: Path) -> int:
    return int(folder.name.rsplit("-", 1)[1])


def last_complete_checkpoint(output_dir: str | os.PathLike) -> str | None:
    """The newest ``checkpoint-N`` in ``output_dir`` that is complete and undamaged (``None`` if there is none).

    Newer checkpoints that are not (a run killed while saving) are skipped with a warning naming them.
    """
    import logging

    logger = logging.getLogger(__name__)
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return None
    folders = [
        p for p in output_dir.glob(f"{PREFIX_CHECKPOINT_DIR}-*") if p.is_dir() and p.name.rsplit("-", 1)[1].isdigit()
    ]
    for folder in sorted(folders, key=_step, reverse=True):
        problem = checkpoint_problem(folder)
        if problem is None:
            return str(folder)
        logger.warning("Skipping %s: %s. Resuming from an earlier checkpoint.", folder, problem)
    return None


def check_checkpoint(folder: str | os.PathLike) -> None:
    """Raise `CheckpointError` saying what to do when ``folder`` cannot be resumed from."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"Checkpoint {folder} does not exist. Pass a checkpoint-N folder of the output dir.")
    problem = checkpoint_problem(folder)
    if problem is None:
        return
    earlier = [
        p.name
        for p in folder.parent.glob(f"{PREFIX_CHECKPOINT_DIR}-*")
        if p != folder and p.name.rsplit("-", 1)[1].isdigit() and checkpoint_problem(p) is None
    ]
    hint = (
        f"Resume from {sorted(earlier, key=lambda n: int(n.rsplit('-', 1)[1]))[-1]} instead (or pass "
        "resume_from_checkpoint=True / `last`, which skips damaged checkpoints)"
        if earlier
        else "No other complete checkpoint is there: start the run again"
    )
    raise CheckpointError(f"Cannot resume from {folder}: {problem}. {hint}, and delete {folder.name}.")
