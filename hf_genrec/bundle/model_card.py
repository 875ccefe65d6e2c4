"""Model cards for hf_genrec bundles: Hub metadata (with ``model-index`` metrics) and a readable README.

The card is rendered from the Jinja template shipped in ``hf_genrec/bundle/templates/model_card.md``; its metadata is a
``huggingface_hub.ModelCardData``, so the Hub shows the test metrics in the model's evaluation widget.
`hf_genrec.training.callbacks.ModelCardCallback` collects what the trainer learns along the way (test metrics, the
training log) into a `GenRecCardData`; this module only renders it, so bundles need nothing from training.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import huggingface_hub
import tokenizers
import torch
import transformers
from huggingface_hub import EvalResult, ModelCardData
from jinja2 import Template

from ..tokenization import ItemTokenizer
from ..version import __version__
from .catalog_log import CatalogLog
from .config import GenRecConfig
from .layout import CARD_DATA_NAME

TAGS = ["hf_genrec", "generative-recommendation", "semantic-ids", "recommendation", "t5"]


@dataclass
class GenRecCardData:
    """What goes into a bundle's model card besides the item map and config.

    Args:
        test_metrics: ``{"recall@10": 0.05, ...}`` on the test split (filled while training by
            `hf_genrec.training.callbacks.ModelCardCallback`).
        protocol: one sentence on how the metrics were computed.
        hyperparameters: non-default training arguments (`hf_genrec.training.arguments.non_default_arguments`).
        log_history: ``Trainer.state.log_history``.
        dataset: the dataset name (``amazon-beauty``...).
        baselines: ``{"most_popular": {"recall@10": 0.01, ...}, ...}``, simpler rankers on the same test users
            under the same protocol (``run_experiment`` fills the most popular items, the successor prior alone
            and, in a hybrid, the scorer alone), so a reader sees what the model adds to its parts.
    """

    test_metrics: dict[str, float] = field(default_factory=dict)
    protocol: str = ""
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    log_history: list[dict] = field(default_factory=list)
    dataset: str | None = None
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write ``genrec_card.json``, so a bundle saved again (after ``hf-genrec catalog add``) keeps its card."""
        text = json.dumps(asdict(self), indent=1, default=str) + "\n"
        (Path(save_directory) / CARD_DATA_NAME).write_text(text, encoding="utf-8")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> GenRecCardData:
        path = Path(directory) / CARD_DATA_NAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path} is not valid JSON ({err}); the bundle is damaged. Save it again.") from err
        known = {name: data[name] for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)


def _metrics_table(metrics: dict[str, float]) -> str:
    if not metrics:
        return ""
    names = list(metrics)
    return "\n".join(
        [
            "| " + " | ".join(names) + " |",
            "|" + "---|" * len(names),
            "| " + " | ".join(f"{metrics[n]:.4f}" for n in names) + " |",
        ]
    )


# how the card names the baselines run_experiment records; other names are shown as given
_BASELINE_NAMES = {
    "most_popular": "the most popular items",
    "successor_prior": "the successor prior alone (`transitions.safetensors`), then the most popular",
    "scorer": "the SASRec scorer alone (`scorer/`)",
}


