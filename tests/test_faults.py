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
    try:
        deadline = time.monotonic() + 120
        while not (out / "stalled").exists():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the run never reached step 18"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
        process.stderr.close()
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
