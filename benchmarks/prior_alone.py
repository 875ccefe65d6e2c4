"""The successor prior alone as a recommender, on validation users, for several pseudo-counts
(`ItemTransitions.shrinkage`): which counts-to-probabilities rule ranks best, with no model involved.

    python benchmarks/prior_alone.py --data-dir ../shared/data --dataset amazon-beauty --shrinkages 0,10,30,100,1000

Each user is ranked as `hf-genrec train`'s ``successor_prior`` baseline ranks test users: the successors of the
last 3 history items (window 3), then the most popular items, never an item of the history. The counts come from
the training part of each sequence only. Writes ``benchmarks/results/<dataset>_prior_alone.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
from machine import describe_machine, write_record  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.data.splits import training_part
from hf_genrec.evaluation.baselines import MostPopular
from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.prior import ItemTransitions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--shrinkages", default="0,10,30,100,1000")
    parser.add_argument("--window", type=int, default=3)
    parser.add_argument("--recent", type=int, default=3)
    parser.add_argument("--split", choices=["validation", "test"], default="validation")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args()

    data = load_interactions(args.dataset, args.data_dir)
    train = training_part(data.sequences["item_ids"][:])
    index = {item: row for row, item in enumerate(data.items["item_id"][:])}
    rows = [[index[i] for i in s] for s in train]
    popular = MostPopular(index).fit(train)
    examples = leave_one_out(data, max_history=20)[args.split]
    histories = [[index[i] for i in h] for h in examples["history"][:]]
    targets = np.array([index[t] for t in examples["target"][:]])
    results = {}
    for shrinkage in [float(x) for x in args.shrinkages.split(",")]:
        start = time.perf_counter()
        prior = ItemTransitions.fit(rows, len(index), window=args.window, shrinkage=shrinkage)
        ranked = prior.predict(histories, 10, recent=args.recent, fallback=popular.ranking, exclude=histories)
        metrics = ranking_metrics(ranked, targets, (5, 10))
        results[str(shrinkage)] = {**metrics, "seconds": round(time.perf_counter() - start, 1)}
        print(f"shrinkage {shrinkage}: { {k: round(v, 4) for k, v in metrics.items()} }", flush=True)
    record = {
        "dataset": args.dataset,
        "split": args.split,
        "users": len(targets),
        "window": args.window,
        "recent_items": args.recent,
        "by_shrinkage": results,
        "command": "python benchmarks/prior_alone.py " + " ".join(sys.argv[1:]),
        "machine": describe_machine(),
    }
    out = Path(args.output_dir) / f"{args.dataset}_prior_alone.json"
    write_record(record, out)


if __name__ == "__main__":
    main()
