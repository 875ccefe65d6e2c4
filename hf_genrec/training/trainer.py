"""`GenRecTrainer`: a `Seq2SeqTrainer` whose evaluation ranks items by constrained beam search.

The trainer overrides only what it must; the pieces it plugs in live beside it: the arguments
(`hf_genrec.training.arguments`), the trie-constrained loss (`losses`), the evaluation order (`sampler`), the weight
average (`averaging`), the training clock and model-card callbacks (`callbacks`), the time-budget schedule
(`schedules`) and checkpoints (`checkpoints`). Saving goes through `hf_genrec.bundle.io.save_bundle`.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from transformers import LogitsProcessorList, Seq2SeqTrainer
from transformers.trainer_callback import PrinterCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, HubStrategy, SaveStrategy

# Trainer (transformers 5.25) waits on `self.push_in_progress` (is_done, wait_until_done, cancel) when it ends or
# pushes again, so `_push_from_checkpoint` must hand it this class; transformers exports it from nowhere public.
from transformers.utils.hub import PushInProgress

from ..bundle.config import GenRecConfig
from ..bundle.io import BundleContents, save_bundle, write_card
from ..bundle.model_card import GenRecCardData
from ..decoding.fusion import check_scorer_items, fusion_processors
from ..decoding.generate import build_trie_index, generate_items, item_spellings
from ..decoding.trie import TrieIndex
from ..evaluation.metrics import make_compute_metrics
from ..models.causal_lm import causal_rows, is_decoder_only
from ..models.dropout import use_bits_dropout
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel
from ..semantic_ids import ItemIDScheme
from ..tokenization import ItemTokenizer
from ..utils.progress import are_progress_bars_disabled
from ..utils.saving import staged_directory
from .arguments import GenRecTrainingArguments, non_default_arguments
from .averaging import WeightAverage, WeightAverageCallback, resume_weight_average
from .callbacks import ModelCardCallback, TimeBudgetCallback, read_spent_seconds
from .checkpoints import push_checkpoint, replace_pickled_arguments, resolve_resume_checkpoint
from .collator import SCORER_HISTORY, GenRecCollator
from .losses import ConstrainedLoss
from .sampler import eval_sampler
from .schedules import BUDGET_SCHEDULES, time_budget_schedule


class GenRecTrainer(Seq2SeqTrainer):
    """Trains history → next-item seq2seq and evaluates by ranking the whole catalogue.

    Evaluation runs trie-constrained beam search; its predictions are ranked item indices ``[n, max(K)]`` and its
    labels the target item indices, so ``compute_metrics`` receives ranking inputs (the default computes Recall@K,
    NDCG@K, MRR and the invalid-ID rate). Saving writes the item map and ``genrec_config.json`` beside the model.

    Args:
        item_tokenizer (`ItemTokenizer`): the catalogue and its spellings.
        genrec_config (`GenRecConfig`, *optional*): written into every saved folder.
        quantizer (`ItemIDScheme`, *optional*): the fitted ID scheme, saved as ``quantizer/`` in every bundle so new
            items can be encoded later.
        card_data (`GenRecCardData`, *optional*): model-card facts; test metrics and the log are added as they come.
        transitions (`ItemTransitions`, *optional*): successor counts of the training sequences, fused into the
            ranking with ``args.transition_weight`` and saved in every bundle (``transitions.safetensors``).
        scorer (`SASRecModel`, *optional*): a dense next-item scorer over the same item rows, fused into the ranking
            with ``args.scorer_weight`` (the hybrid, `hf_genrec.decoding.fusion`) and saved in every bundle (``scorer/``).
        Other arguments are those of `Seq2SeqTrainer`. Every saved folder (checkpoints included) is a complete
        bundle with a model card; ``push_to_hub=True`` pushes it, never Trainer's pickled states.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        args: GenRecTrainingArguments | None = None,
        item_tokenizer: ItemTokenizer | None = None,
        data_collator: Callable | None = None,
        compute_metrics: Callable | None = None,
        genrec_config: GenRecConfig | None = None,
        quantizer: ItemIDScheme | None = None,
        card_data: GenRecCardData | None = None,
        transitions: ItemTransitions | None = None,
        scorer: SASRecModel | None = None,
        **kwargs: Any,
    ):
        if item_tokenizer is None:
            raise ValueError("GenRecTrainer needs `item_tokenizer=` (an ItemTokenizer) to decode and rank items.")
        if args is None:
            raise ValueError("GenRecTrainer needs `args=GenRecTrainingArguments(output_dir=...)`.")
        if (
            getattr(args, "transition_weight", 0.0) or getattr(args, "transition_weights", None)
        ) and transitions is None:
            raise ValueError(
                "transition_weight > 0 fuses the successor prior into the ranking: pass `transitions=` (an "
                "ItemTransitions fitted on the training part of the sequences, as run_experiment does)."
            )
        if (getattr(args, "scorer_weight", 0.0) or getattr(args, "scorer_weights", None)) and scorer is None:
            raise ValueError(
                "scorer_weight > 0 fuses a dense scorer into the ranking: pass `scorer=` (a SASRecModel trained on the "
                "item map's rows, e.g. by hf_genrec.training.sasrec.train_sasrec), or set scorer_weight=0."
            )
        if scorer is not None:
            check_scorer_items(scorer, item_tokenizer.num_items)
        self.item_tokenizer = item_tokenizer
        self.transitions = transitions
        self.scorer = scorer
        self.genrec_config = genrec_config or GenRecConfig(num_beams=getattr(args, "num_beams", 20))
        self.quantizer = quantizer
        self.card_data = card_data or GenRecCardData(dataset=self.genrec_config.dataset)
        if data_collator is None:
            data_collator = GenRecCollator(pad_token_id=item_tokenizer.pad_token_id)
        if compute_metrics is None:
            compute_metrics = make_compute_metrics(getattr(args, "eval_ks", (5, 10)))
        kwargs.setdefault("processing_class", item_tokenizer.tokenizer)
        train_dataset = kwargs.get("train_dataset")
        packed = train_dataset is not None and "target_ends" in getattr(train_dataset, "column_names", ())
        if model is not None:
            _check_rows_fit(model, train_dataset, packed, args)
        if packed and model is not None and "target_ends" not in inspect.signature(model.forward).parameters:
            raise ValueError(
                f"The training rows are packed (a `target_ends` column, from tokenize_sequences), which needs a model "
                f"with a causal encoder, but {type(model).__name__} reads histories bidirectionally. Build the model "
                "with build_t5_model(..., causal_encoder=True), or train on tokenize_examples rows."
            )
        if model is not None:
            # a plain T5 too: on a CPU, drawing torch's dropout masks was a fifth of the recipe's training step
            use_bits_dropout(model)
        quiet = are_progress_bars_disabled()
        if quiet:  # hf_genrec's one switch (``--quiet``) silences Trainer's bars too
            args.disable_tqdm = True
        super().__init__(
            model=model, args=args, data_collator=data_collator, compute_metrics=compute_metrics, **kwargs
        )
        # T5's loss is a mean over the batch's tokens that ignores `num_items_in_batch`, although its forward takes
        # **kwargs; Trainer (transformers 5.x) reads that as "sums over num_items_in_batch" and multiplies the loss by
        # the number of processes (and skips dividing by gradient-accumulation steps): under `accelerate launch` with
        # 2 processes the training and evaluation losses came out doubled. Treat the loss as the mean it is.
        self.model_accepts_loss_kwargs = False
        if quiet:  # without bars Trainer prints every log dict instead; quiet means neither
            self.remove_callback(PrinterCallback)
        self._trie_index: TrieIndex | None = None
        self.add_callback(ModelCardCallback(self.card_data))
        if getattr(args, "constrained_loss", False) and model is not None:
            # ranking must use the distribution the model was trained on: renormalised over the allowed tokens
            model.generation_config.renormalize_logits = True
        if scorer is not None:
            scorer.to(self.args.device).eval()
        #: the training clock (and budget, with ``max_train_minutes``); it survives resuming from a checkpoint
        self.clock = TimeBudgetCallback(getattr(args, "max_train_minutes", None))
        self.add_callback(self.clock)
        #: the moving average of the weights while `train` runs with ``ema_decay`` (else `None`)
        self.weight_average: WeightAverage | None = None
        if getattr(args, "ema_decay", 0.0):
            self.add_callback(WeightAverageCallback(self))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if "labels" in inputs and is_decoder_only(self.accelerator.unwrap_model(model)):
            inputs = self._causal_inputs(inputs)
        if not getattr(self.args, "constrained_loss", False) or "labels" not in inputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        return self._constrained_loss()(model, inputs, return_outputs)

    def _causal_inputs(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A decoder-only model's batch: history → target rows (evaluation, `tokenize_examples`) become one causal
        row each (`causal_rows`); packed rows (`tokenize_causal_sequences`, labels aligned with the tokens and -100
        on the first item, which nothing precedes) pass as they are."""
        input_ids, labels = inputs["input_ids"], inputs["labels"]
        if labels.shape == input_ids.shape and bool((labels[:, 0] == -100).all()):
            return inputs
        fixed = not self.item_tokenizer.is_variable_length
        rows = causal_rows(
            input_ids,
            inputs.get("attention_mask"),
            labels,
            self.item_tokenizer.pad_token_id,
            eos_token_id=self.item_tokenizer.eos_token_id if fixed else None,
        )
        return {**inputs, **rows}

    def _constrained_loss(self) -> ConstrainedLoss:
        """The trie-normalised loss with the arguments' settings as they are now (it holds only references)."""
        args = self.args
        return ConstrainedLoss(
            self.item_tokenizer,
            self.trie_index,
            self._spellings,
            # the trie nodes along each item are walked once, and only for the prior
            item_paths=self._item_paths if args.transition_weight_in_loss else None,
            exclude_history=args.exclude_history_in_loss,
            transitions=self.transitions,
            transition_weight=args.transition_weight_in_loss,
            transition_recent_items=args.transition_recent_items,
            transition_smoothing=args.transition_smoothing,
        )

    @functools.cached_property
    def _spellings(self) -> torch.Tensor:
        return torch.from_numpy(item_spellings(self.item_tokenizer))

    @functools.cached_property
    def _item_paths(self) -> torch.Tensor:
        """``[n_items, max_length]`` the trie nodes along every item's spelling, for the fusion processors."""
        return self.trie_index.item_paths(self._spellings, torch.arange(len(self._spellings)))[1]

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        kind = getattr(self.args.lr_scheduler_type, "value", self.args.lr_scheduler_type)
        if (
            self.lr_scheduler is None
            and getattr(self.args, "max_train_minutes", None)
            and getattr(self.args, "anneal_over_budget", False)
            and kind in BUDGET_SCHEDULES
        ):
            self.lr_scheduler = time_budget_schedule(
                optimizer or self.optimizer, self.clock, kind, num_training_steps, self.args.warmup_steps
            )
        return super().create_scheduler(num_training_steps, optimizer)

    def train(self, resume_from_checkpoint: str | bool | None = None, *args: Any, **kwargs: Any):
        """`Trainer.train`; a resumed run also resumes the training clock, so ``max_train_minutes`` counts the
        minutes spent before the checkpoint too."""
        # True: the newest *complete* checkpoint (Trainer would pick the newest folder, complete or not)
        checkpoint = resume_from_checkpoint = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        self.clock.spent_seconds = read_spent_seconds(checkpoint) if isinstance(checkpoint, str) else 0.0
        self.weight_average = None  # a resumed run gets its average back in _load_from_checkpoint
        try:
            output = super().train(resume_from_checkpoint, *args, **kwargs)
            average = self.weight_average
            best_loaded = self.args.load_best_model_at_end and self.state.best_model_checkpoint is not None
            if average is not None and not best_loaded:
                average.copy_to(self.model)  # the best checkpoint already holds averaged weights
        finally:
            # after training the model is the averaged one; evaluate/predict must not swap an average in again
            self.weight_average = None
        return output

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        average = resume_weight_average(self.model, getattr(self.args, "ema_decay", 0.0), resume_from_checkpoint)
        if average is not None:
            self.weight_average = average

    def _issue_warnings_after_load(self, load_result: Any) -> None:
        """Trainer warns of "missing keys" when the best checkpoint is loaded back, because ``save_pretrained`` leaves
        out tied weights (T5's embeddings and output layer share one matrix); those are tied again, not missing."""
        tied = set(getattr(self.model, "all_tied_weights_keys", None) or {})
        if load_result.missing_keys and set(load_result.missing_keys) <= tied and not load_result.unexpected_keys:
            self.model.tie_weights()
            return
        super()._issue_warnings_after_load(load_result)

    def evaluate(self, *args: Any, **kwargs: Any) -> dict[str, float]:
        """`Seq2SeqTrainer.evaluate`; during training with ``ema_decay`` it ranks with the averaged weights."""
        if self.weight_average is None:
            return super().evaluate(*args, **kwargs)
        with self.weight_average.swapped_in(self.model):
            return super().evaluate(*args, **kwargs)

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        if self.weight_average is None:
            return super()._save_checkpoint(model, trial)
        # the checkpoint's model is the average (what validation ranked, what load_best_model_at_end keeps)
        with self.weight_average.swapped_in(self.model):
            super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            self.weight_average.save_training_weights(self.model, folder)

    def evaluation_loop(self, *args: Any, **kwargs: Any):
        # Seq2SeqTrainer.evaluate/predict gather with plain `accelerator.gather` (transformers PR #27025: generated
        # rows there may be num_return_sequences per example), which keeps the padding that even shards add to the
        # last batch: under `accelerate launch` some users were ranked twice. Our predictions are one row of ranked
        # items per user, so `gather_for_metrics` drops that padding and every user counts exactly once.
        self.gather_function = functools.partial(
            self.accelerator.gather_for_metrics, use_gather_object=self.args.eval_use_gather_object
        )
        return super().evaluation_loop(*args, **kwargs)

    def predict(self, *args: Any, **kwargs: Any):
        """`Seq2SeqTrainer.predict`; its rows follow the dataset's rows (one per user)."""
        self._keep_eval_order = True
        try:
            return super().predict(*args, **kwargs)
        finally:
            self._keep_eval_order = False

    def _get_eval_sampler(self, eval_dataset):
        """A fixed evaluation order, sharded across processes: by length for `evaluate`, as given for `predict`
        (`hf_genrec.training.sampler.eval_sampler`)."""
        keep_order = getattr(self, "_keep_eval_order", False)
        return eval_sampler(eval_dataset, self.args.length_column_name, keep_order)

    @property
    def trie_index(self) -> TrieIndex:
        """The vectorised item trie used by evaluation (built once)."""
        if self._trie_index is None:
            self._trie_index = build_trie_index(self.item_tokenizer)
        return self._trie_index

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
        **gen_kwargs,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        inputs = dict(inputs)
        scorer_histories = inputs.pop(SCORER_HISTORY, None)  # not a model input
        if not self.args.predict_with_generate or prediction_loss_only:
            return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)
        loss, _, _ = super().prediction_step(model, inputs, prediction_loss_only=True, ignore_keys=ignore_keys)
        inputs = self._prepare_inputs(inputs)
        k = max(self.args.eval_ks)
        fused = self.args.fusion.fuses
        # decoded once for the exclusion, the prior and the scorer
        histories = self._history_items(inputs["input_ids"]) if self.args.exclude_history or fused else None
        indices, _ = generate_items(
            self.accelerator.unwrap_model(model),
            self.item_tokenizer,
            inputs["input_ids"],
            inputs.get("attention_mask"),
            num_beams=gen_kwargs.get("num_beams") or self.args.num_beams,
            k=k,
            method=self.args.decoding_method,
            index=self.trie_index,
            # with a scorer's longer window (SCORER_HISTORY) none of the history either of them reads
            exclude_items=(scorer_histories or histories) if self.args.exclude_history else None,
            fusion=self._fusion(histories, scorer_histories) if fused else None,
        )
        labels = None
        if "labels" in inputs:
            labels = torch.tensor(self.item_tokenizer.decode_index(inputs["labels"].tolist()), dtype=torch.long)
            labels = labels.to(inputs["input_ids"].device)
        return loss, indices.to(inputs["input_ids"].device), labels

    def _fusion(
        self, histories: list[list[int]], scorer_histories: list[list[int]] | None = None
    ) -> LogitsProcessorList:
        """What ranking fuses into the search for histories given as item rows: the successor prior
        (``transition_weight``), then the dense scorer's candidates (``scorer_weight``), as
        `GenerativeRecommender` does. The scorer reads ``scorer_histories`` when the examples carry them (a
        ``scorer_history`` column, `hf_genrec.add_scorer_history`), else the histories the model reads."""
        return fusion_processors(
            histories,
            self.trie_index,
            self._spellings,
            self._item_paths,
            self.args.fusion,
            transitions=self.transitions,
            scorer=self.scorer,
            scorer_histories=scorer_histories,
        )

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        # eval rows of a hybrid run carry the scorer's longer history; prediction_step takes it off the inputs
        if SCORER_HISTORY not in self._signature_columns:
            self._signature_columns.append(SCORER_HISTORY)

    def _history_items(self, input_ids: torch.Tensor) -> list[list[int]]:
        """The item rows of each encoded history in the batch (what ``exclude_history`` keeps out)."""
        return [self.item_tokenizer.decode_history(row) for row in input_ids.tolist()]

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write the bundle (model, tokenizer, item map, quantiser, config, card) into a hidden folder beside
        ``output_dir`` and move it into place once complete: a crash while saving leaves the previous bundle."""
        target = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:  # a rank that writes nothing (it may still join collective gathers)
            return super()._save(target, state_dict=state_dict)
        with staged_directory(target) as staging:
            self._save_bundle(str(staging), state_dict)

    def _save_bundle(self, output_dir: str, state_dict: dict | None) -> None:
        """The bundle through `hf_genrec.bundle.io.save_bundle`, the model's files written by Trainer's own `_save`
        (sharding, state dicts gathered from several processes)."""

        def save_model(folder: str) -> None:
            super(GenRecTrainer, self)._save(folder, state_dict=state_dict)
            # Trainer pickles its arguments (`training_args.bin`); bundles hold no pickle, so keep them as JSON.
            replace_pickled_arguments(folder, self.args)

        self._update_card_data()
        contents = BundleContents(
            model=None,
            item_tokenizer=self.item_tokenizer,
            config=self.genrec_config,
            quantizer=self.quantizer,
            transitions=self.transitions,
            scorer=self.scorer,
            card_data=self.card_data,
        )
        save_bundle(contents, output_dir, repo_id=self._card_repo_id(), save_model=save_model, staged=False)

    def _update_card_data(self) -> None:
        self.card_data.hyperparameters = non_default_arguments(self.args)
        self.card_data.log_history = list(self.state.log_history)

    def _card_repo_id(self) -> str | None:
        return getattr(self, "hub_model_id", None) or self.args.hub_model_id

    def _write_model_card(self, output_dir: str) -> None:
        self._update_card_data()
        write_card(output_dir, self.item_tokenizer, self.genrec_config, self.card_data, self._card_repo_id())

    def create_model_card(self, *args, **kwargs) -> None:
        """Write hf_genrec's model card (Trainer's generic one knows nothing of items, IDs or ranking metrics)."""
        if self.is_world_process_zero():
            self._write_model_card(self.args.output_dir)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Push the bundle saved in ``checkpoint_folder`` as the repo's main files.

        Trainer's version copies a few weight files and pickles the training arguments into the output folder
        (``training_args.bin``) before pushing; the bundle must hold no pickle, so push the checkpoint's own bundle.
        """
        if not self.is_world_process_zero() or self.args.hub_strategy == HubStrategy.END:
            return
        if not self.args.hub_always_push and self.push_in_progress is not None and not self.push_in_progress.is_done():
            return
        self.callback_handler.on_push_begin(self.args, self.state, self.control)
        if self.args.save_strategy == SaveStrategy.STEPS:
            commit_message = f"Training in progress, step {self.state.global_step}"
        else:
            commit_message = f"Training in progress, epoch {int(self.state.epoch)}"
        job = push_checkpoint(checkpoint_folder, self.hub_model_id, self.args, commit_message)
        if self.push_in_progress is None or self.push_in_progress.is_done():
            self.push_in_progress = PushInProgress([job])
        else:
            self.push_in_progress.jobs.append(job)


