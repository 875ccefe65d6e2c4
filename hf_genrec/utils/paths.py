"""Paths built from names found in configs, bundles and archives stay inside the folder they are meant for."""

from __future__ import annotations

import os
from pathlib import Path


class UnsafePathError(ValueError):
    """A name from a config, a bundle or an archive that would reach outside its folder (``..``, an absolute path)."""


def join_inside(base: str | os.PathLike, *parts: str | os.PathLike, what: str = "path") -> Path:
    """``base / parts...``, or `UnsafePathError` when the result is not inside ``base``.

    The check is on the names themselves (``..``, absolute paths), not on where symbolic links point: the Hugging
    Face cache links every file of a snapshot to a blob outside the snapshot's folder.

    Example:

    ```python
    >>> from hf_genrec.utils.paths import join_inside
    >>> join_inside("data", "ml-1m").as_posix()
    'data/ml-1m'
    >>> join_inside("data", "../etc")
    Traceback (most recent call last):
    ...
    hf_genrec.utils.paths.UnsafePathError: The path '../etc' leads outside data ...
    ```
    """
    base = Path(base)
    path = base.joinpath(*parts)
    inside = Path(os.path.normpath(os.path.abspath(path)))
    if not inside.is_relative_to(Path(os.path.normpath(os.path.abspath(base)))):
        shown = "/".join(str(p) for p in parts)
        raise UnsafePathError(
            f"The {what} {shown!r} leads outside {base} (to {inside}); names from configs, bundles and archives must "
            "stay inside their folder. Use a plain name or a relative path without '..'."
        )
    return path
