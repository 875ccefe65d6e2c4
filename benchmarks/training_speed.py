"""Training speed: what a training step costs, and what each change to the model or the batches saves.

    python benchmarks/training_speed.py step --data_dir ../shared/data --dataset amazon-beauty
    python benchmarks/training_speed.py step --data_dir ../shared/data --dataset ml-1m --depths 2+1 --widths 64
    python benchmarks/training_speed.py throughput --data_dir ../shared/data
    python benchmarks/training_speed.py loss --data_dir ../shared/data --dataset amazon-beauty

- ``step``: forward + backward of the packed causal-encoder step on real batches, its variants interleaved batch by
  batch in one process (per-target memory, shared memory, dropout, depths, widths, torch's dropout);
- ``throughput``: whole `Trainer` runs: GenRecTrainer against a plain Seq2SeqTrainer padded to the cap, and the
  causal-encoder T5 on packed rows at several shapes, in targets (sequences) per second;
- ``loss``: the default recipe's step with the constrained loss over the whole vocabulary's logits against the loss
  from the decoder's states (only the tokens the trie allows), with shared and with per-item collision codes.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import dispatch, write_record  # benchmarks/machine.py (scripts run from benchmarks/)
from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

from hf_genrec import GenRecTrainer, GenRecTrainingArguments, ItemTokenizer, leave_one_out, minimal_t5_tokenizer
from hf_genrec.data import load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.decoding.trie import trie_cross_entropy
from hf_genrec.models.dropout import BitsDropout
from hf_genrec.models.t5 import TIGER_T5_CONFIG, build_t5_model
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.training.collator import GenRecCollator
from hf_genrec.training.examples import tokenize_examples, tokenize_sequences

#: the T5 the step was first measured on (4 encoder layers, 2 decoder layers, width 128); the default recipe's is
#: 2+1 layers at width 64
RECIPE = dict(d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=4, num_decoder_layers=2)
#: (history cap, users per batch, codes per level) of each dataset's config
DATASETS = {"amazon-beauty": (20, 32, 256), "ml-1m": (50, 16, 64)}


def torch_dropout(model: torch.nn.Module) -> torch.nn.Module:
    """Put torch's dropout modules back in place of BitsDropout (packed cross-attention follows its module)."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, BitsDropout):
                setattr(module, name, torch.nn.Dropout(child.p))
    return model


def loss_trainer(model: torch.nn.Module, tokenizer: ItemTokenizer) -> GenRecTrainer:
    """A `GenRecTrainer` that only builds the item trie and the constrained loss for ``model`` (it neither evaluates
    nor saves), for timing ``compute_loss``."""
    with tempfile.TemporaryDirectory() as tmp:
        return GenRecTrainer(
            model=model,
            args=GenRecTrainingArguments(
                output_dir=tmp,
                constrained_loss=True,
                use_cpu=True,
                report_to="none",
                eval_strategy="no",
                save_strategy="no",
                load_best_model_at_end=False,
            ),
            item_tokenizer=tokenizer,
        )


