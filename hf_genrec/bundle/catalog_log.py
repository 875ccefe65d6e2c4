"""``catalog.json``: what changed in a bundle's catalogue since training (items added, IDs retired)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..version import __version__
from .layout import CATALOG_NAME

CATALOG_FORMAT_VERSION = 1


@dataclass
class CatalogLog:
    """What changed in the catalogue since training: the items added (cold-start candidates) and the retired IDs.

    Args:
        new_items: ids of the items added after training, in the order they were added.
        retired: one ``{"item_id": ..., "codes": [...]}`` entry per removed item; the codes are never reused.
    """

    new_items: list[str] = field(default_factory=list)
    retired: list[dict] = field(default_factory=list)

    def retired_codes(self, n_levels: int) -> np.ndarray:
        """The retired code tuples as an int64 ``[n, n_levels]`` array (``-1`` padded)."""
        out = np.full((len(self.retired), n_levels), -1, dtype=np.int64)
        for row, entry in enumerate(self.retired):
            codes = entry["codes"][:n_levels]
            out[row, : len(codes)] = codes
        return out

    def is_empty(self) -> bool:
        return not self.new_items and not self.retired

    def save(self, directory: str | os.PathLike) -> None:
        payload = {
            "format_version": CATALOG_FORMAT_VERSION,
            "hf_genrec_version": __version__,
            "new_items": self.new_items,
            "retired": self.retired,
        }
        Path(directory).mkdir(parents=True, exist_ok=True)
        (Path(directory) / CATALOG_NAME).write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: str | os.PathLike) -> CatalogLog:
        """Read ``catalog.json`` (an empty log when the folder has none: a bundle as it came out of training)."""
        path = Path(directory) / CATALOG_NAME
        if not path.is_file():
            return cls()
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); the bundle is damaged.") from err
        if payload.get("format_version", 1) > CATALOG_FORMAT_VERSION:
            raise ValueError(f"{path} has a newer format ({payload['format_version']}); upgrade hf_genrec.")
        retired = payload.get("retired", [])
        if not all(isinstance(e, dict) and "item_id" in e and "codes" in e for e in retired):
            raise ValueError(f"{path}: every `retired` entry needs an `item_id` and its `codes`.")
        return cls(new_items=[str(i) for i in payload.get("new_items", [])], retired=retired)
