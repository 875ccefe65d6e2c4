"""Progress bars for the long stages (feature embedding, ID fitting, training, evaluation) and one switch for all.

Like ``datasets.disable_progress_bars()``: :func:`disable_progress_bars` (what ``hf-genrec ... --quiet`` does)
silences every bar of hf_genrec (feature embedding, ID fitting), `GenRecTrainer`'s (training, evaluation) and
those of `datasets`, `huggingface_hub` and `transformers`. ``HF_GENREC_DISABLE_PROGRESS_BARS=1`` starts with
hf_genrec's and `GenRecTrainer`'s off; importing hf_genrec changes no other library's settings, so add their own
variables (``HF_DATASETS_DISABLE_PROGRESS_BARS=1``, ``HF_HUB_DISABLE_PROGRESS_BARS=1``) for theirs.

Example:

```python
>>> from hf_genrec.utils.progress import are_progress_bars_disabled, disable_progress_bars, enable_progress_bars
>>> disable_progress_bars()
>>> are_progress_bars_disabled()
True
>>> enable_progress_bars()
```
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from tqdm import tqdm

_disabled = os.environ.get("HF_GENREC_DISABLE_PROGRESS_BARS", "").strip().lower() in ("1", "true", "yes", "on")


def disable_progress_bars() -> None:
    """Silence hf_genrec's bars and those of `datasets`, `huggingface_hub` and `transformers` downloads."""
    global _disabled
    _disabled = True
    _set_library_bars(enabled=False)


def enable_progress_bars() -> None:
    """Show the bars again (the default, unless ``HF_GENREC_DISABLE_PROGRESS_BARS`` is set)."""
    global _disabled
    _disabled = False
    _set_library_bars(enabled=True)


def are_progress_bars_disabled() -> bool:
    """Whether :func:`disable_progress_bars` (or the environment variable) has silenced the bars."""
    return _disabled


def progress_bar(iterable: Iterable | None = None, **kwargs) -> tqdm:
    """A `tqdm` bar that honours the switch; ``kwargs`` go to `tqdm` (``desc``, ``total``, ``unit``...)."""
    # tqdm's own default (disable=None) hides bars when stderr is no TTY, which hides them in notebooks too
    kwargs.setdefault("disable", _disabled)
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)


def _set_library_bars(enabled: bool) -> None:
    import datasets
    import huggingface_hub.utils
    import transformers.utils.logging

    if enabled:
        datasets.enable_progress_bars()
        huggingface_hub.utils.enable_progress_bars()
        transformers.utils.logging.enable_progress_bar()
    else:
        datasets.disable_progress_bars()
        huggingface_hub.utils.disable_progress_bars()
        transformers.utils.logging.disable_progress_bar()
