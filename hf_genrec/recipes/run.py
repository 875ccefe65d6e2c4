"""One end-to-end run: data → features → semantic IDs → tokenizer → training → test evaluation → checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from transformers import PreTrainedModel
from transformers.trainer_utils import get_last_checkpoint

from ..bundle.config import GenRecConfig
from ..data import leave_one_out, load_interactions
from ..evaluation.baselines import MostPopular, training_part
from ..evaluation.metrics import make_compute_metrics, ranking_metrics, recall_curve
from ..features.item_features import DEFAULT_TEXT_MODEL, METHODS, build_item_features
from ..models.prior import ItemTransitions
from ..models.sasrec import rank_histories
from ..models.t5 import build_t5_model
from ..semantic_ids import (
    RQVAE,
    AtomicIDs,
    HierarchicalKMeans,
    ItemIDScheme,
    RandomIDs,
    RQKMeans,
    SemanticIDs,
    TitleIDs,
    load_quantizer,
)
from ..tokenization import ItemTokenizer, minimal_t5_tokenizer
from ..training.collator import SCORER_HISTORY
from ..training.examples import add_scorer_history, tokenize_examples, tokenize_sequences
from ..training.sasrec import train_sasrec_for_features
from ..training.trainer import GenRecTrainer, GenRecTrainingArguments
from ..utils.saving import atomic_write_text, check_checkpoint, last_complete_checkpoint
from ..version import __version__
from .scorer import (
    SCORER_TRAINING_DIR,
    ScorerArguments,
    fit_scorer,
    scorer_minutes,
    scorer_training_started,
    scorer_window_and_dropout,
)

logger = logging.getLogger(__name__)

PROTOCOL = (
    "leave-one-out per user (last item = test, second-to-last = validation); training on {train_prefixes}; "
    "history capped at {max_history}; full ranking over all {n_items} items by trie-constrained beam search "
    "({num_beams} beams){excluded}{fused}; metrics averaged over {test_users}"
)
ID_SCHEMES = ("rqvae", "rqkmeans", "hierarchical", "title", "random", "atomic")
#: schemes that read item features (the others read titles, or nothing)
FEATURE_SCHEMES = ("rqvae", "rqkmeans", "hierarchical")
#: item_features values that name a method of `build_item_features` (anything else is a path to an array)
FEATURE_METHODS = tuple(method for method in METHODS if method != "array")


@dataclass
class DataArguments:
    """Which data to train on and how to split it."""

    dataset: str = field(default="ml-100k", metadata={"help": "ml-100k, ml-1m, amazon-beauty or amazon-<category>."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Data root holding <dataset>/ folders (default: $HF_GENREC_DATA_DIR or the cache)."},
    )
    max_history: int = field(default=20, metadata={"help": "Items of history the model reads (TIGER: 20)."})
    min_count: int | None = field(default=None, metadata={"help": "Optional k-core filter on users and items."})
    max_train_targets_per_user: int | None = field(
        default=None,
        metadata={"help": "Train on each user's most recent N next-item targets only (default: all, as TIGER)."},
    )
    max_eval_users: int | None = field(
        default=None,
        metadata={"help": "Validate during training on this many random users."},
    )
    max_test_users: int | None = field(
        default=None,
        metadata={"help": "Test on this many random users (default: all; the protocol string says which)."},
    )


@dataclass
class ItemIDArguments:
    """How items get their IDs (see ``hf_genrec.semantic_ids``)."""

    id_scheme: str = field(
        default="rqkmeans",
        metadata={
            "help": "rqvae (TIGER), rqkmeans (residual k-means), hierarchical (recursive k-means), title (title "
            "tokens, variable length), random (random codes) or atomic (one token per item).",
            "choices": list(ID_SCHEMES),
        },
    )
    item_features: str = field(
        default="auto",
        metadata={
            "help": "auto (text, else attributes), text, attributes, collaborative (vectors learned from the training "
            "interactions), content+collaborative (both side by side), sasrec (the item embeddings of a SASRec "
            "trained on the training interactions first), or a path to a .npy / .safetensors array [n_items, d]."
        },
    )
    collaborative_dim: int = field(default=64, metadata={"help": "collaborative and sasrec features: vector size."})
    sasrec_epochs: int = field(
        default=15, metadata={"help": "sasrec features: epochs the SASRec trains before its embeddings are read."}
    )
    collaborative_window: int = field(
        default=3, metadata={"help": "collaborative features: items this many steps apart count as co-occurring."}
    )
    text_model: str = field(default=DEFAULT_TEXT_MODEL, metadata={"help": "sentence-transformers model for text."})
    content_map: bool = field(
        default=False,
        metadata={
            "help": "Also save a content map in the bundle (hf_genrec.features.content_map): items with text (or attributes) "
            "but no interactions can then be added from those alone (`hf-genrec catalog add` with item fields). "
            "Embeds every item's text with text_model after training (their attribute tokens when most items have "
            "no title); needs item text or attributes and a feature-based scheme."
        },
    )
    n_levels: int = field(default=3, metadata={"help": "Code levels before the collision level."})
    codebook_size: int = field(default=256, metadata={"help": "Codes per level (hierarchical: clusters per node)."})
    id_seed: int = field(default=0, metadata={"help": "Seed of the ID scheme."})
    balanced: bool = field(default=False, metadata={"help": "rqkmeans: equal-size clusters at every level."})
    pca_dim: int | None = field(
        default=32,
        metadata={"help": "rqkmeans/hierarchical: project features on this many principal axes first (0: none)."},
    )
    rqvae_epochs: int = field(default=100, metadata={"help": "rqvae: training epochs of the autoencoder."})
    max_title_tokens: int = field(default=16, metadata={"help": "title: pieces of the title kept per ID."})
    title_vocab_size: int = field(
        default=8000, metadata={"help": "title: pieces learnt on the titles when no --base_tokenizer is given."}
    )
    missing_titles: str = field(
        default="error",
        metadata={"help": "title: 'error' on items without a title, or 'item_id' to spell them by id.",
                  "choices": ["error", "item_id"]},
    )  # fmt: skip


def build_id_scheme(id_args: ItemIDArguments, base_tokenizer=None) -> ItemIDScheme:
    """The (unfitted) ID scheme ``id_args`` describes."""
    name = id_args.id_scheme
    size, levels, seed = id_args.codebook_size, id_args.n_levels, id_args.id_seed
    pca_dim = id_args.pca_dim or None
    if name == "rqvae":
        return RQVAE(n_levels=levels, codebook_size=size, seed=seed, epochs=id_args.rqvae_epochs)
    if name == "rqkmeans":
        return RQKMeans(n_levels=levels, codebook_size=size, seed=seed, balanced=id_args.balanced, pca_dim=pca_dim)
    if name == "hierarchical":
        return HierarchicalKMeans(n_levels=levels, codebook_size=size, seed=seed, pca_dim=pca_dim)
    if name == "title":
        return TitleIDs(
            tokenizer=base_tokenizer,
            max_tokens=id_args.max_title_tokens,
            vocab_size=id_args.title_vocab_size,
            missing_titles=id_args.missing_titles,
        )
    if name == "random":
        return RandomIDs(n_levels=levels, codebook_size=size, seed=seed)
    if name == "atomic":
        return AtomicIDs()
    raise ValueError(f"Unknown id_scheme {name!r}; choose one of {', '.join(ID_SCHEMES)}.")


def fit_item_ids(
    items, id_args: ItemIDArguments, base_tokenizer=None, sequences=None
) -> tuple[ItemIDScheme, SemanticIDs, dict[str, float]]:
    """Item features (when the scheme reads them) → fitted scheme → semantic IDs, with the seconds each took.

    ``sequences`` (each user's training items, no validation or test items) feed the collaborative features."""
    timings = {}
    start = time.perf_counter()
    features = None
    if id_args.id_scheme == "title":
        features = items["title"][:]
    elif id_args.id_scheme in FEATURE_SCHEMES:
        if id_args.item_features in FEATURE_METHODS:
            sasrec_model = None
            if id_args.item_features == "sasrec" and sequences is not None:
                # features/ trains nothing: the SASRec whose item embeddings become the features trains here
                sequences = list(sequences)
                sasrec_model = train_sasrec_for_features(
                    sequences,
                    [str(item) for item in items["item_id"][:]],
                    dim=id_args.collaborative_dim,
                    epochs=id_args.sasrec_epochs,
                )
            features = build_item_features(
                items,
                method=id_args.item_features,
                model_name_or_path=id_args.text_model,
                sequences=sequences,
                collaborative_dim=id_args.collaborative_dim,
                collaborative_window=id_args.collaborative_window,
                sasrec_model=sasrec_model,
            )
        else:
            array = load_feature_array(id_args.item_features)
            features = build_item_features(items, method="array", features=array)
    timings["features_s"] = time.perf_counter() - start
    start = time.perf_counter()
    scheme = build_id_scheme(id_args, base_tokenizer)
    semantic_ids = scheme.fit(features, items["item_id"][:])
    timings["semantic_ids_s"] = time.perf_counter() - start
    return scheme, semantic_ids, timings


@dataclass
class ModelArguments:
    """Size of the T5 trained from scratch (defaults: TIGER's)."""

    base_tokenizer: str | None = field(
        default=None, metadata={"help": "A T5 tokenizer to extend (id or path); default: a minimal one built offline."}
    )
    d_model: int = 128
    d_ff: int = 1024
    d_kv: int = 64
    num_heads: int = 6
    num_layers: int = 4
    num_decoder_layers: int = 4
    dropout_rate: float = 0.1
    causal_encoder: bool = field(
        default=False,
        metadata={
            "help": "Read histories causally and train every next-item target of a user in one encoder pass "
            "(GenRecT5ForConditionalGeneration); False trains one history prefix per row, as TIGER."
        },
    )
    item_positions: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: one encoder position per history item (the sum of its ID tokens' "
            "embeddings) instead of one per token."
        },
    )
    item_embedding_buckets: int = field(
        default=0,
        metadata={
            "help": "With item_positions: add a learned embedding of each history item's whole ID, hashed into this "
            "many buckets (0: off). Items unseen in training add nothing (the buckets start at zero)."
        },
    )
    recency_embeddings: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: add to each encoder state a learned embedding of its distance from the end "
            "of the history, so the decoder can tell recent items from old ones."
        },
    )
    start_from_last_state: bool = field(
        default=False,
        metadata={
            "help": "With causal_encoder: the decoder's start token also gets the encoder state of the most recent "
            "history item (the causal encoder's summary of the history)."
        },
    )


