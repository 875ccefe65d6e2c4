"""`ItemIDScheme`: the small interface every semantic-ID scheme shares, and its files.

A scheme is fitted once on the catalogue (``fit(features, item_ids) -> SemanticIDs``), gives codes to new items
(``encode(features)``), and saves itself as ``quantizer_config.json`` + ``quantizer.safetensors`` (never pickle).
Subclasses name their constructor arguments in ``_config_keys`` and their fitted arrays in ``_state()`` /
``_load_state()``; saving and loading are written once, here.
"""

from __future__ import annotations

import os
from typing import ClassVar

import numpy as np

from ..utils.saving import staged_directory
from ._io import (
    QUANTIZER_CONFIG_NAME,
    QUANTIZER_WEIGHTS_NAME,
    drop_unknown_keys,
    library_version,
    read_json,
    read_safetensors,
    resolve_file,
    write_json,
)
from .ids import SemanticIDs

#: scheme name -> class; filled by ``ItemIDScheme.__init_subclass__``.
SCHEMES: dict[str, type[ItemIDScheme]] = {}


class ItemIDScheme:
    """Base class of the semantic-ID schemes (RQ-VAE, RQ-KMeans, hierarchical, title, random, atomic).

    Subclasses set ``scheme`` (the name saved in files and used on the command line), list their constructor
    arguments in ``_config_keys`` (stored as attributes of the same name), and implement ``fit``, ``encode``,
    ``_state`` and ``_load_state``.
    """

    scheme: ClassVar[str] = ""
    _config_keys: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.scheme:
            SCHEMES[cls.scheme] = cls

    # ------------------------------------------------------------------ interface
    def fit(self, features, item_ids) -> SemanticIDs:
        """Learn the scheme on the catalogue's features (row ``i`` is ``item_ids[i]``) and return every item's IDs."""
        raise NotImplementedError

    def encode(self, features) -> np.ndarray:
        """Codes of new items (without the collision level), from the fitted scheme."""
        raise NotImplementedError

    def decode(self, codes) -> np.ndarray:
        """Features ``float32 [n, dim]`` that ``codes`` (without the collision level) stand for, in the space the
        scheme was fitted on; schemes that cannot map codes back raise."""
        raise NotImplementedError(
            f"{type(self).__name__} cannot map codes back to features; place new items with text features or "
            "codes= instead."
        )

    @property
    def is_fitted(self) -> bool:
        return bool(self._state())

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError(
                f"This {type(self).__name__} is not fitted; call fit(features, item_ids) or from_pretrained() first."
            )

    def _state(self) -> dict[str, np.ndarray]:
        """The fitted arrays to save (empty before ``fit``)."""
        return {}

    def _load_state(self, tensors: dict[str, np.ndarray], config: dict) -> None:
        """Restore what ``_state`` returned; ``config`` is the saved ``quantizer_config.json``."""

    def _extra_config(self) -> dict:
        """Fitted facts to save beside the constructor arguments (e.g. the input dimension)."""
        return {}

    def get_config(self) -> dict:
        config = {"scheme": self.scheme, "hf_genrec_version": library_version()}
        config.update({key: _jsonable(getattr(self, key)) for key in self._config_keys})
        config.update(self._extra_config())
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{key}={getattr(self, key)!r}" for key in self._config_keys[:4])
        return f"{type(self).__name__}({args}, fitted={self.is_fitted})"

    # ------------------------------------------------------------------ files
    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``quantizer_config.json`` (arguments + scheme + version) and ``quantizer.safetensors``."""
        from safetensors.numpy import save_file

        self._require_fitted()
        with staged_directory(save_directory) as directory:  # a crash while saving leaves the previous files
            write_json(directory / QUANTIZER_CONFIG_NAME, self.get_config())
            tensors = {key: np.ascontiguousarray(value) for key, value in self._state().items()}
            save_file(tensors, str(directory / QUANTIZER_WEIGHTS_NAME), metadata={"scheme": self.scheme})

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str | os.PathLike, **hub_kwargs) -> ItemIDScheme:
        """Load what :meth:`save_pretrained` wrote (local folder or Hub repo id; ``subfolder=``, ``revision=``...).

        Called on the base class, it loads whichever scheme the folder holds.
        """

        config_path = resolve_file(path_or_repo_id, QUANTIZER_CONFIG_NAME, **hub_kwargs)
        config = read_json(config_path)
        scheme = config.get("scheme")
        target = SCHEMES.get(scheme)
        if target is None:
            raise ValueError(f"{config_path} names scheme {scheme!r}; known schemes: {sorted(SCHEMES)}.")
        if cls is not ItemIDScheme and target is not cls:
            raise ValueError(
                f"{config_path} holds a {scheme!r} scheme, not {cls.scheme!r}; use "
                "hf_genrec.semantic_ids.load_quantizer() (or ItemIDScheme.from_pretrained) to load any scheme."
            )
        known = set(target._config_keys)
        allowed = known | set(target._extra_keys()) | {"scheme", "hf_genrec_version"}
        config = drop_unknown_keys(config, allowed, str(config_path))
        instance = target(**{key: value for key, value in config.items() if key in known})
        tensors = read_safetensors(resolve_file(path_or_repo_id, QUANTIZER_WEIGHTS_NAME, **hub_kwargs))
        instance._load_state(tensors, config)
        instance._after_load(path_or_repo_id, **hub_kwargs)
        return instance

    @classmethod
    def _extra_keys(cls) -> tuple[str, ...]:
        """Names of the keys ``_extra_config`` writes (so loading does not warn about them)."""
        return ()

    def _after_load(self, path_or_repo_id, **hub_kwargs) -> None:
        """Hook for schemes with extra files (the title scheme's tokenizer)."""


def _jsonable(value):
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


def load_quantizer(path_or_repo_id: str | os.PathLike, **hub_kwargs) -> ItemIDScheme:
    """Load whichever scheme ``save_pretrained`` wrote to this folder / Hub repo."""
    return ItemIDScheme.from_pretrained(path_or_repo_id, **hub_kwargs)
