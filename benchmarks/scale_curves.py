"""Where generative retrieval pays: training, serving and memory cost against catalogue size, side by side.

For each catalogue size (synthetic, `synthetic.py`: Zipf popularity, planted successor structure) and each real
anchor (Amazon Beauty, MovieLens-1M from ``--data-dir``), every method runs in a process of its own (so each peak
memory, ``ru_maxrss``, is its own; the cases are in `scale_cases.py`):

- ``t5``: the T5 recipe (hf_genrec/recipes/amazon-default.yaml): RQKMeans semantic IDs of item features, the
  causal-encoder T5 on packed rows, GenRecTrainer with the trie-normalised loss, trie-constrained beam search;
- ``decoder``: the same with the decoder-only overlay (decoder.yaml: a 3-layer Llama on causal rows);
- ``sasrec_full``: SASRec with full-softmax cross-entropy (`train_sasrec`), every item scored at serving;
- ``sasrec_sampled``: SASRec with sampled softmax (``--negatives`` popularity-drawn negatives, logQ-corrected),
  served from FAISS indexes of its item embeddings: exact (IndexFlatIP) and HNSW (IndexHNSWFlat);
- ``examples``: many interactions on a small catalogue, the packed rows built in memory or written to an Arrow file
  and memory-mapped (``arrow_path``), then the T5 recipe trains on them: resident memory of each.

Measured per case: training seconds per 1,000 targets at a fixed budget (``--budget`` seconds) and peak memory (with
model, optimiser-state and item-table sizes), the time and memory to build what serving needs (trie, FAISS index),
bundle size on disk, ranking latency for one user (p50/p99), users per second in batches of 64, and Recall@10 of
held-out next items at that budget (with most-popular's beside it). A case whose estimated memory exceeds
``--memory-gb`` is recorded as not run, with the estimate and why; a case that fails says how.

    python benchmarks/scale_curves.py --quick --output /tmp/scale_curves_quick.json          # CI-sized, ~2 min
    python benchmarks/scale_curves.py --data-dir ../shared/data                                # the full run
    python benchmarks/scale_curves.py --methods t5 --sizes 1000000 --data-dir ../shared/data    # one cell again
    python benchmarks/scale_curves.py --plot-only benchmarks/results/scale_curves.json         # redraw the plot

Writes ``benchmarks/results/scale_curves.json`` (``--output``; cases not rerun keep their earlier figures) and the
plot ``docs/img/scale_curves.png`` (``--plot``; in quick mode beside the record), and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "scale_curves.json"
PLOT = ROOT / "docs" / "img" / "scale_curves.png"
METHODS = ("t5", "decoder", "sasrec_full", "sasrec_sampled")
#: mode -> settings; ``users`` is (the fewest, the most) users, at one user per two items in between
MODES = {
    "full": dict(sizes=[10_000, 100_000, 1_000_000, 10_000_000], users=(20_000, 500_000), length=20, budget_s=300,
                 eval_users=1000, latency_users=50, codebook_size=256, num_beams=20, examples_items=10_000,
                 examples_interactions=50_000_000, datasets=["amazon-beauty", "ml-1m"]),
    "quick": dict(sizes=[1_000, 10_000], users=(1_000, 1_000), length=12, budget_s=2, eval_users=64,
                  latency_users=5, codebook_size=16, num_beams=10, examples_items=500,
                  examples_interactions=60_000, datasets=[]),
}  # fmt: skip
#: the SASRec batch sizes tried, largest first, until the estimated memory fits
BATCHES = (128, 64, 32, 16, 8)
GB = 2**30
#: what a not-run or failed case keeps of its spec
KEPT = ("method", "dataset", "n_items", "n_users", "interactions", "storage", "batch_size", "recipe_overrides")


def estimate_bytes(spec: dict) -> dict[str, float]:
    """What a case will hold, by part (bytes), before anything is allocated. A part named ``training: ...`` is held
    only while training and one named ``serving: ...`` only after it (`peak_bytes` takes the larger phase). Costs
    per item and per interaction are rounded up from measured ones (200k items: 870 bytes per item for the T5 recipe; 600k interactions: in-memory
    packed rows took 570 bytes per interaction, Arrow-backed ones a bounded 30 MB)."""
    n, d, users, length = spec["n_items"], 64, spec.get("n_users", 0), spec.get("length", 20)
    parts = {"interpreter, torch and transformers": 1.2 * GB, "users' item rows": users * length * 8 * 4}
    method = spec["method"]
    if method in ("t5", "decoder"):  # packed rows go to an Arrow file (memory-mapped), so they are not counted
        parts["catalogue (features, ids, codes, tokenizer, trie)"] = 1000.0 * n
        parts["training: the model, its gradients and AdamW (under 1M parameters)"] = 0.3 * GB
    elif method.startswith("sasrec"):
        parts["training: item table, its gradient and AdamW's two moments"] = 16.0 * (n + 1) * d
        parts["training: rows (Python lists, then Arrow)"] = 8 * users * spec["max_positions"] * 6
        parts["serving: item table"] = 4.0 * (n + 1) * d
        if method == "sasrec_full":
            targets = spec["batch_size"] * min(length - 3, spec["max_positions"])
            parts["training: logits of a batch (targets x items, 3 copies)"] = targets * (n + 1) * 4 * 3
            parts["serving: logits of 64 users (3 copies)"] = 64 * (n + 1) * 4 * 3
        else:  # the flat index holds a copy of the table; HNSW another, plus 2M neighbour ids per item
            parts["serving: FAISS flat + HNSW indexes"] = n * (d * 4 * 2 + 32 * 2 * 4 * 1.2)
    else:  # examples: packed rows in memory (Python lists, then Arrow in memory), or one chunk of them
        parts["catalogue (features, ids, codes, tokenizer, trie)"] = 1000.0 * n
        interactions = spec["n_users"] * spec["length"]
        parts["packed rows"] = 600.0 * interactions if spec["storage"] == "memory" else 0.05 * GB
        parts["training: the T5"] = 0.3 * GB
    return parts


def peak_bytes(parts: dict[str, float]) -> float:
    """Held parts plus the larger of the training and the serving phase."""
    held = sum(v for k, v in parts.items() if not k.startswith(("training:", "serving:")))
    phases = [sum(v for k, v in parts.items() if k.startswith(phase)) for phase in ("training:", "serving:")]
    return held + max(phases)


def plan(args: argparse.Namespace, settings: dict) -> list[dict]:
    """Every case to run, as the spec its child process reads."""
    common = dict(threads=args.threads, seed=0, budget_s=args.budget or settings["budget_s"],
                  eval_users=settings["eval_users"], latency_users=settings["latency_users"],
                  codebook_size=settings["codebook_size"], num_beams=settings["num_beams"], length=settings["length"],
                  num_negatives=args.negatives, max_positions=20, data_dir=args.data_dir)  # fmt: skip
    low, high = settings["users"]
    catalogues = [dict(dataset="synthetic", n_items=n, n_users=min(high, max(low, n // 2))) for n in args.sizes]
    for name in args.datasets if args.data_dir else []:
        catalogues.append(dict(dataset=name, n_items=None))  # the dataset's own size, read in the case
    variant = {"recipe_overrides": args.overrides} if args.overrides else {}
    specs = [{**common, **catalogue, **variant, "method": m} for catalogue in catalogues for m in args.methods]
    if "examples" in args.cases:
        users = settings["examples_interactions"] // settings["length"]
        for storage in ("memory", "arrow"):
            specs.append({**common, "method": "examples", "dataset": "synthetic", "storage": storage,
                          "n_items": settings["examples_items"], "n_users": users,
                          "interactions": users * settings["length"]})  # fmt: skip
    return specs


def fit_memory(spec: dict, limit: float) -> tuple[dict, dict | None]:
    """``spec`` with the largest SASRec batch whose estimate fits ``limit`` bytes, or a not-run record saying why."""
    if spec.get("n_items") is None:  # a real dataset: small catalogues, always within reach
        return {**spec, "batch_size": BATCHES[0]}, None
    tried = BATCHES if spec["method"] == "sasrec_full" else BATCHES[:1]
    for batch in tried:
        sized = {**spec, "batch_size": batch}
        parts = estimate_bytes(sized)
        if peak_bytes(parts) <= limit:
            return sized, None
    need = peak_bytes(parts)
    biggest = max(parts, key=parts.get)
    smallest = f" even at a batch of {tried[-1]} users" if len(tried) > 1 else ""
    return sized, {
        **{k: spec[k] for k in KEPT if k in spec},
        "status": "not run",
        "estimated_gb": round(need / GB, 1),
        "reason": f"needs about {need / GB:.1f} GB{smallest} (largest part: {biggest}, {parts[biggest] / GB:.1f} GB); "
        f"this run allows {limit / GB:.1f} GB",
    }


def run_child(spec: dict) -> dict:
    """Run one case in a fresh interpreter and return its measurements, or a record of how it failed."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(HERE)])}
    env.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip
    wall = round(time.perf_counter() - started, 1)
    if done.returncode != 0:
        why = "killed (out of memory?)" if done.returncode in (-9, 137) else f"exit status {done.returncode}"
        tail = done.stderr.strip().splitlines()[-3:]
        return {**{k: spec[k] for k in KEPT if k in spec}, "status": "failed", "reason": f"{why}: {' | '.join(tail)}",
                "process_wall_s": wall}  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    return result


