"""Bundles on the Hugging Face Hub: download one as a unit, check it is complete, push a folder as one.

A bundle is a folder: ``config.json`` + ``model.safetensors`` (a plain ``T5ForConditionalGeneration``), the tokenizer
files (with the semantic-ID tokens), ``semantic_ids/`` (item ↔ codes), ``quantizer/`` (to encode new items),
``genrec_config.json``, ``catalog.json`` (items added and retired since training, when there are any) and ``README.md``
(the model card). No pickle.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..semantic_ids._io import check_repo_id
from ..tokenization import ITEM_MAP_DIR
from ..training.averaging import TRAINING_WEIGHTS_NAME
from .config import CONFIG_NAME as GENREC_CONFIG_NAME

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
    from huggingface_hub import snapshot_download

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


def check_bundle(folder: str | os.PathLike) -> None:
    """Raise a clear error when ``folder`` is not a complete hf_genrec bundle."""
    folder = Path(folder)
    has_genrec = (folder / GENREC_CONFIG_NAME).is_file() or (folder / ITEM_MAP_DIR).is_dir()
    if (folder / "config.json").is_file() and not has_genrec:
        raise FileNotFoundError(
            f"{folder} is not an hf_genrec checkpoint: it holds a plain Transformers checkpoint with no hf_genrec files ({GENREC_CONFIG_NAME}, "
            f"{ITEM_MAP_DIR}/): there is no item catalogue to recommend from. Train with `hf-genrec train` or save "
            "a GenerativeRecommender; the T5 weights alone load with AutoModelForSeq2SeqLM."
        )
    missing = [name for name in ("config.json", GENREC_CONFIG_NAME) if not (folder / name).is_file()]
    if not (folder / ITEM_MAP_DIR).is_dir():
        missing.append(f"{ITEM_MAP_DIR}/ (the item ↔ semantic-ID map)")
    if not any((folder / name).is_file() for name in ("model.safetensors", "model.safetensors.index.json")):
        missing.append("model.safetensors")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete hf_genrec bundle: missing {', '.join(missing)}. Save it again with "
            "GenerativeRecommender.save_pretrained() or GenRecTrainer.save_model()."
        )


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
    from huggingface_hub import HfApi

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