def training_step(argv: list[str]) -> None:
    """What the packed training step of the default recipe costs, and what four changes save: forward + backward of
    the causal-encoder T5 (width 128, one encoder position per item, recency embeddings) on real packed, length-grouped
    batches, with the trie-normalised loss.

        python benchmarks/training_speed.py step --data_dir ../shared/data --dataset amazon-beauty
        python benchmarks/training_speed.py step --data_dir ../shared/data --dataset ml-1m

    Variants, interleaved batch by batch in one process (a machine that slows down slows all of them alike):

    - ``per_target_memory``: the previous step. Every target gets its own copy of its window's encoder states plus its
      recency embeddings, which each cross-attention layer projects to keys and values again; the decoder spells the
      4 code tokens and EOS.
    - ``per_target_memory_skip_eos``: the same, without the EOS step (forced by the trie after a fixed-length ID, so its
      loss and gradient are exactly zero).
    - ``shared_memory``: what `GenRecTrainer` runs now. Each window's states are projected once for all its targets,
      and recency enters through the projected recency table (`hf_genrec.models.causal_t5.PackedCrossAttention`); no EOS step.
    - ``shared_memory_no_dropout``: the same with dropout 0.
    - ``shared_memory_<E>+<D>_layers``: the same step (dropout 0.1) with E encoder layers and D decoder layers instead of
      4 and 2, for each depth of ``--depths`` (default ``2+1``: the depth of hf_genrec/recipes/amazon-default.yaml).
    - ``shared_memory_2+1_layers_width_<W>``: the same step at 2+1 layers and width W (MLP 4W, heads of 32) instead of
      128, for each width of ``--widths`` (default ``64``: the width of hf_genrec/recipes/amazon-default.yaml).
    - ``..._torch_dropout``: ``shared_memory`` and each depth with torch's own dropout modules instead of
      `hf_genrec.models.dropout.BitsDropout` (which the models use now), to time what the cheaper CPU masks save.

    Writes ``benchmarks/results/training_step_<dataset>.json``: seconds per variant, targets per second, speed-ups.
    """
    parser = argparse.ArgumentParser(
        prog="training_speed.py step",
        description=training_step.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="amazon-beauty", choices=sorted(DATASETS))
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--batches", type=int, default=40, help="Timed batches per variant (after 5 warm-up ones).")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--depths", default="2+1", help="Comma-separated encoder+decoder depths to time as well.")
    parser.add_argument("--widths", default="64", help="Comma-separated widths to time at 2+1 layers as well.")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    # checked before the data is read, so a typo fails at once
    depths = {}
    for depth in filter(None, args.depths.split(",")):
        encoder, _, decoder = depth.partition("+")
        if not (encoder.isdigit() and decoder.isdigit()):
            parser.error(f"--depths takes encoder+decoder layer counts such as 2+1, got {depth!r}")
        depths[depth] = dict(num_layers=int(encoder), num_decoder_layers=int(decoder))
    widths = {}
    for width in filter(None, args.widths.split(",")):
        if not width.isdigit() or int(width) % 32:
            parser.error(f"--widths takes multiples of 32 (heads of 32), got {width!r}")
        widths[f"2+1_layers_width_{width}"] = dict(
            num_layers=2, num_decoder_layers=1, d_model=int(width), d_ff=4 * int(width), num_heads=int(width) // 32
        )
    torch.set_num_threads(args.threads)
    max_history, batch_size, codebook = DATASETS[args.dataset]

    data = load_interactions(args.dataset, args.data_dir)
    item_ids = data.items["item_id"][:]
    # Random features: the IDs' values do not change the cost of a step, only their shape does.
    features = np.random.default_rng(0).normal(size=(len(item_ids), 32)).astype(np.float32)
    tokenizer = ItemTokenizer(minimal_t5_tokenizer(), RQKMeans(3, codebook).fit(features, item_ids), history_eos=False)
    packed = tokenize_sequences(training_part(data.sequences["item_ids"][:]), tokenizer, max_history=max_history)
    packed = packed.shuffle(seed=0).select(range(min(len(packed), 50 * batch_size)))
    # Length-grouped batches, as GenRecTrainer's sampler makes them.
    order = np.argsort(-np.asarray(packed["length"]), kind="stable")
    collate = GenRecCollator(tokenizer.tokenizer.pad_token_id)
    batches = [collate([packed[int(i)] for i in order[k : k + batch_size]]) for k in range(0, len(order), batch_size)]
    rng = np.random.default_rng(0)
    batches = [
        batches[int(i)] for i in rng.choice(len(batches), size=min(len(batches), args.batches + 5), replace=False)
    ]

    # model key -> (T5 size, dropout): the 4+2 recipe with and without dropout, then each extra depth and width
    shapes = {0.1: (RECIPE, 0.1), 0.0: (RECIPE, 0.0)}
    shapes.update({depth: ({**RECIPE, **layers}, 0.1) for depth, layers in depths.items()})
    shapes.update({shape: ({**RECIPE, **size}, 0.1) for shape, size in widths.items()})
    models = {
        key: build_t5_model(
            tokenizer, seed=0, causal_encoder=True, item_positions=True, recency_embeddings=True,
            dropout_rate=dropout, **shape,
        ).train()
        for key, (shape, dropout) in shapes.items()
    }  # fmt: skip
    for key in [0.1, *depths]:
        models[(key, "torch")] = torch_dropout(copy.deepcopy(models[key]))
    trainer = loss_trainer(models[0.1], tokenizer)
    index = trainer.trie_index

    def per_target_memory(model, batch, skip_eos):
        """The packed forward as it was: one copy of the window's states (plus recency) per target."""
        target_ends, labels = batch["target_ends"], batch["labels"]
        blocks = labels.view(*target_ends.shape, -1)
        if skip_eos:
            blocks = blocks[..., :-1]
        encoded = model.encoder(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], add_recency=False
        )
        ends = encoded.token_item_index.gather(1, (target_ends - 1).clamp(min=0)) + 1
        row, target = (blocks != -100).any(dim=-1).nonzero(as_tuple=True)
        blocks, ends = blocks[row, target], ends[row, target]
        start = torch.full_like(blocks[:, :1], model.config.decoder_start_token_id)
        decoder_input_ids = torch.cat([start, blocks[:, :-1]], dim=-1).clamp(min=0)
        history = torch.arange(encoded.last_hidden_state.shape[1])
        prefix = (history[None] < ends[:, None]) & encoded.item_attention_mask.bool()[row]
        memory = encoded.last_hidden_state[row]
        memory = memory + model.encoder.recency_embedding(ends[:, None] - 1 - history[None], prefix)
        decoded = model.decoder(
            inputs_embeds=model.decoder.embed_tokens(decoder_input_ids),
            encoder_hidden_states=memory,
            encoder_attention_mask=prefix.long(),
        ).last_hidden_state
        logits = model.lm_head(decoded * model.model_dim**-0.5)
        return model, trie_cross_entropy(logits, blocks, index)

    variants = {
        "per_target_memory": lambda batch: per_target_memory(models[0.1], batch, skip_eos=False),
        "per_target_memory_skip_eos": lambda batch: per_target_memory(models[0.1], batch, skip_eos=True),
        "shared_memory": lambda batch: (models[0.1], trainer.compute_loss(models[0.1], batch)),
        "shared_memory_no_dropout": lambda batch: (models[0.0], trainer.compute_loss(models[0.0], batch)),
        **{
            f"shared_memory_{depth}_layers": lambda batch, model=models[depth]: (
                model,
                trainer.compute_loss(model, batch),
            )
            for depth in depths
        },
        **{
            f"shared_memory_{shape}": lambda batch, model=models[shape]: (model, trainer.compute_loss(model, batch))
            for shape in widths
        },
        "shared_memory_torch_dropout": lambda batch: (
            models[(0.1, "torch")],
            trainer.compute_loss(models[(0.1, "torch")], batch),
        ),
        **{
            f"shared_memory_{depth}_layers_torch_dropout": lambda batch, model=models[(depth, "torch")]: (
                model,
                trainer.compute_loss(model, batch),
            )
            for depth in depths
        },
    }
    seconds = dict.fromkeys(variants, 0.0)
    for step, batch in enumerate(batches):
        names = list(variants) if step % 2 else list(reversed(variants))  # neither order always goes first
        for name in names:
            start = time.perf_counter()
            model, loss = variants[name](batch)
            loss.backward()
            model.zero_grad(set_to_none=True)
            if step >= 5:
                seconds[name] += time.perf_counter() - start
    targets = sum(int((b["labels"].view(*b["target_ends"].shape, -1) != -100).any(-1).sum()) for b in batches[5:])
    payload = {
        "dataset": args.dataset,
        "timed_batches": len(batches) - 5,
        "users_per_batch": batch_size,
        "targets": targets,
        "seconds": seconds,
        "targets_per_second": {name: targets / s for name, s in seconds.items()},
        "speedup_over_per_target_memory": {name: seconds["per_target_memory"] / s for name, s in seconds.items()},
        "bits_dropout_speedup": {
            name: seconds[f"{name}_torch_dropout"] / seconds[name]
            for name in ["shared_memory", *(f"shared_memory_{depth}_layers" for depth in depths)]
        },
        "model": RECIPE,
        "depths": depths,
        "widths": widths,
        "threads": args.threads,
    }
    output = Path(args.output or f"benchmarks/results/training_step_{args.dataset}.json")
    write_record(payload, output)
    shown = ("targets_per_second", "speedup_over_per_target_memory", "bits_dropout_speedup")
    print(json.dumps({k: payload[k] for k in shown}, indent=2))


