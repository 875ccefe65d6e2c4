"""How long the living catalogue takes to change: add 10k items to a 1M-item catalogue, then retire 10k.

    OMP_NUM_THREADS=1 python benchmarks/catalog_speed.py

Synthetic codes (3 levels of 256 codes + TIGER's collision level, drawn at random) and a tiny T5: only the
catalogue work is timed, which does not depend on the model. "index" is the rebuild of the vectorised trie the
constrained beam search reads (done on first use after a change). Writes ``benchmarks/results/catalog_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from machine import describe_machine  # benchmarks/machine.py (scripts run from benchmarks/)

from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--output", default="benchmarks/results/catalog_speed.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 256, size=(args.items + args.changes, 3))
    start = time.perf_counter()
    semantic_ids = from_codes(
        codes[: args.items], [f"i{n}" for n in range(args.items)], add_collision_level=True, codebook_sizes=[256] * 3
    )
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), semantic_ids, history_eos=False)
    tiny = dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1, num_decoder_layers=1)
    rec = GenerativeRecommender(build_t5_model(item_tokenizer, seed=0, **tiny), item_tokenizer)
    rec.trie_index  # noqa: B018  (built once, as a served recommender has it)
    build_seconds = time.perf_counter() - start

    new_ids = [f"new{n}" for n in range(args.changes)]
    start = time.perf_counter()
    added = rec.add_items(new_ids, codes=codes[args.items :], if_full="skip")
    add_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rec.trie_index  # noqa: B018
    add_index_seconds = time.perf_counter() - start

    gone = [f"i{n}" for n in rng.choice(args.items, args.changes, replace=False)]
    start = time.perf_counter()
    rec.remove_items(gone)
    remove_seconds = time.perf_counter() - start
    start = time.perf_counter()
    rec.trie_index  # noqa: B018
    remove_index_seconds = time.perf_counter() - start

    result = {
        "command": "OMP_NUM_THREADS=1 python benchmarks/catalog_speed.py",
        "catalogue_items": args.items,
        "changes": args.changes,
        "added": len(added),
        "not_added_prefix_full": args.changes - len(added),
        "collision_codes": int(semantic_ids.codebook_sizes[-1]),
        "seconds": {
            "initial_build": build_seconds,
            "add_items": add_seconds,
            "add_index_rebuild": add_index_seconds,
            "add_total": add_seconds + add_index_seconds,
            "remove_items": remove_seconds,
            "remove_index_rebuild": remove_index_seconds,
            "remove_total": remove_seconds + remove_index_seconds,
        },
        "trie_index_bytes": rec.trie_index.nbytes,
        "machine": describe_machine(),
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