def _baselines_table(baselines: dict[str, dict[str, float]], test_metrics: dict[str, float]) -> str:
    if not baselines:
        return ""
    # the test table's ranking metrics, in its order, where the baselines have them
    names = [n for n in test_metrics if "@" in n and any(n in m for m in baselines.values())]
    if not names:
        names = sorted({n for m in baselines.values() for n in m if "@" in n})
    lines = ["| ranker | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    if test_metrics and all(n in test_metrics for n in names):
        lines.append("| **this bundle** | " + " | ".join(f"**{test_metrics[n]:.4f}**" for n in names) + " |")
    for baseline, metrics in baselines.items():
        cells = " | ".join("" if metrics.get(n) is None else f"{metrics[n]:.4f}" for n in names)
        lines.append(f"| {_BASELINE_NAMES.get(baseline, f'`{baseline}`')} | {cells} |")
    return "\n".join(lines)


def _training_log(log_history: list[dict], max_rows: int = 20) -> str:
    rows = [e for e in log_history if "loss" in e or any(k.startswith("eval_") for k in e)]
    if not rows:
        return ""
    keep = rows[:: max(1, len(rows) // max_rows)]
    if keep[-1] is not rows[-1]:
        keep.append(rows[-1])
    columns = ["epoch", "step", "loss"] + sorted(
        {k for e in keep for k in e if k.startswith("eval_") and ("@" in k or k == "eval_loss")}
    )
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for entry in keep:
        cells = []
        for column in columns:
            value = entry.get(column)
            cells.append("" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _versions() -> dict[str, str]:
    # datasets only for its version: serving a bundle never loads it otherwise (about a second)
    import datasets

    return {
        "hf_genrec": __version__,
        "Transformers": transformers.__version__,
        "PyTorch": torch.__version__,
        "Datasets": datasets.__version__,
        "Tokenizers": tokenizers.__version__,
        "huggingface_hub": huggingface_hub.__version__,
        "Python": platform.python_version(),
    }


def _catalog_note(catalog: CatalogLog | None) -> str:
    if catalog is None or catalog.is_empty():
        return ""
    return (
        f"Since training, {len(catalog.new_items)} items were added to the catalogue and {len(catalog.retired)} "
        "retired (`catalog.json`); the figures below were measured on the catalogue as trained."
    )


def build_model_card(
    item_tokenizer: ItemTokenizer,
    config: GenRecConfig,
    card_data: GenRecCardData | None = None,
    repo_id: str | None = None,
    catalog: CatalogLog | None = None,
) -> str:
    """The README.md of a bundle: YAML metadata (tags, datasets, ``model-index``) and the rendered template. A
    ``catalog`` that changed since training is stated beside the metrics, which were measured before it did."""
    card_data = card_data or GenRecCardData()
    dataset = card_data.dataset or config.dataset
    backbone = config.backbone or "t5"  # bundles without one are T5s
    decoder_only = None if backbone == "t5" else backbone
    # a decoder-only model's tags: its model type (a pretrained checkpoint's path or Hub id makes no tag)
    tags = list(TAGS) if decoder_only is None else [*TAGS[:-1], "decoder-only", *[backbone][: "/" not in backbone]]
    semantic_ids = item_tokenizer.semantic_ids
    name = repo_id.split("/")[-1] if repo_id else f"hf_genrec-{semantic_ids.scheme}-{dataset or 'recommender'}"
    repo_id = repo_id or "path/to/this/folder"
    eval_results = [
        EvalResult(
            task_type="recommendation",
            task_name="Next-item recommendation",
            dataset_type=dataset or "custom",
            dataset_name=dataset or "custom",
            dataset_split="test",
            metric_type=name,
            metric_name=name.replace("recall", "Recall").replace("ndcg", "NDCG").replace("mrr", "MRR"),
            metric_value=round(value, 6),
        )
        for name, value in card_data.test_metrics.items()
        if "@" in name
    ]
    metadata = ModelCardData(
        library_name="hf_genrec",
        tags=tags,
        datasets=[dataset] if dataset else None,
        model_name=name,
        eval_results=eval_results or None,
        pipeline_tag=None,
    )
    example = ", ".join(f'"{item}"' for item in semantic_ids.item_ids[:3])
    architecture = "a T5" if decoder_only is None else f"a decoder-only causal LM (`{config.backbone}`)"
    template = resources.files("hf_genrec.bundle").joinpath("templates/model_card.md").read_text(encoding="utf-8")
    return Template(template, trim_blocks=False).render(
        card_data=metadata.to_yaml(),
        model_name=name,
        repo_id=repo_id,
        architecture=architecture,
        auto_class="AutoModelForSeq2SeqLM" if decoder_only is None else "AutoModelForCausalLM",
        dataset=dataset,
        n_items=semantic_ids.n_items,
        n_levels=item_tokenizer.id_length - 1,
        variable_length=item_tokenizer.is_variable_length,
        id_scheme=semantic_ids.scheme,
        id_summary="```\n" + semantic_ids.summary() + "\n```",
        example_history=f"[{example}]",
        top_k=config.top_k,
        protocol=card_data.protocol or "Test split of the dataset, full ranking by constrained beam search.",
        metrics_table=_metrics_table(card_data.test_metrics),
        baselines_table=_baselines_table(card_data.baselines, card_data.test_metrics),
        hyperparameters=card_data.hyperparameters,
        training_log=_training_log(card_data.log_history),
        versions=_versions(),
        catalog_note=_catalog_note(catalog),
    )