def loss_speed(argv: list[str]) -> None:
    """What scoring only the trie's tokens saves: forward + backward of the default recipe's packed step (2+1 layers,
    width 64, dropout 0.1) on real Beauty batches, with the constrained loss computed from the whole vocabulary's
    logits (``dense``: what `ConstrainedLoss` did before, and still does when asked for the outputs) or from the
    decoder's states (``from_states``: `trie_cross_entropy_from_states`, what training runs now), on length-grouped
    batches as the trainer makes them (the same users for every variant). Each runs with the
    collision level shared by the items of one code tuple (TIGER's, about 800 tokens in all) and with per-item
    collision codes (``collision_codes: per_item``: one more token per item). The two losses must agree on every batch.

        python benchmarks/training_speed.py loss --data_dir ../shared/data --dataset amazon-beauty --threads 1

    Writes ``benchmarks/results/training_loss_<dataset>.json``: seconds and targets per second per variant.
    """
    parser = argparse.ArgumentParser(prog="training_speed.py loss", description=loss_speed.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--dataset", default="amazon-beauty", choices=sorted(DATASETS))
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--batches", type=int, default=30, help="About this many batches per variant are timed.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    max_history, batch_size, codebook = DATASETS[args.dataset]
    data = load_interactions(args.dataset, args.data_dir)
    item_ids = data.items["item_id"][:]
    # Random features: the IDs' values do not change the cost of a step, only their shape does.
    features = np.random.default_rng(0).normal(size=(len(item_ids), 32)).astype(np.float32)
    shared = RQKMeans(3, codebook).fit(features, item_ids)
    sequences = training_part(data.sequences["item_ids"][:])
    # the same users in both setups (packing depends on the sequences, not on the IDs)
    picked = np.random.default_rng(0).choice(len(sequences), size=(args.batches + 3) * batch_size, replace=False)
    setups = {}
    for codes, ids in (("shared_codes", shared), ("per_item_codes", shared.with_item_collision_codes())):
        tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
        packed = tokenize_sequences([sequences[int(i)] for i in picked], tokenizer, max_history=max_history)
        # length-grouped batches, as GenRecTrainer's sampler makes them
        packed = packed.select(np.argsort(-np.asarray(packed["length"]), kind="stable"))
        collate = GenRecCollator(tokenizer.tokenizer.pad_token_id)
        batches = [
            collate(list(packed.select(range(b, min(b + batch_size, len(packed))))))
            for b in range(0, len(packed), batch_size)
        ]
        model = build_t5_model(
            tokenizer, seed=0, causal_encoder=True, item_positions=True, recency_embeddings=True,
            d_model=64, d_ff=256, d_kv=32, num_heads=2, num_layers=2, num_decoder_layers=1, dropout_rate=0.1,
        ).train()  # fmt: skip
        trainer = loss_trainer(model, tokenizer)
        setups[codes] = (trainer, model, batches, len(tokenizer))
    seconds = {}
    vocab = {codes: size for codes, (_, _, _, size) in setups.items()}
    n_batches = min(len(batches) for _, _, batches, _ in setups.values())
    for step in range(n_batches):
        for codes, (trainer, model, batches, _) in setups.items():
            losses = {}
            for loss_name in ("dense", "from_states") if step % 2 else ("from_states", "dense"):
                torch.manual_seed(step)  # the same dropout masks for both losses
                start = time.perf_counter()
                if loss_name == "dense":
                    loss = trainer.compute_loss(model, batches[step], return_outputs=True)[0]
                else:
                    loss = trainer.compute_loss(model, batches[step])
                loss.backward()
                model.zero_grad(set_to_none=True)
                if step >= 3:
                    name = f"{loss_name}_{codes}"
                    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
                losses[loss_name] = loss.item()
            if not np.isclose(losses["dense"], losses["from_states"], rtol=1e-4):
                raise SystemExit(f"{codes} batch {step}: the losses differ ({losses}); the loss from states is wrong.")
    _, _, batches, _ = setups["shared_codes"]
    targets = sum(int((b["labels"].view(*b["target_ends"].shape, -1) != -100).any(-1).sum()) for b in batches[3:])
    payload = {
        "dataset": args.dataset,
        "timed_batches": n_batches - 3,
        "users_per_batch": batch_size,
        "targets": targets,
        "vocabulary": vocab,
        "seconds": seconds,
        "targets_per_second": {name: targets / s for name, s in seconds.items()},
        "speedup_from_states": {
            codes: seconds[f"dense_{codes}"] / seconds[f"from_states_{codes}"] for codes in setups
        },
        "model": dict(d_model=64, d_ff=256, num_layers=2, num_decoder_layers=1, dropout_rate=0.1),
        "threads": args.threads,
    }
    write_record(payload, Path(args.output or f"benchmarks/results/training_loss_{args.dataset}.json"))
    print(json.dumps({k: payload[k] for k in ("vocabulary", "targets_per_second", "speedup_from_states")}, indent=2))


#: width 128, MLP 512, 4+2 layers: the default recipe's T5 until its depth went to 2+1 (``DEFAULT_DEPTH``)
RECIPE_T5_CONFIG = dict(
    d_model=128, d_ff=512, d_kv=32, num_heads=4, num_layers=4, num_decoder_layers=2, dropout_rate=0.1
)
#: the default recipe's depth (hf_genrec/recipes/amazon-default.yaml)
DEFAULT_DEPTH = dict(num_layers=2, num_decoder_layers=1)


class StepTimer(TrainerCallback):
    """Wall time of the steps after ``warmup`` (the first steps pay for allocation and thread start-up)."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.seconds = warmup, None, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.warmup:
            self.start = time.perf_counter()
        elif state.global_step == state.max_steps and self.start is not None:
            self.seconds = time.perf_counter() - self.start


def throughput(argv: list[str]) -> None:
    """Training throughput on real histories: GenRecTrainer (dynamic padding, length-grouped batches) against a plain
    Seq2SeqTrainer fed inputs padded to the history cap, same model, same examples, same number of steps; and the
    causal-encoder T5 trained on packed rows (every next-item target of a user in one encoder pass), at TIGER's size
    and at width 128 with 4+2 layers, the latter also with one encoder position per item (with recency embeddings,
    without them, and with item embeddings), and at the default recipe's depth of 2+1 layers.

        python benchmarks/training_speed.py throughput --data_dir ../shared/data

    Writes ``benchmarks/results/training_throughput.json``: next-item targets (sequences) per second of each run, and
    the ratios to the plain Seq2SeqTrainer.
    """
    parser = argparse.ArgumentParser(
        prog="training_speed.py throughput",
        description=throughput.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--features", default="outputs/id_schemes/amazon-beauty_text_features.npy",
                        help="Item features .npy (random features are used when missing: IDs do not change speed).")  # fmt: skip
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument(
        "--packed_batch_size", type=int, default=32, help="Users (windows) per packed batch (the recipe's)."
    )
    parser.add_argument("--output", default="benchmarks/results/training_throughput.json")
    args = parser.parse_args(argv)

    data = load_interactions(args.dataset, args.data_dir)
    item_ids = data.items["item_id"][:]
    if Path(args.features).exists():
        features = np.load(args.features)
    else:
        features = np.random.default_rng(0).normal(size=(len(item_ids), 32)).astype(np.float32)
    semantic_ids = RQKMeans(3, 256).fit(features, item_ids)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids)
    train = tokenize_examples(leave_one_out(data, max_history=20)["train"], item_tokenizer)
    causal_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids, history_eos=False)
    packed = tokenize_sequences(training_part(data.sequences["item_ids"][:]), causal_tokenizer, max_history=20)
    targets_per_row = float(np.mean([len(ends) for ends in packed["target_ends"]]))
    packed = packed.shuffle(seed=0).select(range(min(len(packed), args.steps * args.packed_batch_size * 2)))
    train = train.shuffle(seed=0).select(range(min(len(train), args.steps * args.batch_size * 2)))
    cap = 20 * (item_tokenizer.id_length - 1) + 1
    runs = {}
    variants = {  # the 4+2 model with one encoder position per item, with recency embeddings, without them, and
        # with item embeddings; and the default recipe (recency embeddings at 2+1 layers)
        "causal_packed_recipe_items_recency_2x1": dict(item_positions=True, recency_embeddings=True, **DEFAULT_DEPTH),
        "causal_packed_recipe_items_recency": dict(item_positions=True, recency_embeddings=True),
        "causal_packed_recipe_items": dict(item_positions=True),
        "causal_packed_recipe_items_embedded": dict(item_positions=True, item_embedding_buckets=65536),
    }
    names = ("causal_packed_recipe", *variants, "causal_packed", "genrec_trainer", "plain_padded_to_cap")
    for name in names:
        size = RECIPE_T5_CONFIG if name.startswith("causal_packed_recipe") else TIGER_T5_CONFIG
        tokenizer = causal_tokenizer if name.startswith("causal") else item_tokenizer
        model = build_t5_model(
            tokenizer, seed=0, causal_encoder=name.startswith("causal"), **{**size, **variants.get(name, {})}
        )
        timer = StepTimer(args.warmup)
        with tempfile.TemporaryDirectory() as tmp:
            common = dict(
                output_dir=tmp, max_steps=args.steps, per_device_train_batch_size=args.batch_size, learning_rate=1e-3,
                save_strategy="no", eval_strategy="no", report_to="none", logging_steps=10_000, use_cpu=True,
                disable_tqdm=True, seed=0,
            )  # fmt: skip
            if name.startswith("causal"):
                common["per_device_train_batch_size"] = args.packed_batch_size
                # the recipe's rows train as the recipe does: with the trie-normalised loss
                recipe = name.startswith("causal_packed_recipe")
                trainer = GenRecTrainer(
                    model=model,
                    args=GenRecTrainingArguments(load_best_model_at_end=False, constrained_loss=recipe, **common),
                    item_tokenizer=causal_tokenizer,
                    train_dataset=packed,
                )
            elif name == "genrec_trainer":
                trainer = GenRecTrainer(
                    model=model,
                    args=GenRecTrainingArguments(load_best_model_at_end=False, **common),
                    item_tokenizer=item_tokenizer,
                    train_dataset=train,
                )
            else:
                collator = DataCollatorForSeq2Seq(
                    item_tokenizer.tokenizer, padding="max_length", max_length=cap, label_pad_token_id=-100
                )
                plain = train.remove_columns([c for c in train.column_names if c not in ("input_ids", "labels")])
                plain = plain.map(lambda b: {"labels": [row + [-100] * (item_tokenizer.id_length - len(row)) for row in b["labels"]]}, batched=True)  # fmt: skip
                trainer = Seq2SeqTrainer(
                    model=model,
                    args=Seq2SeqTrainingArguments(**common),
                    train_dataset=plain,
                    data_collator=collator,
                )
            trainer.add_callback(timer)
            trainer.train()
        sequences = (args.steps - args.warmup) * args.batch_size
        if name.startswith("causal"):  # targets, on average, of the sampled windows
            sequences = (args.steps - args.warmup) * args.packed_batch_size * targets_per_row
        runs[name] = {"seconds": timer.seconds, "sequences_per_second": sequences / timer.seconds}
        print(f"{name:<36} {runs[name]['sequences_per_second']:.1f} sequences/s", flush=True)
    lengths = np.asarray(train["length"][:])
    payload = {
        "dataset": args.dataset,
        "model": f"TIGER-sized T5 ({build_t5_model(item_tokenizer, **TIGER_T5_CONFIG).num_parameters():,} parameters)",
        "batch_size": args.batch_size,
        "timed_steps": args.steps - args.warmup,
        "history_tokens": {"cap": cap, "mean": float(lengths.mean()), "median": float(np.median(lengths))},
        "runs": runs,
        "packed": {"users_per_batch": args.packed_batch_size, "targets_per_window": targets_per_row},
        "speedup": runs["genrec_trainer"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_causal_packed": runs["causal_packed"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_causal_packed_over_genrec_trainer": runs["causal_packed"]["sequences_per_second"]
        / runs["genrec_trainer"]["sequences_per_second"],
        "speedup_recipe_over_plain": runs["causal_packed_recipe"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_recipe_items_over_recipe": runs["causal_packed_recipe_items"]["sequences_per_second"]
        / runs["causal_packed_recipe"]["sequences_per_second"],
        "speedup_recipe_items_recency_over_plain": runs["causal_packed_recipe_items_recency"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_default_recipe_over_plain": runs["causal_packed_recipe_items_recency_2x1"]["sequences_per_second"]
        / runs["plain_padded_to_cap"]["sequences_per_second"],
        "speedup_recipe_items_embedded_over_recipe": runs["causal_packed_recipe_items_embedded"][
            "sequences_per_second"
        ]
        / runs["causal_packed_recipe"]["sequences_per_second"],
        "recipe_model": RECIPE_T5_CONFIG,
        "default_depth": DEFAULT_DEPTH,
    }
    write_record(payload, args.output)
    print(json.dumps({k: v for k, v in payload.items() if k.startswith("speedup")}, indent=2))


if __name__ == "__main__":
    torch.manual_seed(0)  # as the throughput runs were measured
    dispatch(__doc__, {"step": training_step, "throughput": throughput, "loss": loss_speed})
