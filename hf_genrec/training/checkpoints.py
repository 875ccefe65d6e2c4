"""Checkpoints of `GenRecTrainer`: which one a run resumes from, the arguments kept as JSON, pushing one to the Hub."""

from __future__ import annotations

import os
from concurrent.futures import Future

from huggingface_hub import HfApi
from transformers import TrainingArguments

# Trainer._save (transformers 5.25) pickles the arguments into this file of every saved folder; it is only a module
# constant of transformers.trainer, not exported by the package, and bundles hold no pickle, so it is replaced by JSON.
from transformers.trainer import TRAINING_ARGS_NAME
from transformers.trainer_utils import get_last_checkpoint

from ..bundle.hub import PUSH_IGNORE_PATTERNS
from ..utils.saving import CheckpointError, check_checkpoint, last_complete_checkpoint

#: the training arguments of a saved folder, as JSON (`TrainingArguments.to_json_string`)
TRAINING_ARGS_JSON = "training_args.json"
#: Trainer's resumable states in a checkpoint, which a pushed bundle leaves out
TRAINER_STATE_PATTERNS = ["optimizer.*", "scheduler.*", "rng_state*", "trainer_state.json"]


def resolve_resume_checkpoint(
    resume_from_checkpoint: str | os.PathLike | bool | None, output_dir: str | os.PathLike
) -> str | os.PathLike | bool | None:
    """The checkpoint ``train(resume_from_checkpoint=...)`` resumes from, checked to be complete and undamaged.

    ``True`` means the newest *complete* checkpoint in ``output_dir`` (Trainer would pick the newest folder, and a run
    killed while saving leaves a partial ``checkpoint-N`` behind); a path is checked as given.

    Raises:
        CheckpointError: ``output_dir`` holds checkpoints but none is complete, or the given one is not.
    """
    checkpoint = resume_from_checkpoint
    if checkpoint is True:
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None and get_last_checkpoint(output_dir) is not None:
            raise CheckpointError(
                f"{output_dir} holds checkpoints, but none is complete and undamaged (see the warnings above). Start "
                "the run again without resume_from_checkpoint."
            )
    if isinstance(checkpoint, str | os.PathLike):
        check_checkpoint(checkpoint)
    return checkpoint


def replace_pickled_arguments(folder: str | os.PathLike, args: TrainingArguments) -> None:
    """Remove the pickled arguments Trainer's ``_save`` wrote into ``folder`` and keep them as `TRAINING_ARGS_JSON`."""
    pickled_args = os.path.join(folder, TRAINING_ARGS_NAME)
    if os.path.exists(pickled_args):
        os.remove(pickled_args)
    with open(os.path.join(folder, TRAINING_ARGS_JSON), "w") as f:
        f.write(args.to_json_string())


def push_checkpoint(folder: str | os.PathLike, repo_id: str, args: TrainingArguments, commit_message: str) -> Future:
    """Start uploading the bundle saved in the checkpoint ``folder`` as the main files of ``repo_id`` (in the
    background; the returned future ends with the commit), without Trainer's resumable states or any pickle."""
    return HfApi().upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        commit_message=commit_message,
        token=args.hub_token,
        run_as_future=True,
        ignore_patterns=PUSH_IGNORE_PATTERNS + TRAINER_STATE_PATTERNS,
        revision=args.hub_revision,
    )