def load_feature_array(path: str) -> np.ndarray:
    """A user's item features from ``.npy`` (no pickle) or ``.safetensors`` (first tensor)."""
    if path.endswith(".npy"):
        return np.load(path, allow_pickle=False)
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        tensors = load_file(path)
        if len(tensors) != 1:
            raise ValueError(f"{path} holds {len(tensors)} tensors ({sorted(tensors)}); save exactly one.")
        return next(iter(tensors.values()))
    raise ValueError(f"Item features file {path!r} must end in .npy or .safetensors (pickle is not accepted).")


def build_model_and_config(
    item_tokenizer: ItemTokenizer,
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
) -> tuple[PreTrainedModel, GenRecConfig]:
    """The freshly initialised T5 of ``model_args`` and the bundle's `GenRecConfig`, as `run_experiment` trains them."""
    model_config = {k: v for k, v in asdict(model_args).items() if k != "base_tokenizer"}
    model = build_t5_model(item_tokenizer, seed=training_args.seed, **model_config)
    model.generation_config.num_beams = training_args.num_beams
    genrec_config = GenRecConfig(
        id_scheme=id_args.id_scheme,
        num_beams=training_args.num_beams,
        top_k=max(training_args.eval_ks),
        max_history=data_args.max_history,
        dataset=data_args.dataset,
        fusion=training_args.fusion,
    )
    return model, genrec_config


