"""Under `accelerate launch` with 2 CPU processes (gloo) a tiny recommender of the recipes' kind (causal encoder, item
positions, recency embeddings, dropout, packed rows, a time budget) trains with shared gradients, and evaluation ranks
every test user exactly once, with the metrics a single process gets from the same checkpoint."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from . import accelerate_eval

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    """A port nothing listens on now (other test runs may share the machine)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(bundle: Path, output: Path, *flags: str) -> None:
    """``tests/accelerate_eval.py BUNDLE OUTPUT FLAGS`` under ``accelerate launch`` with two CPU processes.

    `--multi_gpu` on a machine without GPUs starts torch.distributed workers on the CPU (gloo); accelerate's `--cpu`
    alone runs one process unless MPI is configured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""}
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(_free_port()),
        "-m", "tests.accelerate_eval", str(bundle), str(output), *flags,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_train_and_rank_every_user_once_with_single_process_metrics(tmp_path):
    bundle, multi, single = tmp_path / "bundle", tmp_path / "multi.json", tmp_path / "single.json"
    launch_two_processes(bundle, multi, "--train")
    # the same checkpoint, ranked by a single process
    accelerate_eval.main(str(bundle), str(single))

    two, one = json.loads(multi.read_text()), json.loads(single.read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    # the processes shared their gradients: they trained on different rows, yet end with the same weights (without
    # the all-reduce each would have followed its own rows), which moved from where they started
    ranks = [json.loads(Path(f"{multi}.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert len(ranks[0]["batches"]) == len(ranks[1]["batches"]) == 60  # 40 users, 4 a process, 12 epochs
    assert all(a != b for a, b in zip(ranks[0]["batches"], ranks[1]["batches"]))
    weights = [load_file(f"{multi}.rank{rank}.safetensors") for rank in (0, 1)]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=0, atol=0)
    assert ranks[0]["largest_change"] > 0.05
    assert two["train_losses"][-1] < 0.8 * two["train_losses"][0]
    assert not [p for p in bundle.iterdir() if p.name.startswith(".")]  # one bundle, written by the main process
    # 23 users in batches of 4 on 2 processes: the last round is padded; every user is ranked exactly once
    assert len(two["labels"]) == len(two["predictions"]) == accelerate_eval.N_USERS
    assert two["labels"] == one["labels"] == one["expected_labels"]  # in the dataset's order
    assert two["predictions"] == one["predictions"]
    ranking = [k for k in one["metrics"] if "@" in k or "invalid" in k]
    assert len(ranking) == 6 and {k: two["metrics"][k] for k in ranking} == {k: one["metrics"][k] for k in ranking}
    assert one["metrics"]["test_recall@5"] > 0.3  # a model that learnt something, so equal metrics mean something
    # `evaluate` batches histories sorted by length (a different order, sharded too): the same ranking metrics
    for run in (one, two):
        assert {k: run["evaluate_metrics"][k] for k in ranking} == {k: one["metrics"][k] for k in ranking}
    # the loss is Trainer's mean of batch means: the padded last batch moves it slightly, but it is not doubled
    assert two["metrics"]["test_loss"] == pytest.approx(one["metrics"]["test_loss"], rel=0.05)


def test_shipped_accelerate_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file

    folder = REPO / "hf_genrec" / "recipes" / "accelerate"
    kinds = {}
    for path in sorted(folder.glob("*.yaml")):
        config = load_config_from_file(str(path))
        kinds[path.stem] = (
            str(config.distributed_type).split(".")[-1],
            (config.deepspeed_config or {}).get("zero_stage"),
        )
    assert kinds == {
        "ddp": ("MULTI_GPU", None),
        "deepspeed_zero2": ("DEEPSPEED", 2),
        "deepspeed_zero3": ("DEEPSPEED", 3),
        "fsdp": ("FSDP", None),
    }
    assert load_config_from_file(str(folder / "fsdp.yaml")).fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