def _check_rows_fit(model: nn.Module, train_dataset: Any, packed: bool, args: Any) -> None:
    """Training rows the model cannot train on raise here, before any step runs."""
    if not hasattr(model, "config"):
        return
    sized = hasattr(train_dataset, "__len__") and hasattr(train_dataset, "__getitem__")  # not an IterableDataset
    columns = (getattr(train_dataset, "column_names", None) or ()) if sized else ()
    if is_decoder_only(model):
        if packed:
            raise ValueError(
                f"{type(model).__name__} is a decoder-only model, and the training rows are the causal-encoder T5's "
                "(a `target_ends` column, from tokenize_sequences): build them with tokenize_causal_sequences."
            )
        positions = getattr(model.config, "max_position_embeddings", None)
        if positions and "length" in columns and len(train_dataset) and max(train_dataset["length"]) > positions:
            raise ValueError(
                f"The longest training row has {max(train_dataset['length'])} tokens, but {type(model).__name__} "
                f"reads {positions} positions: lower max_history, or build the model with a larger max_positions."
            )
        if getattr(args, "transition_weight_in_loss", 0.0):
            raise ValueError(
                "transition_weight_in_loss is not implemented for decoder-only models: set it to 0 and fuse the "
                "prior at ranking only (transition_weight), or train a T5 (build_t5_model)."
            )
    elif "labels" in columns and "input_ids" in columns and len(train_dataset) and not packed:
        first = train_dataset[0]["labels"]
        if first and first[0] == -100:  # tokenize_causal_sequences: labels aligned with the tokens
            raise ValueError(
                f"The training rows are a decoder-only model's (tokenize_causal_sequences), but {type(model).__name__} "
                "is an encoder-decoder: train it on tokenize_examples or tokenize_sequences rows, or build a "
                "decoder-only model with build_causal_lm."
            )
