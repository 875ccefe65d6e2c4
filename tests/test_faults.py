"""Faults: a run killed mid-epoch resumes to the same result; a crash while saving leaves the previous bundle; a
damaged or half-written checkpoint is named, with what to do, and skipped when resuming from the last one."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer
from hf_genrec.training.trainer import GenRecTrainer
from hf_genrec.utils.saving import CheckpointError, checkpoint_problem, last_complete_checkpoint

from .conftest import TINY_T5, tiny_training_args
from .fault_run import run

REPO = Path(__file__).resolve().parents[1]


def _kill_when_stalled(process: subprocess.Popen, out: Path, step: int, seconds: float) -> None:
    """SIGKILL ``process`` once `tests.fault_run` says it stalled at ``step`` (its ``stalled`` file)."""
    try:
        deadline = time.monotonic() + seconds
        while not (out / "stalled").exists():
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"the run never reached step {step}"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the tiny run of fault_run.py from start to end (3 epochs, a checkpoint every 5 steps)."""
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, run(out)


def test_sigkill_mid_epoch_then_resume_reaches_the_same_result(uninterrupted, tmp_path):
    _, expected = uninterrupted
    out = tmp_path / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    # step 18 is in the middle of epoch 2 (13 steps per epoch), 3 steps after checkpoint-15
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_run", str(out), "--stall-at-step", "18"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _kill_when_stalled(process, out, step=18, seconds=120)
    assert not (out / "final_metrics.json").exists()
    assert last_complete_checkpoint(out) == str(out / "checkpoint-15")

    resumed = run(out, resume=True)
    assert resumed["global_step"] == expected["global_step"] == 39
    assert resumed["metrics"] == expected["metrics"]
    assert resumed["final_loss"] == expected["final_loss"]
    torch.testing.assert_close(torch.tensor(resumed["weights"]), torch.tensor(expected["weights"]), rtol=0, atol=0)


def _copy_run(uninterrupted, tmp_path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(uninterrupted[0], out)
    return out


def test_damaged_checkpoint_is_named_and_the_last_complete_one_is_used(uninterrupted, tmp_path, caplog):
    out = _copy_run(uninterrupted, tmp_path)
    weights = out / "checkpoint-39" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])  # truncated: a full disk, a bad copy
    assert "model.safetensors is truncated" in checkpoint_problem(out / "checkpoint-39")
    (out / "checkpoint-35" / "optimizer.pt").write_bytes(b"\x00" * 64)
    assert "optimizer.pt is damaged" in checkpoint_problem(out / "checkpoint-35")
    (out / "checkpoint-30" / "trainer_state.json").write_text('{"global_step": 3')
    assert "trainer_state.json is not valid JSON" in checkpoint_problem(out / "checkpoint-30")
    (out / "checkpoint-25" / "training_clock.json").unlink()  # killed while saving: the marker is written last
    assert "the save was interrupted" in checkpoint_problem(out / "checkpoint-25")

    with pytest.raises(
        CheckpointError, match=r"checkpoint-39: model.safetensors is truncated.*Resume from checkpoint-20"
    ):
        _resume_from(out, out / "checkpoint-39")
    with caplog.at_level(logging.WARNING, logger="hf_genrec.utils.saving"):
        assert last_complete_checkpoint(out) == str(out / "checkpoint-20")
    assert "Skipping" in caplog.text and "checkpoint-39" in caplog.text and "checkpoint-25" in caplog.text


def _resume_from(out: Path, checkpoint: Path):
    """Resume a trainer from an explicit checkpoint folder (raises before training when it is damaged)."""
    item_tokenizer = ItemTokenizer.from_pretrained(checkpoint)
    trainer = GenRecTrainer(
        model=build_t5_model(item_tokenizer, seed=0, **TINY_T5),
        args=tiny_training_args(out, num_train_epochs=3),
        item_tokenizer=item_tokenizer,
    )
    trainer.train(resume_from_checkpoint=str(checkpoint))


