"""Constrained beam search, side by side: no constraint, the Python reference, the vectorised trie, the fast path.

Random catalogues of 4 code levels x 256 codes (12k, 1M and 10M items), a TIGER-sized T5 (random weights: speed does
not depend on them), histories of 20 items (81 tokens), batch 64, 20 beams, K = 20. Writes
``benchmarks/results/constrained_decoding.json`` and prints a markdown table.

    python benchmarks/constrained_decoding.py            # 12k, 1M and 10M items (about 15 minutes on 2 cores)
    python benchmarks/constrained_decoding.py --quick    # 12k items only, under a minute

- ``unconstrained_s``: stock ``generate`` with no constraint (the floor for any constrained method);
- ``reference_fn_s`` (= ``stock_generate_s``): stock ``generate`` with ``prefix_allowed_tokens_fn`` over a Python trie;
- ``vectorised_s``: stock ``generate`` with ``TrieLogitsProcessor``;
- ``fast_path_s``: ``shared_beam_search`` (cross-attention shared by beams) with ``TrieLogitsProcessor``;
- ``identical``: every method returned the same sequences, with scores within 1e-4 (vectorised: bit-identical).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from machine import describe_machine  # benchmarks/machine.py (scripts run from benchmarks/)
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from hf_genrec.decoding.beam_search import shared_beam_search
from hf_genrec.decoding.prefix_allowed import ItemTrie, prefix_allowed_tokens_fn
from hf_genrec.decoding.trie import TrieIndex, TrieLogitsProcessor
from hf_genrec.models.t5 import TIGER_T5_CONFIG

PAD, EOS, FIRST_CODE = 0, 1, 4  # token ids as in hf_genrec's minimal T5 tokenizer: pad, eos, unk, "▁", then codes
LEVELS, CODES = 4, 256


def random_catalogue(n_items: int, seed: int = 0) -> np.ndarray:
    """``[n_items, LEVELS + 1]`` distinct random spellings (level l's code c is token FIRST_CODE + 256 l + c), EOS."""
    rng = np.random.default_rng(seed)
    packed = np.unique(rng.integers(0, CODES**LEVELS, size=int(n_items * 1.01) + 1000, dtype=np.int64))
    packed = rng.permutation(packed)[:n_items]
    digits = (packed[:, None] // (CODES ** np.arange(LEVELS - 1, -1, -1))[None, :]) % CODES
    tokens = FIRST_CODE + CODES * np.arange(LEVELS)[None, :] + digits
    return np.concatenate([tokens, np.full((n_items, 1), EOS)], axis=1)


def build_model(vocab_size: int, seed: int = 0) -> T5ForConditionalGeneration:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size,
        pad_token_id=PAD,
        eos_token_id=EOS,
        decoder_start_token_id=PAD,
        feed_forward_proj="relu",
        **TIGER_T5_CONFIG,
    )
    model = T5ForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(decoder_start_token_id=PAD, pad_token_id=PAD, eos_token_id=EOS)
    return model


def histories(catalogue: np.ndarray, batch: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    rows = catalogue[rng.integers(0, len(catalogue), size=(batch, 20)), :LEVELS].reshape(batch, -1)
    input_ids = torch.from_numpy(np.concatenate([rows, np.full((batch, 1), EOS)], axis=1))
    return input_ids, torch.ones_like(input_ids)


GEN = dict(num_beams=20, num_return_sequences=20, max_new_tokens=LEVELS + 1, length_penalty=0.0, do_sample=False)


def run(method: str, model, input_ids, attention_mask, index=None, trie=None):
    if method == "fast_path":
        sequences, scores = shared_beam_search(
            model, input_ids, attention_mask, TrieLogitsProcessor(index), num_beams=20, num_return_sequences=20,
            max_new_tokens=LEVELS + 1, decoder_start_token_id=PAD, eos_token_id=EOS, pad_token_id=PAD,
        )  # fmt: skip
        return sequences[:, : LEVELS + 2], scores
    extra = {}
    if method == "vectorised":
        extra["logits_processor"] = [TrieLogitsProcessor(index)]
    elif method == "reference_fn":
        extra["prefix_allowed_tokens_fn"] = prefix_allowed_tokens_fn(trie, PAD)
    out = model.generate(
        input_ids=input_ids, attention_mask=attention_mask, early_stopping="never", return_dict_in_generate=True,
        output_scores=True, **GEN, **extra,
    )  # fmt: skip
    return out.sequences, out.sequences_scores


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        with torch.no_grad():
            result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def same(a, b, exact: bool = False) -> bool:
    seq_a, score_a = a
    seq_b, score_b = b
    width = min(seq_a.shape[1], seq_b.shape[1])
    if not torch.equal(seq_a[:, :width], seq_b[:, :width]):
        return False
    return bool(torch.equal(score_a, score_b)) if exact else bool((score_a - score_b).abs().max() <= 1e-4)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def measure(n_items: int, model, repeats: int, reference: bool, latency_requests: int) -> dict:
    catalogue = random_catalogue(n_items)
    start = time.perf_counter()
    index = TrieIndex(catalogue, model.config.vocab_size, PAD)
    build_s = time.perf_counter() - start
    row = {
        "n_items": n_items,
        "index_build_s": build_s,
        "index_bytes_per_item": index.nbytes / n_items,
        "index_key_dtype": str(index.keys.dtype).replace("torch.", ""),
    }
    input_ids, attention_mask = histories(catalogue, 64, seed=1)
    trie = None
    if reference:
        start = time.perf_counter()
        trie = ItemTrie(catalogue.tolist())
        row["reference_trie_build_s"] = time.perf_counter() - start
    methods = ["unconstrained", "vectorised", "fast_path"] + (["reference_fn"] if reference else [])
    results = {}
    for method in methods:
        row[f"{method}_s"], results[method] = timed(
            lambda m=method: run(m, model, input_ids, attention_mask, index, trie), repeats
        )
        print(f"  {n_items:>10,} items  {method:<14} {row[f'{method}_s']:.3f} s", flush=True)
    row["overhead_vectorised"] = row["vectorised_s"] / row["unconstrained_s"]
    baseline = "reference_fn" if reference else "vectorised"
    row["stock_generate_s"] = row[f"{baseline}_s"]
    row["stock_generate_method"] = baseline
    row["speedup_fast_path"] = row["stock_generate_s"] / row["fast_path_s"]
    identical = same(results["vectorised"], results["fast_path"])
    if reference:
        identical &= same(results["reference_fn"], results["vectorised"], exact=True)
    row["identical"] = bool(identical)
    if latency_requests:
        for method in ["fast_path", baseline]:
            times = []
            for i in range(latency_requests):
                one = histories(catalogue, 1, seed=100 + i)
                times.append(timed(lambda m=method, h=one: run(m, model, *h, index, trie), 1)[0] * 1000)
            row[f"batch1_{method}_ms"] = {
                "p50": float(np.percentile(times, 50)),
                "p99": float(np.percentile(times, 99)),
                "requests": latency_requests,
            }
    row["peak_rss_gb"] = peak_rss_gb()
    return row


def format_table(payload: dict) -> str:
    lines = [
        "| items | unconstrained | reference fn | vectorised | fast path | overhead (vectorised) | speedup (fast) "
        "| index B/item | identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for n, row in payload["catalogues"].items():
        reference = f"{row['reference_fn_s']:.2f} s" if "reference_fn_s" in row else "–"
        lines.append(
            f"| {int(n):,} | {row['unconstrained_s']:.2f} s | {reference} | {row['vectorised_s']:.2f} s | "
            f"{row['fast_path_s']:.2f} s | {row['overhead_vectorised']:.3f} | {row['speedup_fast_path']:.1f}x "
            f"(vs {row['stock_generate_method'].replace('_', ' ')}) | {row['index_bytes_per_item']:.1f} | "
            f"{row['identical']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="The 12k catalogue only.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[12_101, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per method (the median is reported).")
    parser.add_argument("--latency_requests", type=int, default=50)
    parser.add_argument("--reference_max_items", type=int, default=1_000_000,
                        help="Skip the Python reference trie above this size (10M nested dicts exceed 8 GB).")  # fmt: skip
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    sizes = [12_101] if args.quick else args.sizes
    repeats = 1 if args.quick else args.repeats
    latency = 10 if args.quick else args.latency_requests
    output = Path(args.output or f"benchmarks/results/constrained_decoding{'_quick' if args.quick else ''}.json")
    model = build_model(FIRST_CODE + LEVELS * CODES)
    payload = {
        "setup": (
            f"random catalogues of {LEVELS} levels x {CODES} codes; TIGER-sized T5 ({model.num_parameters():,} "
            "parameters, random weights); batch 64; histories of 20 items (81 tokens); 20 beams; K = 20; median of "
            f"{repeats} runs; batch-1 latency over {latency} requests (catalogue sizes up to 1M)"
        ),
        "machine": describe_machine(),
        "command": "python benchmarks/constrained_decoding.py" + (" --quick" if args.quick else ""),
        "catalogues": {},
    }
    for n in sizes:
        print(f"{n:,} items", flush=True)
        payload["catalogues"][str(n)] = measure(
            n,
            model,
            repeats,
            reference=n <= args.reference_max_items,
            latency_requests=latency if n <= 1_000_000 else 0,
        )
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2) + "\n")
    print(format_table(payload))


if __name__ == "__main__":
    main()
