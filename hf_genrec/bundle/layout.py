"""The one layout of a saved recommender (a *bundle*): which parts it has, where each lives, which are required.

Every writer and reader of a bundle goes through this table: `save_bundle` / `load_bundle` (`hf_genrec.bundle.io`),
`GenRecTrainer`'s checkpoints and final save, `GenerativeRecommender.save_pretrained` / `from_pretrained`, the
pipeline, `hf-genrec push` and `check_bundle`. A bundle also carries ``genrec_manifest.json``, the list of the parts
it holds, so a reader can tell a bundle without a prior from a download that lost one.

```
config.json, model.safetensors        the model: plain AutoModelForSeq2SeqLM (or AutoModelForCausalLM) files
tokenizer.json, tokenizer_config.json the tokenizer, with one special token per (level, code)
semantic_ids/                         the item map: item id <-> codes
genrec_config.json                    beams, K, history cap, FusionConfig, library version
genrec_manifest.json                  the parts below that this bundle holds
quantizer/                            the fitted ID scheme, to give new items codes       (optional)
transitions.safetensors               the successor prior                                  (optional)
scorer/                               the dense next-item scorer of a hybrid (a SASRec)    (optional)
catalog.json                          items added and retired since training               (optional)
content_map.safetensors               item content -> codes, for items with no interactions (optional)
item_titles.json                      item id -> title, for pages that show the items       (optional)
genrec_card.json                      what the card says: test metrics, protocol, baselines, training log
README.md                             the model card with model-index metrics
```
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..features.content_map import CONTENT_MAP_NAME
from ..models.prior import TRANSITIONS_NAME
from ..tokenization import ITEM_MAP_DIR
from ..utils.saving import WEIGHT_PATTERNS
from .config import CONFIG_NAME

MANIFEST_NAME = "genrec_manifest.json"
MANIFEST_FORMAT_VERSION = 1
CARD_NAME = "README.md"
#: the facts the card is rendered from (metrics, protocol, baselines, training), so a re-saved bundle keeps them
CARD_DATA_NAME = "genrec_card.json"
QUANTIZER_DIR = "quantizer"
SCORER_DIR = "scorer"
CATALOG_NAME = "catalog.json"
#: ``{item id: title}`` of the items whose data has a title (`hf-genrec demo` shows them)
ITEM_TITLES_NAME = "item_titles.json"
#: the raw weights a run with ``ema_decay`` keeps beside its averaged ones, to resume from: in checkpoints only
TRAINING_WEIGHTS_NAME = "training_weights.safetensors"


@dataclass(frozen=True)
class BundlePart:
    """One part of a bundle.

    Args:
        name (`str`): the part's name in the manifest and the attribute of `BundleContents` that holds it.
        path (`str`): the file or folder inside the bundle.
        is_folder (`bool`): whether ``path`` is a folder.
        required (`bool`): every bundle has it.
        description (`str`): what it is, for error messages.
    """

    name: str
    path: str
    is_folder: bool
    required: bool
    description: str

    def exists_in(self, folder: str | os.PathLike) -> bool:
        target = Path(folder) / self.path
        return target.is_dir() if self.is_folder else target.is_file()


PARTS: tuple[BundlePart, ...] = (
    BundlePart("model", "config.json", False, True, "the model's config.json (its weights: model.safetensors)"),
    BundlePart("item_tokenizer", ITEM_MAP_DIR, True, True, "the item <-> semantic-ID map"),
    BundlePart("config", CONFIG_NAME, False, True, "the recommender's settings"),
    BundlePart("quantizer", QUANTIZER_DIR, True, False, "the fitted ID scheme that encodes new items"),
    BundlePart("transitions", TRANSITIONS_NAME, False, False, "the successor prior of the training sequences"),
    BundlePart("scorer", SCORER_DIR, True, False, "the dense next-item scorer of a hybrid"),
    BundlePart("catalog", CATALOG_NAME, False, False, "the items added and retired since training"),
    BundlePart("content_map", CONTENT_MAP_NAME, False, False, "item content -> codes, for new items"),
    BundlePart("item_titles", ITEM_TITLES_NAME, False, False, "the items' titles, for pages that show them"),
    BundlePart("card_data", CARD_DATA_NAME, False, False, "the model card's facts (metrics, protocol, training)"),
    BundlePart("card", CARD_NAME, False, False, "the model card"),
)
PART_BY_NAME = {part.name: part for part in PARTS}


def write_manifest(folder: str | os.PathLike, parts: list[str], library_version: str) -> None:
    """Write ``genrec_manifest.json``: the names of the parts ``folder`` holds (in `PARTS` order)."""
    unknown = sorted(set(parts) - set(PART_BY_NAME))
    if unknown:
        raise ValueError(f"Unknown bundle parts {unknown}; a bundle has {list(PART_BY_NAME)}.")
    payload = {
        "format_version": MANIFEST_FORMAT_VERSION,
        "library_version": library_version,
        "parts": {part.name: part.path for part in PARTS if part.name in set(parts)},
    }
    (Path(folder) / MANIFEST_NAME).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def read_manifest(folder: str | os.PathLike) -> list[str] | None:
    """The part names listed by ``folder``'s manifest; `None` for a bundle written before manifests (0.1)."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the bundle is damaged. Save it again.") from err
    if not isinstance(payload, dict) or not isinstance(payload.get("parts"), dict):
        raise ValueError(f"{path} must hold a JSON object with a `parts` mapping; the bundle is damaged.")
    if payload.get("format_version", 1) > MANIFEST_FORMAT_VERSION:
        raise ValueError(
            f"{path} has manifest format {payload['format_version']}, newer than this hf_genrec reads "
            f"({MANIFEST_FORMAT_VERSION}). Upgrade with `pip install -U hf_genrec`."
        )
    return [name for name in payload["parts"] if name in PART_BY_NAME]


