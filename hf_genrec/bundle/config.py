"""``genrec_config.json``: what a checkpoint needs beyond the model's files to serve recommendations."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..decoding.fusion import FusionConfig
from ..version import __version__

logger = logging.getLogger(__name__)

CONFIG_NAME = "genrec_config.json"
#: keys every genrec_config.json has had since 0.1.0; a file without them was not written by hf_genrec
REQUIRED_KEYS = ("id_scheme", "num_beams", "top_k", "max_history", "library_version")


@dataclass
class GenRecConfig:
    """Sidecar configuration of an hf_genrec checkpoint, stamped with the library version that wrote it.

    Args:
        id_scheme (`str`): how item IDs were made (``"rqkmeans"``, ``"rqvae"``, ``"custom"``...).
        num_beams (`int`): beams for constrained beam search.
        top_k (`int`): items returned by default.
        max_history (`int`): items of history the model reads (older ones are cut).
        dataset (`str`, *optional*): the dataset it was trained on.
        new_item_slots (`int`, defaults to 0): places of the top K that `recommend` gives to items added since
            training (the cold-start mode; 0 turns it off).
        fusion (`FusionConfig`): what `recommend` bans and fuses by default (history exclusion, the successor
            prior's and the dense scorer's weights; `hf_genrec.decoding.fusion`). Bundles of hf_genrec 0.1 kept
            these keys at the top level; they are read into ``fusion``.
        backbone (`str`, *optional*): the model's architecture: ``"t5"`` (an encoder-decoder) or the decoder-only
            backbone it was built from (a model type such as ``"llama"``, or the pretrained checkpoint `hf-genrec
            train` started from). Saving fills it in from the model's ``config.json`` when unset; `None` in bundles
            written before decoder-only backbones, all of them T5s.
    """

    id_scheme: str = "rqkmeans"
    num_beams: int = 20
    top_k: int = 10
    max_history: int = 20
    dataset: str | None = None
    new_item_slots: int = 0
    fusion: FusionConfig = field(default_factory=FusionConfig)
    backbone: str | None = None
    extra: dict = field(default_factory=dict)
    library_version: str = ""

    def __post_init__(self):
        if not isinstance(self.fusion, FusionConfig):
            self.fusion = FusionConfig.from_dict(self.fusion)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        data = dataclasses.asdict(self)
        data["library_version"] = __version__
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        (Path(save_directory) / CONFIG_NAME).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> GenRecConfig:
        """Read ``genrec_config.json``: unknown keys (a newer hf_genrec) warn and are dropped, missing ones raise."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: {directory} is not an hf_genrec checkpoint (a plain Transformers checkpoint has no "
                f"{CONFIG_NAME}). Save one with `GenerativeRecommender.save_pretrained` or `hf-genrec train`."
            )
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); the checkpoint is damaged.") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a JSON object, got {type(data).__name__}; the checkpoint is damaged.")
        missing = [key for key in REQUIRED_KEYS if key not in data]
        if missing:
            raise ValueError(
                f"{path} lacks the required keys {missing}: it was not written by hf_genrec, or was edited by hand. "
                "Save the recommender again with GenerativeRecommender.save_pretrained()."
            )
        if _version_tuple(data["library_version"]) > _version_tuple(__version__):
            logger.warning(
                "%s was written by hf_genrec %s, newer than this one (%s). Upgrade with `pip install -U hf_genrec` if "
                "loading or recommending fails.",
                path,
                data["library_version"],
                __version__,
            )
        # hf_genrec 0.1 wrote the fusion settings at the top level
        legacy = {key: data.pop(key) for key in FusionConfig.field_names() if key in data}
        fusion = {**legacy, **data.get("fusion", {})}
        data["fusion"] = {key: value for key, value in fusion.items() if key in FusionConfig.field_names()}
        data.update({f"fusion.{key}": value for key, value in fusion.items() if key not in data["fusion"]})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            logger.warning(
                "%s has keys this version of hf_genrec does not know (%s), written by hf_genrec %s; they are "
                "ignored. Upgrade with `pip install -U hf_genrec` to use them.",
                path,
                ", ".join(unknown),
                data.get("library_version", "?"),
            )
        return cls(**{k: v for k, v in data.items() if k in known})


def _version_tuple(version: str) -> tuple[int, ...]:
    parts = []
    for part in str(version).split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
