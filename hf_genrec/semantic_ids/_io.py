"""JSON + safetensors files of semantic IDs and quantisers (never pickle), read locally or from the Hub."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..utils.paths import join_inside
from ..version import __version__

logger = logging.getLogger(__name__)

QUANTIZER_CONFIG_NAME = "quantizer_config.json"
QUANTIZER_WEIGHTS_NAME = "quantizer.safetensors"


def library_version() -> str:
    return __version__


def check_repo_id(path_or_repo_id: str | os.PathLike) -> str:
    """Return ``path_or_repo_id`` as a Hub repo id, or raise if it names a local path that is not a folder."""
    local, text = Path(path_or_repo_id), str(path_or_repo_id)
    if local.exists() or local.is_absolute() or text.startswith(".") or text.count("/") > 1:
        raise FileNotFoundError(f"{path_or_repo_id} is not a folder (expected a local folder or a Hub repo id).")
    return text


def resolve_file(path_or_repo_id: str | os.PathLike, filename: str, **hub_kwargs) -> Path:
    """``path/filename`` when ``path`` is a local folder, else download ``filename`` from a Hub repo id.

    ``hub_kwargs`` go to :func:`huggingface_hub.hf_hub_download` (``revision``, ``subfolder``, ``token``, ...).
    """
    local = Path(path_or_repo_id)
    subfolder = hub_kwargs.get("subfolder")
    if local.is_dir():
        folder = join_inside(local, subfolder, what="subfolder") if subfolder else local
        path = join_inside(folder, filename, what="file name")
        if not path.is_file():
            raise FileNotFoundError(f"{folder} has no {filename}; was it written by save_pretrained()/save()?")
        return path
    repo_id = check_repo_id(path_or_repo_id)
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(repo_id, filename, **hub_kwargs))


def write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n", encoding="utf-8")


class DamagedFileError(ValueError):
    """A saved file that cannot be read (truncated, overwritten, not what its name says); the message says what to do."""

    def __init__(self, path: str | os.PathLike, problem: str):
        super().__init__(
            f"{path} cannot be read ({problem}): the file is truncated or damaged. Save the bundle again (or delete "
            "it from the Hugging Face cache and download it again)."
        )


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError is a ValueError
        raise DamagedFileError(path, f"not valid JSON: {err}") from err


def read_safetensors(path: str | os.PathLike) -> dict:
    """The arrays of a safetensors file, or `DamagedFileError` when it cannot be read."""
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises its own SafetensorError (and OSError for short files)
        raise DamagedFileError(path, f"not a whole safetensors file: {err}") from err


def drop_unknown_keys(config: dict, known: set[str], what: str) -> dict:
    """Keep the keys this version knows; warn about the rest (written by a newer hf_genrec)."""
    unknown = sorted(set(config) - known)
    if unknown:
        logger.warning(
            "Ignoring unknown keys %s in %s (written by hf_genrec %s; this is %s). Upgrade hf_genrec "
            "(`pip install -U hf_genrec`) if the result looks wrong.",
            unknown,
            what,
            config.get("hf_genrec_version", "?"),
            library_version(),
        )
    return {key: value for key, value in config.items() if key in known}
