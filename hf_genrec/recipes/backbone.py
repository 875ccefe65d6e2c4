"""The run's model by its backbone: the T5 (``backbone: t5``, the default) or a decoder-only causal LM (``--model
decoder``, or ``backbone`` set to a model type such as ``llama``, or to a pretrained checkpoint), and the training
rows each one reads."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
from transformers import PreTrainedModel
from transformers.models.auto.configuration_auto import CONFIG_MAPPING

from ..models.causal_lm import build_causal_lm
from ..models.dropout import add_embedding_dropout
from ..models.t5 import build_t5_model
from ..tokenization import ItemTokenizer
from ..training.arguments import GenRecTrainingArguments
from ..training.examples import tokenize_causal_sequences, tokenize_examples, tokenize_sequences
from .arguments import DataArguments, ModelArguments

#: where long runs write their training rows (`rows_on_disk_above`); the run removes it once the bundle is saved
TRAIN_ROWS_DIR = "_train_rows"

logger = logging.getLogger(__name__)

#: the backbone that is the T5 (GenRecT5); any other value is a decoder-only causal LM
T5_BACKBONE = "t5"
#: options only the T5 has: a decoder-only backbone reads its history causally by itself, one position per token
T5_ONLY_OPTIONS = ("causal_encoder", "item_positions", "recency_embeddings", "start_from_last_state")


def is_decoder_backbone(model_args: ModelArguments) -> bool:
    """Whether ``model_args`` build a decoder-only causal LM rather than the T5."""
    return model_args.backbone != T5_BACKBONE


def pretrained_backbone(model_args: ModelArguments) -> str | None:
    """The path or Hub id of the pretrained causal LM ``model_args.backbone`` names (`None`: the T5, or a model
    type built from scratch). Its own tokenizer is then the base the item tokens are added to, unless
    ``base_tokenizer`` names another."""
    if not is_decoder_backbone(model_args) or model_args.backbone in CONFIG_MAPPING:
        return None
    return model_args.backbone


def check_backbone(model_args: ModelArguments) -> None:
    """Fail before any data is read when a decoder-only backbone is asked for with options only the T5 has."""
    if not is_decoder_backbone(model_args):
        return
    on = [name for name in T5_ONLY_OPTIONS if getattr(model_args, name)]
    if on:
        raise ValueError(
            f"backbone={model_args.backbone!r} is a decoder-only causal LM, but {', '.join(on)} "
            f"{'is' if len(on) == 1 else 'are'} on, which only the T5 has (the dataset recipes turn them on). Train "
            f"with --model decoder, whose overlay turns them off, or pass "
            + " ".join(f"--{name} false" for name in on)
            + "."
        )


def build_backbone(item_tokenizer: ItemTokenizer, model_args: ModelArguments, seed: int) -> PreTrainedModel:
    """The freshly initialised model of ``model_args`` (or the pretrained causal LM it names, its embeddings resized
    to the item tokens): `build_t5_model` for the T5, `build_causal_lm` for a decoder-only backbone, which reads
    ``d_model``, ``num_layers``, ``num_heads``, ``d_ff`` and ``dropout_rate`` under its architecture's own names.
    ``embedding_dropout`` adds dropout on either's input embeddings (`add_embedding_dropout`)."""
    if not is_decoder_backbone(model_args):
        model_config = {
            k: v for k, v in vars(model_args).items() if k not in ("base_tokenizer", "backbone", "embedding_dropout")
        }
        model = build_t5_model(item_tokenizer, seed=seed, **model_config)
    else:
        check_backbone(model_args)
        model = build_causal_lm(
            item_tokenizer,
            model_args.backbone,
            seed=seed,
            d_model=model_args.d_model,
            num_layers=model_args.num_layers,
            num_heads=model_args.num_heads,
            d_ff=model_args.d_ff,
            dropout=model_args.dropout_rate,
        )
    if model_args.embedding_dropout:
        add_embedding_dropout(model, model_args.embedding_dropout)
    return model


def training_rows(
    train_sequences: list[list[str]],
    splits: dict,
    item_tokenizer: ItemTokenizer,
    data_args: DataArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
) -> datasets.Dataset:
    """The rows the model trains on: for a decoder-only backbone one causal row per user window (every next item of
    the window trained in one pass, `tokenize_causal_sequences`), for the causal-encoder T5 one packed row per
    window (`tokenize_sequences`), else one row per history prefix of the train split (TIGER's). Above
    ``data_args.rows_on_disk_above`` interactions the windowed rows are written to an Arrow file in the output dir
    in chunks, and memory-mapped."""
    if is_decoder_backbone(model_args) or model_args.causal_encoder:
        tokenize = tokenize_causal_sequences if is_decoder_backbone(model_args) else tokenize_sequences
        arrow_path = None
        if rows_on_disk(train_sequences, data_args):
            arrow_path = Path(training_args.output_dir) / TRAIN_ROWS_DIR / f"rows-{training_args.process_index}.arrow"
            logger.info("Training rows go to %s, memory-mapped (rows_on_disk_above).", arrow_path)
        return tokenize(
            train_sequences,
            item_tokenizer,
            data_args.max_history,
            max_targets_per_user=data_args.max_train_targets_per_user,
            arrow_path=arrow_path,
        )
    return tokenize_examples(splits["train"], item_tokenizer, data_args.max_history)


def rows_on_disk(train_sequences: list[list[str]], data_args: DataArguments) -> bool:
    """Whether the training rows go to an Arrow file (``data_args.rows_on_disk_above``)."""
    threshold = data_args.rows_on_disk_above
    return threshold == 0 or (threshold > 0 and sum(map(len, train_sequences)) > threshold)


def count_train_targets(rows: datasets.Dataset, item_tokenizer: ItemTokenizer, model_args: ModelArguments) -> int:
    """The next-item targets ``rows`` (`training_rows`) train: one per row of prefixes, every target of a window in
    packed and causal rows (a causal row labels each target's codes, and the EOS of a variable-length spelling)."""
    if is_decoder_backbone(model_args):
        if item_tokenizer.is_variable_length:
            return sum(row.count(item_tokenizer.eos_token_id) for row in rows["labels"])
        codes = item_tokenizer.id_length - 1  # the fixed-length spelling's EOS is forced, never labelled
        return sum(len(row) - row.count(-100) for row in rows["labels"]) // codes
    if model_args.causal_encoder:
        return sum(len(ends) for ends in rows["target_ends"])
    return len(rows)