def warn_if_items_repeat(sequences: list[list[str]]) -> None:
    """Warn when users meet an item again: ``exclude_history`` can never recommend such a next item."""
    repeats = sum(len(sequence) - len(set(sequence)) for sequence in sequences)
    if repeats:
        total = sum(len(sequence) for sequence in sequences)
        logger.warning(
            "exclude_history is on, but %d of %d interactions (%.1f%%) repeat an item the user met before: those "
            "next items can never be recommended. Turn exclude_history off for data with repeat consumption.",
            repeats,
            total,
            100 * repeats / max(total, 1),
        )


def run_experiment(
    data_args: DataArguments,
    id_args: ItemIDArguments,
    model_args: ModelArguments,
    training_args: GenRecTrainingArguments,
    resume_from_checkpoint: str | bool | None = None,
    scorer_args: ScorerArguments | None = None,
) -> dict:
    """Train and evaluate a generative recommender; write the checkpoint and ``results.json`` to the output dir.

    With ``scorer_args.scorer`` a dense scorer (SASRec) is trained first on the same training sequences and fused
    into the ranking (`hf_genrec.recipes.scorer`); its minutes come off ``max_train_minutes``.

    ``resume_from_checkpoint`` (a checkpoint folder, or `True` for the last one in the output dir) continues a
    stopped run: the item IDs and tokenizer are read back from the checkpoint (not fitted again), and the training
    clock continues, so ``max_train_minutes`` is the budget of the whole run.
    """
    output_dir = Path(training_args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    data = load_interactions(data_args.dataset, data_args.data_dir, min_count=data_args.min_count)
    splits = leave_one_out(
        data, max_history=data_args.max_history, max_train_targets_per_user=data_args.max_train_targets_per_user
    )
    if data_args.max_eval_users and data_args.max_eval_users < len(splits["validation"]):
        # one random sample of validation users, for the model's checkpoints, its scorer and the fusion grid
        splits["validation"] = (
            splits["validation"].shuffle(seed=training_args.seed).select(range(data_args.max_eval_users))
        )
    timings["data_s"] = time.perf_counter() - start
    logger.info("Loaded %s", data.describe())
    # each user's items without the validation and test ones: IDs, training rows, transitions and baselines
    train_sequences = training_part(data.sequences["item_ids"][:])
    if id_args.content_map:
        check_content_map_possible(id_args, data.items)
    if training_args.exclude_history:
        warn_if_items_repeat(data.sequences["item_ids"][:])

    checkpoint = resume_from_checkpoint
    scorer_args = scorer_args or ScorerArguments()
    # stopped before the model's first checkpoint: the scorer's training goes on, the rest starts again
    resume_scorer = checkpoint is True and scorer_args.scorer is not None and scorer_training_started(output_dir)
    if checkpoint is True:
        checkpoint = last_complete_checkpoint(output_dir)  # skips a checkpoint left half-written by a crash
        if checkpoint is None and not resume_scorer:
            raise ValueError(
                f"resume_from_checkpoint=True, but {output_dir} holds no complete checkpoint-* folder"
                + (
                    " (see the warnings above)."
                    if Path(output_dir).is_dir() and get_last_checkpoint(str(output_dir))
                    else "."
                )
            )
    if checkpoint:
        check_checkpoint(checkpoint)
        # the model was trained on these IDs: read them back rather than fitting again
        item_tokenizer = ItemTokenizer.from_pretrained(checkpoint)
        semantic_ids = item_tokenizer.semantic_ids
        quantizer = (
            load_quantizer(Path(checkpoint) / "quantizer") if (Path(checkpoint) / "quantizer").is_dir() else None
        )
        logger.info("Resuming from %s", checkpoint)
    else:
        base_tokenizer = None
        if model_args.base_tokenizer:
            from transformers import AutoTokenizer

            base_tokenizer = AutoTokenizer.from_pretrained(model_args.base_tokenizer)
        quantizer, semantic_ids, id_timings = fit_item_ids(
            data.items, id_args, base_tokenizer, sequences=train_sequences
        )
        timings.update(id_timings)
        logger.info("Semantic IDs:\n%s", semantic_ids.summary())
        if isinstance(quantizer, TitleIDs):
            base_tokenizer = quantizer.tokenizer  # title IDs are spelled with this tokenizer's pieces
        item_tokenizer = ItemTokenizer(
            base_tokenizer or minimal_t5_tokenizer(), semantic_ids, history_eos=not model_args.causal_encoder
        )
    scorer_training = output_dir / SCORER_TRAINING_DIR
    if not checkpoint and not resume_scorer and scorer_training.is_dir():
        logger.warning(
            "Starting a new run: removing %s, an earlier run's scorer training (pass resume_from_checkpoint to go on "
            "with that run instead).",
            scorer_training,
        )
        shutil.rmtree(scorer_training, ignore_errors=True)  # every process may try
    train_rows = [item_tokenizer.index_of(s).tolist() for s in train_sequences]
    start = time.perf_counter()
    scorer_validation = None
    # the scorer reads its own window of each user's history (SASRec's 200 items on MovieLens, where the model reads 50)
    user_sequences = (
        dict(zip(data.sequences["user_id"][:], data.sequences["item_ids"][:]))
        if scorer_args.scorer is not None
        else None
    )
    if scorer_args.scorer is not None and not checkpoint:
        window, dropout = scorer_window_and_dropout(scorer_args, train_rows)
        scorer_args = dataclasses.replace(scorer_args, scorer_max_history=window, scorer_dropout=dropout)
        # the users the model is validated on, as item rows
        users = add_scorer_history(splits["validation"], user_sequences, item_tokenizer, window, held_out=2)
        scorer_validation = (
            users[SCORER_HISTORY][:],
            item_tokenizer.index_of(users["target"][:], context="validation targets").tolist(),
        )
    scorer = fit_scorer(
        scorer_args,
        train_rows,
        item_tokenizer.num_items,
        training_args.seed,
        checkpoint or None,
        budget_minutes=training_args.max_train_minutes,
        validation=scorer_validation,
        exclude_history=training_args.exclude_history,
        output_dir=output_dir,
        resume=resume_scorer,
    )
    if scorer is not None:
        timings["scorer_s"] = time.perf_counter() - start
        spent = scorer_minutes(scorer)
        if training_args.max_train_minutes is not None:
            if spent >= training_args.max_train_minutes:
                raise ValueError(
                    f"The scorer trained for {spent:.1f} of the max_train_minutes={training_args.max_train_minutes} "
                    "budget, leaving none for the generative model: lower scorer_budget_share or scorer_max_minutes (or "
                    "raise max_train_minutes)."
                )
            # the budget is the whole run's: the generative model gets what the scorer left
            training_args.max_train_minutes -= spent
    # what validation and test read of each history: the model's window, and the scorer's where that is longer
    read_window = max(data_args.max_history, scorer.config.max_positions) if scorer is not None else None
    examples = {
        name: tokenize_examples(split, item_tokenizer, data_args.max_history)
        for name, split in splits.items()
        if not (name == "train" and model_args.causal_encoder)
    }
    if model_args.causal_encoder:  # one packed row per user window instead of one row per prefix
        examples["train"] = tokenize_sequences(
            train_sequences,
            item_tokenizer,
            data_args.max_history,
            max_targets_per_user=data_args.max_train_targets_per_user,
        )
    validation = examples["validation"]
    if scorer is not None:
        validation = add_scorer_history(validation, user_sequences, item_tokenizer, read_window, held_out=2)

    model, genrec_config = build_model_and_config(item_tokenizer, data_args, id_args, model_args, training_args)
    # successor counts of the training part only, saved in every bundle (ranking fuses them with transition_weight)
    transitions = ItemTransitions.fit(
        train_rows,
        item_tokenizer.num_items,
        window=training_args.transition_window,
        shrinkage=training_args.transition_shrinkage,
    )
    evaluated: dict = {}  # the last evaluation's target ranks, for Recall@K at every K
    trainer = GenRecTrainer(
        model=model,
        args=training_args,
        item_tokenizer=item_tokenizer,
        train_dataset=examples["train"],
        eval_dataset=validation,
        compute_metrics=make_compute_metrics(training_args.eval_ks, record=evaluated),
        genrec_config=genrec_config,
        quantizer=quantizer,
        transitions=transitions,
        scorer=scorer,
    )
    start = time.perf_counter()
    train_output = trainer.train(resume_from_checkpoint=checkpoint or None)
    timings["train_s"] = time.perf_counter() - start

    fusion_grid = (
        pick_fusion_weights(trainer, validation)
        if training_args.transition_weights or training_args.scorer_weights
        else None
    )
    genrec_config.fusion = training_args.fusion  # with the weights the validation grid picked

    test = examples["test"]
    if data_args.max_test_users and data_args.max_test_users < len(test):
        test = test.shuffle(seed=training_args.seed).select(range(data_args.max_test_users))
    if scorer is not None:
        test = add_scorer_history(test, user_sequences, item_tokenizer, read_window, held_out=1)
    start = time.perf_counter()
    evaluated.clear()  # validation ranks are not the test's
    test_metrics = trainer.evaluate(test, metric_key_prefix="test")
    timings["test_eval_s"] = time.perf_counter() - start
    test_ranks = evaluated.pop("ranks", None)  # None when evaluation ranked nothing (predict_with_generate=False)

    ks = training_args.eval_ks
    popular = MostPopular(item_tokenizer.item_to_index).fit(train_sequences)
    test_targets = item_tokenizer.index_of(test["target"][:], context="test targets")
    test_histories = [item_tokenizer.index_of(history).tolist() for history in test["history"][:]]
    # the read histories: the model's window, or the scorer's longer one in a hybrid
    read = test[SCORER_HISTORY][:] if scorer is not None else test_histories
    # the same protocol as the model's: none of the history it reads
    seen = read if training_args.exclude_history else None
    popular_ranking = popular.predict(len(test_targets), max(ks), exclude=seen)
    popular_metrics = ranking_metrics(popular_ranking, test_targets, ks)
    # the fused prior alone (its recent items' successors, then the most popular): what the fusion adds to
    prior_ranking = transitions.predict(
        test_histories,
        max(ks),
        recent=training_args.transition_recent_items,
        fallback=popular.ranking,
        exclude=seen,
    )
    prior_metrics = ranking_metrics(prior_ranking, test_targets, ks)
    baselines = {"most_popular": popular_metrics, "successor_prior": prior_metrics}
    if scorer is not None:  # the hybrid's scorer alone, reading the histories it reads in the hybrid
        baselines["scorer"] = ranking_metrics(
            rank_histories(scorer, read, max(ks), training_args.exclude_history), test_targets, ks
        )

    metric_names = [f"{m}@{k}" for m in ("recall", "ndcg") for k in ks] + [f"mrr@{max(ks)}", "invalid_rate"]
    results = {
        "dataset": data_args.dataset,
        "protocol": PROTOCOL.format(
            train_prefixes=(
                "every prefix of the rest"
                if data_args.max_train_targets_per_user is None
                else f"each user's {data_args.max_train_targets_per_user} most recent prefixes of the rest"
            ),
            max_history=f"{data_args.max_history} items"
            + ("" if scorer is None else f" (the scorer's at {scorer.config.max_positions})"),
            n_items=data.num_items,
            num_beams=training_args.num_beams,
            excluded=", never an item of the history read (exclude_history)" if training_args.exclude_history else "",
            fused=(
                f", with the training sequences' successor prior fused in (transition_weight "
                f"{training_args.transition_weight}, transition_smoothing {training_args.transition_smoothing}, "
                f"transition_window {training_args.transition_window}, transition_recent_items "
                f"{training_args.transition_recent_items}, transition_shrinkage {training_args.transition_shrinkage})"
                + (
                    f", also fused into the training loss (transition_weight_in_loss "
                    f"{training_args.transition_weight_in_loss}), each step's fused scores normalised"
                    if training_args.transition_weight_in_loss
                    else ""
                )
                if training_args.transition_weight
                else ""
            )
            + (
                f", with a SASRec trained on the same sequences fused in (scorer_weight {training_args.scorer_weight}, "
                f"scorer_top_k {training_args.scorer_top_k}, scorer_smoothing {training_args.scorer_smoothing}; trained for "
                f"{scorer_minutes(scorer):.1f} min before the model, reading up to {scorer.config.max_positions} "
                "items of each history)"
                if scorer is not None and training_args.scorer_weight
                else ""
            ),
            test_users=(
                f"all {len(test_targets)} test users"
                if len(test_targets) == len(examples["test"])
                else f"{len(test_targets)} test users sampled at random (seed {training_args.seed}) of "
                f"{len(examples['test'])}"
            ),
        ),
        "test": {name: test_metrics[f"test_{name}"] for name in metric_names},
        "baselines": {
            baseline: {name: metrics[name] for name in metric_names} for baseline, metrics in baselines.items()
        },
        "transition_weight": training_args.transition_weight,
        "transition_weight_in_loss": training_args.transition_weight_in_loss,
        **fusion_records(fusion_grid, training_args),
        "scorer": None
        if scorer is None
        else {"config": scorer.config.to_diff_dict(), "training": scorer.config.training_summary},
        "train_seconds": timings["train_s"],
        "train_minutes": trainer.clock.elapsed_seconds() / 60,  # the whole run's, across resumes
        "validation_curve": [
            {
                "train_minutes": e.get("train_minutes"),
                "epoch": e.get("epoch"),
                "step": e.get("step"),
                **{k[len("eval_") :]: e[k] for k in e if k.startswith("eval_") and "@" in k},
            }
            for e in trainer.state.log_history
            if any(k.startswith("eval_") and "@" in k for k in e)
        ],  # fmt: skip
        "recall_curve": None
        if test_ranks is None
        else {
            "k": list(range(1, max(ks) + 1)),
            f"hf_genrec ({id_args.id_scheme})": [float(np.mean(test_ranks < k)) for k in range(1, max(ks) + 1)],
            "most popular": recall_curve(popular_ranking, test_targets, max(ks)),
        },
        "log_history": trainer.state.log_history,
        "timings": timings,
        "train_steps": train_output.global_step,
        "train_examples": len(examples["train"]),
        "train_targets": (
            sum(len(ends) for ends in examples["train"]["target_ends"])
            if model_args.causal_encoder
            else len(examples["train"])
        ),
        "epochs": train_output.metrics.get("epoch"),
        "num_parameters": model.num_parameters(),
        "data": {"users": data.num_users, "items": data.num_items, "interactions": data.num_interactions},
        "semantic_ids": semantic_ids.diagnostics,
        "id_scheme": id_args.id_scheme,
        "library_version": __version__,
    }
    trainer.card_data.protocol = results["protocol"]
    trainer.card_data.baselines = results["baselines"]
    trainer.save_model(str(output_dir))  # the bundle, with the test metrics and protocol in its model card
    if id_args.content_map and trainer.is_world_process_zero():
        start = time.perf_counter()
        from ..serving.recommender import GenerativeRecommender

        method = content_map_method(data.items)
        logger.info("Content map: embedding the items' %s.", method)
        content_map = GenerativeRecommender.from_pretrained(output_dir).fit_content_map(
            data.items, method=method, text_model=id_args.text_model
        )
        content_map.save_pretrained(output_dir)
        results["content_map"] = content_map.diagnostics
        timings["content_map_s"] = time.perf_counter() - start
    if trainer.is_world_process_zero():  # under `accelerate launch` every process holds the same results
        atomic_write_text(output_dir / "results.json", json.dumps(results, indent=2) + "\n")
        shutil.rmtree(scorer_training, ignore_errors=True)  # the bundle and every checkpoint hold the scorer now
    return results


def content_map_method(items) -> str:
    """How `fit_content_map` embeds these items: ``"text"`` when most have a title (as ``item_features: auto``
    decides), else ``"attributes"`` when the table has attribute, category or brand columns, else ``"text"`` when any
    item has text; raises when the items have neither."""
    from ..features.item_features import _ATTRIBUTE_COLUMNS, TEXT_TITLE_SHARE, _columns, _rows, item_text, titled_share

    if titled_share(items) >= TEXT_TITLE_SHARE:
        return "text"
    if any(name in _columns(items) for name in _ATTRIBUTE_COLUMNS):
        return "attributes"
    if any(item_text(row) for row in _rows(items)):
        return "text"
    raise ValueError(
        "content_map needs item text (titles, brands, categories, ...) or attribute columns "
        f"({', '.join(_ATTRIBUTE_COLUMNS)}); these items have neither."
    )


def check_content_map_possible(id_args: ItemIDArguments, items) -> None:
    """Fail before training, not after it, when ``content_map`` cannot be built for these items and IDs."""
    if id_args.id_scheme not in FEATURE_SCHEMES:
        raise ValueError(
            f"content_map needs an ID scheme that encodes features ({', '.join(FEATURE_SCHEMES)}); "
            f"{id_args.id_scheme!r} does not (title IDs already come from item text)."
        )
    content_map_method(items)


def pick_fusion_weights(trainer: GenRecTrainer, validation) -> dict[tuple[float, float], dict[str, float]]:
    """Rank ``validation`` with every pair of ``trainer.args.transition_weights`` (else ``[transition_weight]``) and
    ``scorer_weights`` (else ``[scorer_weight]``), and set both weights to the pair that is best by
    ``metric_for_best_model`` (ties go to the smaller weights, which lean less on what is fused). Returns every
    pair's validation metrics (``fusion_*`` keys without the prefix)."""
    args = trainer.args
    metric = args.metric_for_best_model or "ndcg@10"
    metric = metric if metric.startswith("fusion_") else f"fusion_{metric}"
    transition_weights = sorted(set(args.transition_weights or [args.transition_weight]))
    scorer_weights = sorted(set(args.scorer_weights or [args.scorer_weight]))
    grid = {}
    for transition_weight in transition_weights:
        for scorer_weight in scorer_weights:
            args.transition_weight, args.scorer_weight = transition_weight, scorer_weight
            grid[transition_weight, scorer_weight] = trainer.evaluate(validation, metric_key_prefix="fusion")
    best = max(grid, key=lambda pair: (grid[pair][metric], -pair[0], -pair[1]))
    args.transition_weight, args.scorer_weight = best
    logger.info("transition_weight %s, scorer_weight %s: validation %s %.4f", *best, metric, grid[best][metric])
    for name, weights, value in (
        ("transition_weight", transition_weights, best[0]),
        ("scorer_weight", scorer_weights, best[1]),
    ):
        if len(weights) > 1 and value > 0 and value == max(weights):
            # a best weight at the edge of the grid says a larger one may rank better still
            logger.warning(
                "%s %s, the largest of %ss %s, ranked validation best (%s %.4f): a larger weight may do better. Add "
                "one (e.g. %s) to %ss and rank again.",
                name,
                value,
                name,
                weights,
                metric,
                grid[best][metric],
                2 * value,
                name,
            )
    return {pair: {k[len("fusion_") :]: v for k, v in m.items() if "@" in k} for pair, m in grid.items()}


def fusion_records(grid: dict | None, args: GenRecTrainingArguments) -> dict:
    """``results.json``'s fusion entries: ``transition_weight_validation`` (weight → validation metrics, at the
    picked scorer weight) and, with a scorer, ``scorer_weight`` and ``fusion_validation`` ("transition/scorer" →
    metrics)."""
    records: dict = {
        "transition_weight_validation": None
        if grid is None
        else {str(t): m for (t, s), m in grid.items() if s == args.scorer_weight}
    }
    if args.scorer_weight or args.scorer_weights:
        records["scorer_weight"] = args.scorer_weight
        records["fusion_validation"] = None if grid is None else {f"{t}/{s}": m for (t, s), m in grid.items()}
    return records


def format_results_table(results: dict) -> str:
    """A markdown table of the model's test metrics beside the baselines'."""
    names = list(results["test"])
    rows = [("hf_genrec (" + results.get("id_scheme", "") + ")", results["test"])]
    rows += list(results["baselines"].items())
    lines = ["| model | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for label, metrics in rows:
        lines.append(f"| {label} | " + " | ".join(f"{metrics[n]:.4f}" for n in names) + " |")
    return "\n".join(lines)