def case_key(r: dict) -> tuple:
    size = r.get("n_items") if r["dataset"] == "synthetic" else None
    return (r["method"], r["dataset"], size, r.get("storage"), json.dumps(r.get("recipe_overrides"), sort_keys=True))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI-sized: two small catalogues, a 2-second budget.")
    parser.add_argument("--sizes", type=int, nargs="*", help="Synthetic catalogue sizes (default: the mode's).")
    parser.add_argument("--methods", nargs="*", default=list(METHODS), choices=METHODS)
    parser.add_argument("--cases", nargs="*", default=["catalogues", "examples"], choices=["catalogues", "examples"])
    parser.add_argument("--datasets", nargs="*", help="Real anchors read from --data-dir (default: the mode's).")
    parser.add_argument("--data-dir", default=None, help="Folder of the real datasets (none: synthetic only).")
    parser.add_argument("--budget", type=float, help="Training seconds per case (default: 300, quick: 2).")
    parser.add_argument("--negatives", type=int, default=256, help="Negatives per step of the sampled softmax.")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--memory-gb", type=float, help="Memory a case may use (default: 80%% of MemTotal).")
    parser.add_argument("--output", help="The record (default: benchmarks/results/scale_curves.json, or "
                        "scale_curves_quick.json with --quick).")  # fmt: skip
    parser.add_argument("--plot", help="The PNG (default: docs/img/scale_curves.png, or beside the record).")
    parser.add_argument("--plot-only", metavar="RECORD", help="Only redraw the plot of an existing record.")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="A variant of the generative recipes (e.g. item_positions=false), recorded as its own "
        "cases beside the recipe's; repeat for several keys.",
    )
    parser.add_argument("--note", help="What the record should say about how it was run (e.g. a busy machine).")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        from scale_cases import run_case

        print(json.dumps(run_case(json.loads(args.child))))
        return
    if args.plot_only:
        from scale_plot import plot_record

        record = json.loads(Path(args.plot_only).read_text())
        print(f"wrote {plot_record(record, args.plot or PLOT)}")
        return

    from machine import invocation, write_record

    if args.overrides:
        from scale_cases import parse_overrides

        if set(args.methods) - {"t5", "decoder"}:
            raise SystemExit("--set changes the generative recipes only: pass --methods t5 and/or decoder with it.")
        if "examples" in args.cases:
            raise SystemExit("--set changes the catalogue cases only: pass --cases catalogues with it.")
        args.overrides = parse_overrides(args.overrides)
    mode = "quick" if args.quick else "full"
    settings = MODES[mode]
    args.sizes = settings["sizes"] if args.sizes is None else args.sizes
    args.datasets = settings["datasets"] if args.datasets is None else args.datasets
    if "catalogues" not in args.cases:
        args.sizes, args.datasets = [], []
    output = Path(args.output or (RESULTS.with_name("scale_curves_quick.json") if args.quick else RESULTS))
    plot_path = Path(args.plot or (output.with_suffix(".png") if args.quick else PLOT))
    limit = (args.memory_gb * GB) if args.memory_gb else 0.8 * mem_total()
    started = time.perf_counter()
    command = invocation()
    earlier = json.loads(output.read_text()).get("results", []) if output.exists() else []
    results, record = [], None
    for spec in plan(args, settings):
        spec, skipped = fit_memory(spec, limit)
        result = skipped or run_child(spec)
        results.append(result)
        print(json.dumps(result), flush=True)
        # written after every case, so a long invocation stopped part-way keeps what it measured
        record = merged_record(args, mode, settings, limit, earlier, results, command, started)
        write_record(record, output)
    if record is None:
        raise SystemExit("Nothing to run: pass --sizes, --datasets (with --data-dir) or --cases examples.")
    from scale_plot import plot_record, table

    print(f"wrote {plot_record(record, plot_path)}")
    print(table(record))


