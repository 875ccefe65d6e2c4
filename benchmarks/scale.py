"""Scale: semantic-ID fitting on large catalogues and data reading, with wall time and peak memory.

Every case runs in a fresh Python process, so its peak resident memory (``ru_maxrss``) is its own:

- ``ids``: residual k-means (`RQKMeans` with its defaults: 3 levels x 256 codes + the collision level, PCA to 32
  dimensions, 20 k-means iterations) on synthetic float32 features of ``--dim`` dimensions (a 64-d latent with a
  decaying spectrum, plus noise), at 100k and 1M items. ``features_mb`` is the input matrix itself; ``peak_rss_mb`` the whole
  process (Python, torch, faiss and the features included), ``fit_overhead_mb`` what fitting added to the memory held
  once the features existed.
- ``read``: `load_interactions` on Amazon Beauty and MovieLens-1M from ``--data-dir`` (skipped without it).

    OMP_NUM_THREADS=1 python benchmarks/scale.py --data-dir ../shared/data          # 100k and 1M items, both datasets
    OMP_NUM_THREADS=1 python benchmarks/scale.py --items --data-dir ../shared/data   # reading only (other cases kept)

Writes ``benchmarks/results/scale.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "scale.json"


def rss_mb() -> float:
    """Current resident memory of this process in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def synthetic_features(n_items: int, dim: int, seed: int = 0):
    """float32 ``[n_items, dim]`` like sentence embeddings: a 64-d latent with a decaying spectrum, mapped to ``dim``
    dimensions, plus noise; written chunk by chunk (no float64 copy of the matrix)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    latent = 64
    mixing = (rng.standard_normal((latent, dim)) / np.sqrt(np.arange(1, latent + 1))[:, None]).astype(np.float32)
    out = np.empty((n_items, dim), dtype=np.float32)
    for start in range(0, n_items, 65536):
        stop = min(start + 65536, n_items)
        out[start:stop] = rng.standard_normal((stop - start, latent), dtype=np.float32) @ mixing
        out[start:stop] += 0.1 * rng.standard_normal((stop - start, dim), dtype=np.float32)
    return out


def run_ids(n_items: int, dim: int, n_iter: int) -> dict:
    from hf_genrec import RQKMeans

    start = time.perf_counter()
    features = synthetic_features(n_items, dim)
    item_ids = [f"i{i}" for i in range(n_items)]
    generate_s = time.perf_counter() - start
    held_mb = rss_mb()
    start = time.perf_counter()
    ids = RQKMeans(n_levels=3, codebook_size=256, n_iter=n_iter).fit(features, item_ids)
    fit_s = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "case": "ids",
        "scheme": "rqkmeans (3 x 256 + collision level, pca_dim 32)",
        "n_items": n_items,
        "dim": dim,
        "n_iter": n_iter,
        "features_mb": round(features.nbytes / 2**20, 1),
        "generate_s": round(generate_s, 1),
        "fit_s": round(fit_s, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_before_fit_mb": round(held_mb, 1),
        "fit_overhead_mb": round(peak - held_mb, 1),
        "collision_rate_before": ids.diagnostics.get("collision_rate_before"),
        "collision_level_size": ids.codebook_sizes[-1],
    }


def run_read(dataset: str, data_dir: str) -> dict:
    from hf_genrec import load_interactions

    held_mb = rss_mb()
    start = time.perf_counter()
    data = load_interactions(dataset, data_dir, download=False)
    read_s = time.perf_counter() - start
    peak = peak_rss_mb()
    return {
        "case": "read",
        "dataset": dataset,
        "users": data.num_users,
        "items": data.num_items,
        "interactions": data.num_interactions,
        "read_s": round(read_s, 1),
        "peak_rss_mb": round(peak, 1),
        "read_overhead_mb": round(peak - held_mb, 1),
    }


def child(args: list[str]) -> dict:
    """Run one case in a fresh interpreter and return its JSON line."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"case {args} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = round(time.perf_counter() - started, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--n-iter", type=int, default=20, help="k-means iterations per level")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--datasets", nargs="*", default=["amazon-beauty", "ml-1m"])
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, *rest = args.child
        if kind == "ids":
            result = run_ids(int(rest[0]), int(rest[1]), int(rest[2]))
        else:
            result = run_read(rest[0], rest[1])
        print(json.dumps(result))
        return

    sys.path.insert(0, str(Path(__file__).parent))
    from machine import describe_machine, write_record

    results = []
    for n_items in args.items:
        results.append(child(["ids", str(n_items), str(args.dim), str(args.n_iter)]))
        print(json.dumps(results[-1]), flush=True)
    for dataset in args.datasets if args.data_dir else []:
        results.append(child(["read", dataset, args.data_dir]))
        print(json.dumps(results[-1]), flush=True)

    command = "python " + " ".join(sys.argv)
    for r in results:
        r["command"] = command
    # cases not run this time keep their earlier figures (e.g. re-measure reading without the 1M fit)
    key = lambda r: (r["case"], r.get("n_items"), r.get("dim"), r.get("dataset"))  # noqa: E731
    earlier = json.loads(Path(args.output).read_text())["results"] if Path(args.output).exists() else []
    ran = {key(r) for r in results}
    results = [r for r in earlier if key(r) not in ran] + results
    results.sort(key=lambda r: (r["case"] != "ids", r.get("n_items") or 0, r.get("dataset") or ""))
    record = {
        "machine": describe_machine(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "results": results,
        "command": command,
    }
    write_record(record, args.output)

    print("\n| case | size | wall (s) | peak RSS (MB) | input (MB) |")
    print("|---|---|---:|---:|---:|")
    for r in results:
        if r["case"] == "ids":
            print(
                f"| RQKMeans fit | {r['n_items']:,} x {r['dim']} | {r['fit_s']} | {r['peak_rss_mb']} | {r['features_mb']} |"
            )
        else:
            print(
                f"| read {r['dataset']} | {r['interactions']:,} interactions | {r['read_s']} | {r['peak_rss_mb']} | – |"
            )


if __name__ == "__main__":
    main()
