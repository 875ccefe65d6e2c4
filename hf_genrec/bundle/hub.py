"""Bundles on the Hugging Face Hub: download one as a unit, check it is complete, push a folder as one.

A bundle's files are listed in `hf_genrec.bundle.layout`; this module moves whole bundles to and from the Hub.
"""

from __future__ import annotations

import os
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import LocalEntryNotFoundError

from ..semantic_ids._io import check_repo_id
from .layout import TRAINING_WEIGHTS_NAME, check_bundle

#: never pushed: Trainer's resumable checkpoints and pickled states, logs, caches
PUSH_IGNORE_PATTERNS = ["checkpoint-*", "checkpoint-*/**", "_*", "runs/**", "*.pt", "*.pth", "*.bin", "*.pkl"]
#: nor the hidden folders of a save in progress (or killed) and of replaced subfolders (hf_genrec.utils.saving)
PUSH_IGNORE_PATTERNS += [".*.saving-*", ".*.saving-*/**", ".*.old-*", ".*.old-*/**"]
#: nor the raw weights a run with ``ema_decay`` keeps beside its averaged ones, for resuming (hf_genrec.training.averaging)
PUSH_IGNORE_PATTERNS += [TRAINING_WEIGHTS_NAME]


def resolve_bundle(
    path_or_repo_id: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> Path:
    """A local folder holding the bundle: ``path_or_repo_id`` itself if it is a folder, else a Hub snapshot."""
    local = Path(path_or_repo_id)
    if local.is_dir():
        return local
    repo_id = check_repo_id(path_or_repo_id)
    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                ignore_patterns=PUSH_IGNORE_PATTERNS,
            )
        )
    except LocalEntryNotFoundError as err:
        # offline, a mistyped folder reads as a repo id that is not cached: name both readings
        raise LocalEntryNotFoundError(
            f"{str(path_or_repo_id)!r} is not a folder here ({Path.cwd()}), and as a Hub repo id it is not in the "
            "local cache and cannot be downloaded (offline, or the Hub is out of reach). Check the folder's path (a "
            "folder written by `hf-genrec train` or `save_pretrained`), or download the repo while online."
        ) from err


def push_folder(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str = "Upload hf_genrec recommender",
    create_pr: bool = False,
):
    """Create ``repo_id`` if needed and upload the bundle in ``folder`` as one commit (checkpoints/pickles left out)."""
    check_bundle(folder)
    api = HfApi(token=token)
    repo = api.create_repo(repo_id, private=private, exist_ok=True)
    return api.upload_folder(
        repo_id=repo.repo_id,
        folder_path=str(folder),
        revision=revision,
        commit_message=commit_message,
        ignore_patterns=PUSH_IGNORE_PATTERNS,
        create_pr=create_pr,
    )
