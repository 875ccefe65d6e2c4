"""Write and read a bundle, part by part, through the one layout of `hf_genrec.bundle.layout`.

`save_bundle` is what `GenRecTrainer` (checkpoints and the final model) and `GenerativeRecommender.save_pretrained`
call; `load_bundle` is what `GenerativeRecommender.from_pretrained` and the pipeline call. Nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, PreTrainedModel

from ..features.content_map import ContentMap
from ..models import causal_t5  # noqa: F401  registers model_type hf_genrec_t5, which bundles may hold
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel
from ..semantic_ids import ItemIDScheme, load_quantizer
from ..tokenization import ItemTokenizer
from ..utils.saving import staged_directory
from ..version import __version__
from .catalog_log import CatalogLog
from .config import GenRecConfig
from .hub import resolve_bundle
from .layout import CARD_NAME, ITEM_TITLES_NAME, PART_BY_NAME, PARTS, bundle_parts, check_bundle, write_manifest
from .model_card import GenRecCardData, build_model_card

logger = logging.getLogger(__name__)

#: written into every bundle (the card is rendered from its facts); not objects of `BundleContents` of their own
_CARD_PARTS = ("card_data", "card")


@dataclass
class BundleContents:
    """The parts of a bundle, in memory. ``model`` may be `None` when a caller writes the weights itself
    (`save_bundle`'s ``save_model``)."""

    model: PreTrainedModel | None
    item_tokenizer: ItemTokenizer
    config: GenRecConfig = field(default_factory=GenRecConfig)
    quantizer: ItemIDScheme | None = None
    transitions: ItemTransitions | None = None
    scorer: SASRecModel | None = None
    catalog: CatalogLog = field(default_factory=CatalogLog)
    content_map: ContentMap | None = None
    item_titles: dict[str, str] | None = None
    card_data: GenRecCardData | None = None

    def present_parts(self) -> list[str]:
        """The names of the parts these contents write (the manifest's list), in the layout's order."""
        return [part.name for part in PARTS if part.required or part.name in _CARD_PARTS or self._holds(part.name)]

    def _holds(self, name: str) -> bool:
        """Whether these contents have the optional part ``name`` (an empty catalogue log is none)."""
        if name == "catalog":
            return not self.catalog.is_empty()
        if name == "item_titles":  # no titles at all (a data set without them) is no part
            return bool(self.item_titles)
        return getattr(self, name, None) is not None


def save_bundle(
    contents: BundleContents,
    save_directory: str | os.PathLike,
    *,
    repo_id: str | None = None,
    save_model: Callable[[str], None] | None = None,
    staged: bool = True,
) -> None:
    """Write ``contents`` as a bundle into ``save_directory``.

    The bundle is written into a hidden sibling folder and moved into place when complete (``staged``), so a crash
    while saving leaves the previous bundle loadable. Optional parts an earlier save left there and these contents
    do not have (a prior, a scorer, a catalogue log) are removed, so the folder never mixes two bundles.

    Args:
        contents (`BundleContents`): what to write.
        save_directory: the bundle's folder (created if needed).
        repo_id (`str`, *optional*): the Hub repo the model card names.
        save_model (`Callable[[str], None]`, *optional*): writes the model's files into the folder it is given, in
            place of ``contents.model.save_pretrained`` (the trainer's own `_save`, which handles sharded and
            distributed weights).
        staged (`bool`, defaults to `True`): write through a staging folder (the trainer stages its own saves).
    """
    if contents.model is None and save_model is None:
        raise ValueError("save_bundle needs contents.model or a save_model function that writes the model's files.")
    if not staged:
        _write_parts(contents, Path(save_directory), repo_id, save_model)
    else:
        with staged_directory(save_directory) as staging:
            _write_parts(contents, staging, repo_id, save_model)
    present = set(contents.present_parts())
    for part in PARTS:  # left by an earlier save into the same folder: the publish keeps entries it does not write
        if part.name not in present and part.exists_in(save_directory):
            target = Path(save_directory) / part.path
            shutil.rmtree(target) if part.is_folder else target.unlink()


def _write_parts(contents: BundleContents, folder: Path, repo_id: str | None, save_model) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if save_model is not None:
        save_model(str(folder))
    else:
        contents.model.save_pretrained(folder)
    contents.item_tokenizer.save_pretrained(folder)
    config = with_backbone(contents.config, folder)
    config.save_pretrained(folder)
    present = contents.present_parts()
    for name in present:
        if not PART_BY_NAME[name].required and name not in _CARD_PARTS:
            _write_part(folder, name, getattr(contents, name))
    card_data = contents.card_data or GenRecCardData(dataset=config.dataset)
    write_card(folder, contents.item_tokenizer, config, card_data, repo_id, contents.catalog)
    write_manifest(folder, present, __version__)


def with_backbone(config: GenRecConfig, folder: str | os.PathLike) -> GenRecConfig:
    """``config`` with its ``backbone`` read from the saved model's ``config.json`` when unset (``"t5"`` for an
    encoder-decoder, else the model type), so a bundle says what its model is whoever built it."""
    if config.backbone is not None or not (Path(folder) / "config.json").is_file():
        return config
    model_config = json.loads((Path(folder) / "config.json").read_text())
    encoder_decoder = model_config.get("is_encoder_decoder", False)
    return dataclasses.replace(config, backbone="t5" if encoder_decoder else model_config.get("model_type"))


def write_card(
    folder: str | os.PathLike,
    item_tokenizer: ItemTokenizer,
    config: GenRecConfig,
    card_data: GenRecCardData,
    repo_id: str | None = None,
    catalog: CatalogLog | None = None,
) -> None:
    """Write the model card (``README.md``) and the facts it is rendered from (``genrec_card.json``) together, so a
    bundle saved again renders the same card."""
    card_data.save_pretrained(folder)
    card = build_model_card(item_tokenizer, config, card_data, repo_id, catalog)
    (Path(folder) / CARD_NAME).write_text(card, encoding="utf-8")


def _write_part(folder: Path, name: str, value) -> None:
    """Write one optional part where the layout puts it."""
    part = PART_BY_NAME[name]
    if name == "catalog":
        value.save(folder)
    elif name == "item_titles":
        save_item_titles(folder, value)
    elif part.is_folder:
        value.save_pretrained(folder / part.path)
    else:  # the part's class names its own file in the folder it is given
        value.save_pretrained(folder)


def save_item_titles(folder: str | os.PathLike, titles: Mapping[str, str]) -> None:
    """Write ``item_titles.json``: ``{item id: title}``, in the order given."""
    payload = {str(item): str(title) for item, title in titles.items()}
    (Path(folder) / ITEM_TITLES_NAME).write_text(json.dumps(payload, indent=0, ensure_ascii=False) + "\n", "utf-8")


def load_item_titles(folder: str | os.PathLike) -> dict[str, str]:
    """Read ``item_titles.json`` (see `save_item_titles`)."""
    path = Path(folder) / ITEM_TITLES_NAME
    try:
        titles = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); the bundle is damaged. Save it again.") from err
    if not isinstance(titles, dict) or not all(isinstance(title, str) for title in titles.values()):
        raise ValueError(f"{path} must hold one JSON object {{item id: title}} with string titles; it is damaged.")
    return titles