def bundle_parts(folder: str | os.PathLike) -> list[str]:
    """The parts ``folder`` holds: its manifest's list, or (a bundle without one) the parts found on disk."""
    listed = read_manifest(folder)
    return listed if listed is not None else [part.name for part in PARTS if part.exists_in(folder)]


def _has_weights(folder: Path) -> bool:
    return any(any(folder.glob(pattern)) for pattern in WEIGHT_PATTERNS)


def check_bundle(folder: str | os.PathLike) -> None:
    """Raise a clear error when ``folder`` is not a complete hf_genrec bundle: a required part, or a part its
    manifest lists, is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"{folder} is not a complete hf_genrec bundle: there is no such folder. Pass the folder a bundle was "
            "saved to (`hf-genrec train --output_dir`, `GenerativeRecommender.save_pretrained`)."
        )
    has_genrec = (folder / CONFIG_NAME).is_file() or (folder / ITEM_MAP_DIR).is_dir()
    if (folder / "config.json").is_file() and not has_genrec:
        raise FileNotFoundError(
            f"{folder} is not an hf_genrec checkpoint: it holds a plain Transformers checkpoint with no hf_genrec "
            f"files ({CONFIG_NAME}, {ITEM_MAP_DIR}/): there is no item catalogue to recommend from. Train with "
            "`hf-genrec train` or save a GenerativeRecommender; the weights alone load with AutoModelForSeq2SeqLM."
        )
    listed = read_manifest(folder) or []
    wanted = [part for part in PARTS if part.required or part.name in listed]
    missing = [f"{part.path}{'/' if part.is_folder else ''} ({part.description})" for part in wanted]
    missing = [entry for part, entry in zip(wanted, missing) if not part.exists_in(folder)]
    if not _has_weights(folder):
        missing.append("model.safetensors (the model's weights)")
    if missing:
        raise FileNotFoundError(
            f"{folder} is not a complete hf_genrec bundle: missing {', '.join(missing)}. If it was downloaded, "
            "download it again; else save it again with GenerativeRecommender.save_pretrained() or "
            "GenRecTrainer.save_model()."
        )