def merged_record(
    args,
    mode: str,
    settings: dict,
    limit: float,
    earlier: list[dict],
    results: list[dict],
    command: str,
    started: float,
) -> dict:
    """The record: the cases measured now (each stamped with this ``command``) over the ``earlier`` record's others.
    A record grows over several invocations (sizes run apart), so each case keeps the command that measured it."""
    from machine import describe_machine

    results = [{**r, "command": command} for r in results]
    ran = {case_key(r) for r in results}
    results = [r for r in earlier if case_key(r) not in ran] + results
    return {
        "mode": mode,
        # what the record holds, over every invocation that added to it
        "settings": {**settings, "sizes": sorted({r["n_items"] for r in results if r["dataset"] == "synthetic"
                                                  and r["method"] != "examples"}),
                     "datasets": sorted({r["dataset"] for r in results if r["dataset"] != "synthetic"}),
                     "budget_s": args.budget or settings["budget_s"], "negatives": args.negatives,
                     "threads": args.threads, "memory_limit_gb": round(limit / GB, 1)},
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "note": args.note,
        "wall_s": round(time.perf_counter() - started, 1),
        "results": results,
        "command": command,
        "commands": list(dict.fromkeys(r["command"] for r in results if r.get("command"))),
        "machine": describe_machine(),
    }  # fmt: skip


def mem_total() -> float:
    """This machine's memory in bytes."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return 16.0 * GB


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
