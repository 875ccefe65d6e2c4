"""A tiny, deterministic training run for the fault tests, run as its own process (it gets killed).

    python -m tests.fault_run OUTPUT_DIR [--stall-at-step N] [--resume]
    python -m tests.fault_run OUTPUT_DIR --stall-at-step N --cli -- HF_GENREC_TRAIN_FLAGS...

Trains a tiny T5 on a cyclic walk over 30 items for 3 epochs with a checkpoint every 5 steps, evaluates on held-out
users and writes ``final_metrics.json``. ``--stall-at-step N`` writes ``stalled`` after step N and then sleeps, so a
test can kill the process at a known point mid-epoch; ``--resume`` continues from the last complete checkpoint.
With ``--cli`` the run is ``hf-genrec train`` itself (the recipe's own path) on the flags after ``--``, with the
same stall.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import datasets
import torch
from transformers import TrainerCallback

from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RandomIDs
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer
from hf_genrec.training.examples import tokenize_examples
from hf_genrec.training.trainer import GenRecTrainer

from .conftest import TINY_T5, cyclic_sequences, tiny_training_args


class Stall(TrainerCallback):
    def __init__(self, step: int, flag: Path):
        self.step, self.flag = step, flag

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            self.flag.write_text(str(self.step))
            time.sleep(600)  # the test kills the process here


def rows(sequences, start, stop):
    pairs = [(seq[:t], seq[t]) for seq in sequences for t in range(start, stop)]
    return datasets.Dataset.from_dict({"history": [h for h, _ in pairs], "target": [t for _, t in pairs]})


def run(output_dir: str | Path, stall_at_step: int | None = None, resume: bool = False) -> dict:
    """Train (or resume), evaluate, write and return ``final_metrics.json``'s content."""
    output = Path(output_dir)
    items = [f"item{i}" for i in range(30)]
    item_tokenizer = ItemTokenizer(
        minimal_t5_tokenizer(), RandomIDs(n_levels=2, codebook_size=4, seed=0).fit(None, items)
    )
    sequences = cyclic_sequences(30, 48, 7, seed=3)
    train = tokenize_examples(rows(sequences[:40], 1, 6), item_tokenizer)  # 200 rows: 13 steps of 16 per epoch
    test = tokenize_examples(rows(sequences[40:], 6, 7), item_tokenizer)
    args = tiny_training_args(
        output, num_train_epochs=3, save_strategy="steps", save_steps=5, save_total_limit=None, seed=7,
        load_best_model_at_end=False, num_beams=8, eval_ks=[1, 5], train_sampling_strategy="random",
        logging_steps=1,
    )  # fmt: skip
    trainer = GenRecTrainer(
        model=build_t5_model(item_tokenizer, seed=0, **TINY_T5),
        args=args,
        item_tokenizer=item_tokenizer,
        train_dataset=train,
    )
    if stall_at_step:
        trainer.add_callback(Stall(stall_at_step, output / "stalled"))
    trainer.train(resume_from_checkpoint=True if resume else None)
    metrics = trainer.evaluate(test, metric_key_prefix="test")
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    with torch.no_grad():
        weights = [p.detach().double().flatten() for p in trainer.model.parameters()]
    result = {
        "metrics": {
            k: v for k, v in metrics.items() if k.startswith("test_") and k.split("_")[-1] not in ("runtime", "second")
        },
        "final_loss": losses[-1],
        "global_step": trainer.state.global_step,
        "weights": torch.cat(weights).tolist(),
    }
    (output / "final_metrics.json").write_text(json.dumps(result))
    return result


def train_cli(argv: list[str], stall_at_step: int | None = None, flag: Path | None = None) -> int:
    """``hf-genrec train`` on ``argv`` in this process; with ``stall_at_step``, every `GenRecTrainer` it trains
    stalls after that step (writing ``flag``), as `run` does."""
    from hf_genrec.cli.main import main as hf_genrec

    if stall_at_step:
        original = GenRecTrainer.train

        def train_and_stall(self, *args, **kwargs):
            self.add_callback(Stall(stall_at_step, flag))
            return original(self, *args, **kwargs)

        GenRecTrainer.train = train_and_stall
    return hf_genrec(["train", *argv])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--stall-at-step", type=int)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--cli", action="store_true", help="run `hf-genrec train` with the flags after --")
    argv = sys.argv[1:]
    flags = argv[argv.index("--") + 1 :] if "--" in argv else []
    cli = parser.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    torch.set_num_threads(1)
    if cli.cli:
        sys.exit(train_cli(flags, cli.stall_at_step, Path(cli.output_dir) / "stalled"))
    run(cli.output_dir, cli.stall_at_step, cli.resume)


if __name__ == "__main__":
    main()
