"""``--quiet`` for the ``hf-genrec`` commands."""

from __future__ import annotations

import logging

import transformers

from ..utils.progress import disable_progress_bars


def silence() -> None:
    """``--quiet``: no progress bars anywhere (embedding, IDs, training, evaluation) and warnings only."""
    disable_progress_bars()
    logging.getLogger().setLevel(logging.WARNING)
    transformers.logging.set_verbosity_warning()