def test_crash_while_saving_a_bundle_leaves_the_previous_one(item_tokenizer, tiny_model, tmp_path, monkeypatch):
    folder = tmp_path / "bundle"
    killed = tmp_path / ".bundle.saving-x1y2"  # what a save killed with SIGKILL leaves behind
    (killed / "semantic_ids").mkdir(parents=True)
    GenerativeRecommender(tiny_model, item_tokenizer, GenRecConfig(num_beams=8, top_k=3)).save_pretrained(folder)
    assert not killed.exists()
    before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
    expected = GenerativeRecommender.from_pretrained(folder).recommend([["item1", "item2"]], k=3)

    changed = type(tiny_model)(tiny_model.config)  # other weights: a new save would change the recommendations

    def crash(*args, **kwargs):
        raise OSError("No space left on device")

    monkeypatch.setattr(ItemTokenizer, "save_pretrained", crash)  # after the new weights are written
    with pytest.raises(OSError, match="No space left"):
        GenerativeRecommender(changed, item_tokenizer, GenRecConfig(num_beams=8, top_k=3)).save_pretrained(folder)
    assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before
    assert GenerativeRecommender.from_pretrained(folder).recommend([["item1", "item2"]], k=3) == expected
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no staging folder left behind


def test_crash_while_the_trainer_saves_keeps_the_previous_bundle_and_checkpoints(uninterrupted, tmp_path, monkeypatch):
    out = _copy_run(uninterrupted, tmp_path)
    item_tokenizer = ItemTokenizer.from_pretrained(out / "checkpoint-39")
    recommender = GenerativeRecommender.from_pretrained(out / "checkpoint-39")
    trainer = GenRecTrainer(model=recommender.model, args=tiny_training_args(out), item_tokenizer=item_tokenizer)
    trainer.save_model(str(out))
    saved = json.loads((out / "config.json").read_text())
    weights = (out / "model.safetensors").read_bytes()

    monkeypatch.setattr(GenRecConfig, "save_pretrained", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    with torch.no_grad():
        for p in trainer.model.parameters():
            p.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_model(str(out))
    assert (out / "model.safetensors").read_bytes() == weights  # the previous weights, not the new ones
    assert json.loads((out / "config.json").read_text()) == saved
    assert (out / "checkpoint-39").is_dir() and not [p for p in out.iterdir() if p.name.startswith(".")]
    GenerativeRecommender.from_pretrained(out)


@pytest.mark.parametrize(
    "damaged",
    ["semantic_ids/codes.safetensors", "semantic_ids/item_ids.json", "semantic_ids/semantic_ids.json",
     "genrec_tokenizer.json", "tokenizer.json", "quantizer/quantizer.safetensors", "model.safetensors"],
)  # fmt: skip
def test_damaged_bundle_file_is_named_with_what_to_do(damaged, item_tokenizer, tiny_model, tmp_path):
    from hf_genrec.semantic_ids import RandomIDs

    quantizer = RandomIDs(n_levels=3, codebook_size=4, seed=0)
    quantizer.fit(None, item_tokenizer.item_ids)
    folder = tmp_path / "bundle"
    GenerativeRecommender(tiny_model, item_tokenizer, GenRecConfig(), quantizer=quantizer).save_pretrained(folder)
    path = folder / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a copy that stopped half way
    with pytest.raises(ValueError, match=r"truncated or damaged.*(Save|save)") as info:
        GenerativeRecommender.from_pretrained(folder)
    assert damaged.split("/")[-1] in str(info.value) or "tokenizer" in str(info.value)


# ------------------------------------------------------------------ the recipe's own path: `hf-genrec train`
def _walk_data(root: Path) -> Path:
    """``root/ml-100k/`` in RecBole format: 40 users, each step of their walk over 30 items +1 or +2."""
    import numpy as np

    rng = np.random.default_rng(0)
    folder = root / "ml-100k"
    folder.mkdir(parents=True)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(40):
        item = int(rng.integers(30))
        for t in range(9):
            lines.append(f"u{user}\t{item}\t5\t{1000 + t}")
            item = (item + 1 + int(rng.integers(2))) % 30
    (folder / "ml-100k.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    (folder / "ml-100k.item").write_text(
        "\n".join([*items, *(f"{i}\tMovie {i}\t1995\tDrama" for i in range(30))]) + "\n"
    )
    return root


def _recipe_flags(data_root: Path, out: Path) -> list[str]:
    """`hf-genrec train --dataset ml-100k`: the shipped recipe (causal encoder, item positions, recency embeddings,
    decoding from the last state, dropout 0.1, the trie-normalised loss, a 10-minute budget whose cosine schedule
    anneals over it, validation and a checkpoint every epoch, the best kept, the prior fused), at a tiny size. The
    warm-up is one step instead of a share of the progress: the budget's progress then never decides the learning
    rate in a run this short, so the run is deterministic and a resumed one can be compared to it exactly."""
    return [
        "--dataset", "ml-100k", "--data_dir", str(data_root), "--output_dir", str(out), "--d_model", "16",
        "--d_ff", "32", "--d_kv", "8", "--num_layers", "1", "--num_decoder_layers", "1", "--n_levels", "2",
        "--codebook_size", "4", "--collaborative_dim", "8", "--num_train_epochs", "4",
        "--per_device_train_batch_size", "4", "--num_beams", "10", "--warmup_steps", "1", "--logging_steps", "1",
        "--use_cpu", "true", "--quiet", "true",
    ]  # fmt: skip


def test_hf_genrec_train_killed_mid_epoch_resumes_to_the_same_bundle(tmp_path, monkeypatch):
    """kill -9 of ``hf-genrec train`` on the recipe's path in the middle of epoch 2, then ``--resume_from_checkpoint
    last``: the run goes on from epoch 1's checkpoint (same item IDs, the clock and the validation curve go on) and
    ends with a valid bundle whose weights are those of a run never killed."""
    from safetensors.torch import load_file

    from hf_genrec.bundle.layout import check_bundle
    from hf_genrec.cli.main import main
    from hf_genrec.semantic_ids import SemanticIDs

    data = _walk_data(tmp_path / "data")
    out = tmp_path / "killed"
    out.mkdir()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    # 40 users in batches of 4: 10 steps an epoch; step 14 is 4 steps after epoch 1's checkpoint-10
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fault_run", str(out), "--stall-at-step", "14", "--cli", "--",
         *_recipe_flags(data, out)],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    _kill_when_stalled(process, out, step=14, seconds=180)
    assert not (out / "results.json").exists() and not (out / "model.safetensors").exists()
    checkpoint = out / "checkpoint-10"
    assert last_complete_checkpoint(out) == str(checkpoint)
    config = json.loads((checkpoint / "config.json").read_text())
    assert config["model_type"] == "hf_genrec_t5" and config["dropout_rate"] == 0.1
    assert config["item_positions"] and config["recency_embeddings"] and config["start_from_last_state"]
    clock = json.loads((checkpoint / "training_clock.json").read_text())
    assert clock["global_step"] == 10 and clock["train_seconds"] > 0
    # as if the run had spent 100 s before the kill, so the clock's going on shows (a sixth of the budget: the
    # learning rate still follows the steps)
    (checkpoint / "training_clock.json").write_text(json.dumps({**clock, "train_seconds": 100.0}))
    codes = SemanticIDs.load(checkpoint / "semantic_ids").codes  # (the resumed run rotates the checkpoint away)

    steps, training_step = [], GenRecTrainer.training_step

    def counted_step(self, *args, **kwargs):
        steps.append(self.state.global_step)
        return training_step(self, *args, **kwargs)

    monkeypatch.setattr(GenRecTrainer, "training_step", counted_step)
    assert main(["train", *_recipe_flags(data, out), "--resume_from_checkpoint", "last"]) == 0
    assert steps == list(range(10, 40))  # steps 11 to 40 (counted from 0): the run went on from the checkpoint
    results = json.loads((out / "results.json").read_text())
    assert results["train_steps"] == 40
    curve = results["validation_curve"]
    assert [point["epoch"] for point in curve] == [1.0, 2.0, 3.0, 4.0]
    # the bundle holds the best validation checkpoint: one trained after the kill, so the comparison below covers
    # the resumed training
    assert max(curve, key=lambda point: (point["ndcg@10"], -point["step"]))["step"] > 14
    assert 100 / 60 < results["train_minutes"] < 160 / 60  # the run's clock went on from the checkpoint's
    assert all(point["train_minutes"] > 100 / 60 for point in curve[1:])
    assert (SemanticIDs.load(out / "semantic_ids").codes == codes).all()  # the IDs were read back, not rebuilt
    check_bundle(out)
    recommended = GenerativeRecommender.from_pretrained(out).recommend([["3", "4", "6"]], k=5)[0]
    assert len(recommended) == 5

    reference = tmp_path / "uninterrupted"
    steps.clear()
    assert main(["train", *_recipe_flags(data, reference)]) == 0
    assert steps == list(range(40))
    expected = json.loads((reference / "results.json").read_text())
    assert results["test"] == expected["test"] and results["validation_curve"][-1]["step"] == 40
    weights, expected_weights = load_file(out / "model.safetensors"), load_file(reference / "model.safetensors")
    assert weights.keys() == expected_weights.keys()
    for name in weights:
        torch.testing.assert_close(weights[name], expected_weights[name], rtol=0, atol=0)