def titles_of_items(items) -> dict[str, str]:
    """``{item id: title}`` of the rows of an items table (`InteractionData.items`, or a dict of columns) that have a
    non-empty title: what a recipe saves as the bundle's ``item_titles.json``."""
    if "title" not in getattr(items, "column_names", items):
        return {}
    pairs = zip(items["item_id"], items["title"])
    return {str(item): title.strip() for item, title in pairs if isinstance(title, str) and title.strip()}


def add_part(save_directory: str | os.PathLike, name: str, value) -> None:
    """Write one optional part into a saved bundle and list it in the bundle's manifest: a part made after the
    bundle, such as the content map a run fits from its saved recommender."""
    folder = Path(save_directory)
    check_bundle(folder)
    part = PART_BY_NAME.get(name)
    if part is None or part.required or name in _CARD_PARTS:
        optional = [p.name for p in PARTS if not p.required and p.name not in _CARD_PARTS]
        raise ValueError(f"add_part writes one of the optional parts {optional}, got {name!r}.")
    _write_part(folder, name, value)
    write_manifest(folder, [*bundle_parts(folder), name], __version__)


def load_model(folder: str | os.PathLike) -> PreTrainedModel:
    """The bundle's model, with the Auto class its config calls for (encoder-decoder or decoder-only)."""
    try:
        is_encoder_decoder = AutoConfig.from_pretrained(folder).is_encoder_decoder
        auto = AutoModelForSeq2SeqLM if is_encoder_decoder else AutoModelForCausalLM
        return auto.from_pretrained(folder)
    except Exception as err:  # safetensors raises its own error type for damaged files
        if "safetensor" in type(err).__module__.lower() or "deserializ" in str(err).lower():
            raise ValueError(
                f"{folder}/model.safetensors could not be read ({err}): the file is truncated or damaged. "
                "Download it again (delete it from the Hugging Face cache) or save the recommender again."
            ) from err
        raise


def load_bundle(
    path_or_repo_id: str | os.PathLike,
    *,
    model: PreTrainedModel | None = None,
    device: str | torch.device | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> BundleContents:
    """Read every part of a bundle from a local folder or a Hub repo id.

    Args:
        path_or_repo_id: a folder written by `save_bundle` (`hf-genrec train`, `save_pretrained`), or ``"user/repo"``.
        model (`PreTrainedModel`, *optional*): the bundle's model, already loaded (the pipeline loads it itself).
        device: where to put the model and the scorer (default: where they load, the CPU).
        revision, token, cache_dir, local_files_only: as for ``huggingface_hub.snapshot_download``.
    """
    folder = resolve_bundle(
        path_or_repo_id, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only
    )
    check_bundle(folder)
    parts = set(bundle_parts(folder))
    config = GenRecConfig.from_pretrained(folder)
    item_tokenizer = ItemTokenizer.from_pretrained(folder)
    model = model if model is not None else load_model(folder)
    if model.get_input_embeddings().num_embeddings < len(item_tokenizer):
        raise ValueError(
            f"The model in {path_or_repo_id} has {model.get_input_embeddings().num_embeddings} token embeddings but "
            f"the tokenizer has {len(item_tokenizer)} tokens: the model and the item map come from different runs."
        )
    contents = BundleContents(
        model=model,
        item_tokenizer=item_tokenizer,
        config=config,
        quantizer=load_quantizer(folder / PART_BY_NAME["quantizer"].path) if "quantizer" in parts else None,
        transitions=ItemTransitions.from_pretrained(folder) if "transitions" in parts else None,
        scorer=SASRecModel.from_pretrained(folder / PART_BY_NAME["scorer"].path) if "scorer" in parts else None,
        catalog=CatalogLog.load(folder),
        content_map=ContentMap.from_pretrained(folder) if "content_map" in parts else None,
        item_titles=load_item_titles(folder) if "item_titles" in parts else None,
        card_data=GenRecCardData.from_pretrained(folder) if "card_data" in parts else None,
    )
    if device is not None:
        contents.model.to(device)
        if contents.scorer is not None:
            contents.scorer.to(device)
    return contents
