"""Decoding speed: what ranking costs, and what each constrained-decoding path and setting changes.

    python benchmarks/decoding_speed.py constrained            # random catalogues of 12k, 1M and 10M items
    python benchmarks/decoding_speed.py constrained --quick    # 12k items only, under a minute
    python benchmarks/decoding_speed.py beams outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data
    OMP_NUM_THREADS=1 python benchmarks/decoding_speed.py catalogue
    python benchmarks/decoding_speed.py trainer outputs/id_schemes/rqkmeans --data_dir ../shared/data --max_users 2000
    python benchmarks/decoding_speed.py decoder                # a decoder-only Llama: fast path vs stock generate
    OMP_NUM_THREADS=1 python benchmarks/decoding_speed.py scoring outputs/p39/t5-base2 outputs/p39/peritem

- ``constrained``: no constraint, the Python reference, the vectorised trie and the fast path, side by side;
- ``beams``: one saved recommender at several beam widths: does the search find the model's top 10?
- ``catalogue``: how long the living catalogue takes to change (add, then retire, 10k of 1M items);
- ``trainer``: the trainer's evaluation of a checkpoint with each decoding method: same metrics, how long each takes;
- ``decoder``: a decoder-only model ranked by stock ``generate`` and by the fast path (each prompt run once);
- ``scoring``: saved recommenders ranking with only the trie's tokens scored, and with the whole vocabulary.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import bundle_parser, dispatch, write_record  # benchmarks/machine.py (scripts run from benchmarks/)
from transformers import GenerationConfig, T5Config, T5ForConditionalGeneration

from hf_genrec import GenerativeRecommender, GenRecConfig, GenRecTrainer, GenRecTrainingArguments, ItemTokenizer
from hf_genrec.bundle.io import load_model
from hf_genrec.data import leave_one_out, load_interactions
from hf_genrec.decoding.beam_search import shared_beam_search
from hf_genrec.decoding.generate import build_trie_index, generate_items
from hf_genrec.decoding.prefix_allowed import ItemTrie, prefix_allowed_tokens_fn
from hf_genrec.decoding.trie import TrieIndex, TrieLogitsProcessor
from hf_genrec.evaluation.metrics import ranking_metrics
from hf_genrec.models.causal_lm import build_causal_lm
from hf_genrec.models.t5 import TIGER_T5_CONFIG, build_t5_model
from hf_genrec.semantic_ids import from_codes
from hf_genrec.tokenization import minimal_t5_tokenizer
from hf_genrec.training.examples import tokenize_examples

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


def constrained(argv: list[str]) -> None:
    """Constrained beam search, side by side: no constraint, the Python reference, the vectorised trie, the fast path.

    Random catalogues of 4 code levels x 256 codes (12k, 1M and 10M items), a TIGER-sized T5 (random weights: speed does
    not depend on them), histories of 20 items (81 tokens), batch 64, 20 beams, K = 20. Writes
    ``benchmarks/results/constrained_decoding.json`` and prints a markdown table.

        python benchmarks/decoding_speed.py constrained # 12k, 1M and 10M items (about 15 minutes on 2 cores)
        python benchmarks/decoding_speed.py constrained --quick # 12k items only, under a minute

    - ``unconstrained_s``: stock ``generate`` with no constraint (the floor for any constrained method);
    - ``reference_fn_s`` (= ``stock_generate_s``): stock ``generate`` with ``prefix_allowed_tokens_fn`` over a Python trie;
    - ``vectorised_s``: stock ``generate`` with ``TrieLogitsProcessor``;
    - ``fast_path_s``: ``shared_beam_search`` (cross-attention shared by beams) with ``TrieLogitsProcessor``;
    - ``identical``: every method returned the same sequences, with scores within 1e-4 (vectorised: bit-identical).
    """
    parser = argparse.ArgumentParser(
        prog="decoding_speed.py constrained",
        description=constrained.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="The 12k catalogue only.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[12_101, 1_000_000, 10_000_000])
    parser.add_argument("--repeats", type=int, default=3, help="Timed runs per method (the median is reported).")
    parser.add_argument("--latency_requests", type=int, default=50)
    parser.add_argument("--reference_max_items", type=int, default=1_000_000,
                        help="Skip the Python reference trie above this size (10M nested dicts exceed 8 GB).")  # fmt: skip
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
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
        write_record(payload, output)  # after every catalogue: a long run keeps its progress
    print(format_table(payload))


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def beam_width(argv: list[str]) -> None:
    """Does the constrained beam search find the model's top 10? One saved recommender ranks the same validation users
    with several beam widths, alone and with its successor prior fused, and the figures and top-10 lists are compared
    with the widest search's.

        python benchmarks/decoding_speed.py beams outputs/reproduce/amazon-beauty_genrec --data-dir ../shared/data

    Beam search keeps ``num_beams`` prefixes per step, so an item whose first code tokens score low can be cut before its
    last token; a wider search cuts less. When the widest search gives the same top 10, the default width loses nothing.

    Writes ``benchmarks/results/<dataset>_beam_width.json``.
    """
    parser = bundle_parser("decoding_speed.py beams", beam_width.__doc__)
    parser.add_argument("--beams", type=ints, default=[10, 20, 50, 100], help="Comma-separated beam widths.")
    parser.add_argument("--users", type=int, default=3000, help="Random validation users (seed 0).")
    parser.add_argument("--output-dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    if min(args.beams) < 10:
        parser.error("--beams must all be at least 10: beam search returns at most num_beams items.")

    recommender = GenerativeRecommender.from_pretrained(args.bundle)
    data = load_interactions(args.dataset, args.data_dir)
    validation = leave_one_out(data, max_history=recommender.config.max_history)["validation"]
    rows = np.random.default_rng(0).choice(len(validation), size=min(args.users, len(validation)), replace=False)
    chosen = validation.select(rows)  # one read of each column, not one per user
    histories = chosen["history"][:]
    index = {item: i for i, item in enumerate(recommender.item_ids)}
    targets = np.array([index[item] for item in chosen["target"][:]])

    weights = sorted({0.0, float(recommender.config.fusion.transition_weight or 0.0)})
    results = {}
    for weight in weights:
        lists = {}
        for beams in sorted(args.beams):
            start = time.perf_counter()
            ranked = recommender.recommend(histories, k=10, num_beams=beams, transition_weight=weight)
            seconds = time.perf_counter() - start
            lists[beams] = np.array([[index[item] for item, _ in row] for row in ranked])
            results.setdefault(str(weight), {})[str(beams)] = {
                **ranking_metrics(lists[beams], targets, (5, 10)),
                "seconds": seconds,
            }
            print(f"weight {weight} beams {beams}: {results[str(weight)][str(beams)]}", flush=True)
        widest = lists[max(lists)]
        for beams, top in lists.items():
            same = np.mean([list(a) == list(b) for a, b in zip(top, widest)])
            overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top, widest)])
            results[str(weight)][str(beams)].update(
                same_top10_as_widest=float(same), overlap_with_widest=float(overlap)
            )

    record = {
        "dataset": args.dataset,
        "bundle": args.bundle,
        "validation_users": len(rows),
        "by_transition_weight_then_beams": results,
    }
    write_record(record, Path(args.output_dir) / f"{args.dataset}_beam_width.json")


def catalogue(argv: list[str]) -> None:
    """How long the living catalogue takes to change: add 10k items to a 1M-item catalogue, then retire 10k.

        OMP_NUM_THREADS=1 python benchmarks/decoding_speed.py catalogue

    Synthetic codes (3 levels of 256 codes + TIGER's collision level, drawn at random) and a tiny T5: only the
    catalogue work is timed, which does not depend on the model. "index" is the rebuild of the vectorised trie the
    constrained beam search reads (done on first use after a change). Writes ``benchmarks/results/catalog_speed.json``.
    """
    parser = argparse.ArgumentParser(
        prog="decoding_speed.py catalogue",
        description=catalogue.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--output", default="benchmarks/results/catalog_speed.json")
    args = parser.parse_args(argv)
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
    }
    write_record(result, args.output)
    print(json.dumps(result, indent=2))


def trainer_evaluation(argv: list[str]) -> None:
    """Trainer evaluation of a saved checkpoint with each constrained-decoding method: same metrics, how long each takes.

        python benchmarks/decoding_speed.py trainer outputs/amazon-beauty --data_dir ../shared/data --max_users 2000

    Writes ``benchmarks/results/trainer_evaluation.json``.
    """
    parser = argparse.ArgumentParser(
        prog="decoding_speed.py trainer",
        description=trainer_evaluation.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("checkpoint", help="A folder written by `hf-genrec train`.")
    parser.add_argument("--data_dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--max_users", type=int, default=2000, help="Test users evaluated (a fixed random sample).")
    parser.add_argument("--methods", nargs="+", default=["reference", "fast"])
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--output", default="benchmarks/results/trainer_evaluation.json")
    args = parser.parse_args(argv)

    config = GenRecConfig.from_pretrained(args.checkpoint)
    item_tokenizer = ItemTokenizer.from_pretrained(args.checkpoint)
    model = load_model(args.checkpoint).eval()  # a T5 or a decoder-only causal LM, as the bundle says
    data = load_interactions(config.dataset, args.data_dir)
    test = tokenize_examples(leave_one_out(data, max_history=config.max_history)["test"], item_tokenizer)
    if args.max_users and args.max_users < len(test):
        test = test.shuffle(seed=0).select(range(args.max_users))
    runs = {}
    for method in args.methods:
        with tempfile.TemporaryDirectory() as tmp:
            training_args = GenRecTrainingArguments(
                output_dir=tmp,
                per_device_eval_batch_size=args.batch_size,
                num_beams=config.num_beams,
                decoding_method=method,
                eval_strategy="no",
                save_strategy="no",
                load_best_model_at_end=False,
                use_cpu=not torch.cuda.is_available(),
            )
            trainer = GenRecTrainer(model=model, args=training_args, item_tokenizer=item_tokenizer)
            start = time.perf_counter()
            metrics = trainer.evaluate(test, metric_key_prefix="test")
            runs[method] = {"seconds": time.perf_counter() - start, "metrics": metrics}
        print(f"{method:<11} {runs[method]['seconds']:.1f} s  recall@10 {metrics['test_recall@10']:.4f}", flush=True)
    first = next(iter(runs.values()))["metrics"]
    ranking = [k for k in first if k.split("_", 1)[-1].split("@")[0] in ("recall", "ndcg", "mrr", "hit")]
    payload = {
        "checkpoint": args.checkpoint,
        "dataset": config.dataset,
        "users": len(test),
        "num_beams": config.num_beams,
        "batch_size": args.batch_size,
        "torch_threads": torch.get_num_threads(),
        "runs": runs,
        "same_metrics": all(abs(run["metrics"][k] - first[k]) <= 1e-9 for run in runs.values() for k in ranking),
    }
    if "reference" in runs and "fast" in runs:
        payload["speedup_fast"] = runs["reference"]["seconds"] / runs["fast"]["seconds"]
    write_record(payload, args.output)
    print(json.dumps({k: v for k, v in payload.items() if k != "runs"}, indent=2))


def decoder_only(argv: list[str]) -> None:
    """A decoder-only model (Llama, random weights) ranked by stock generate and by the fast path: same items?

        python benchmarks/decoding_speed.py decoder

    Stock ``generate`` with the `TrieLogitsProcessor` runs every prompt (the history's spelling) once per beam; the
    fast path (``generate_items(method="fast")``) runs it once and copies its key/value cache to the beams. Random
    catalogue of 4 levels x 256 codes. Writes ``benchmarks/results/decoder_decoding.json``.
    """
    parser = argparse.ArgumentParser(prog="decoding_speed.py decoder", description=decoder_only.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    for flag, default in (("--items", 2000), ("--histories", 64), ("--history_items", 20), ("--beams", 20),
                          ("--layers", 4), ("--width", 64), ("--repeats", 3)):  # fmt: skip
        parser.add_argument(flag, type=int, default=default)
    parser.add_argument("--backbone", default="llama")
    parser.add_argument("--notes", default="")
    parser.add_argument("--output", default="benchmarks/results/decoder_decoding.json")
    args = parser.parse_args(argv)
    codes = random_catalogue(args.items)[:, :LEVELS] - FIRST_CODE - CODES * np.arange(LEVELS)[None, :]
    names = [f"i{n}" for n in range(args.items)]
    ids = from_codes(codes, names, add_collision_level=False, codebook_sizes=[CODES] * LEVELS)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    model = build_causal_lm(item_tokenizer, args.backbone, d_model=args.width, num_layers=args.layers,
                            d_ff=4 * args.width, dropout=0.0).eval()  # fmt: skip
    rng = np.random.default_rng(1)
    rows = [item_tokenizer.encode_history([f"i{n}" for n in rng.integers(0, args.items, size=args.history_items)])
            for _ in range(args.histories)]  # fmt: skip
    input_ids = torch.tensor(rows)
    search = dict(num_beams=args.beams, k=args.beams, index=build_trie_index(item_tokenizer))
    seconds, found = {}, {}
    for method in ("vectorised", "fast"):
        seconds[method], found[method] = timed(
            lambda m=method: generate_items(model, item_tokenizer, input_ids, torch.ones_like(input_ids), method=m,
                                            **search), args.repeats)  # fmt: skip
        print(f"{method:<11} {seconds[method]:.2f} s", flush=True)
    record = {
        "backbone": args.backbone,
        "decoder_only": True,
        "setup": f"{args.backbone}, {args.layers} layers x {args.width} wide ({model.num_parameters():,} parameters, "
        f"random weights); {args.items:,} random items of {LEVELS} codes; {args.histories} histories of "
        f"{args.history_items} items ({input_ids.shape[1]} tokens); {args.beams} beams; K = {args.beams}; median of "
        f"{args.repeats} runs",
        "stock_generate_s": seconds["vectorised"],
        "fast_path_s": seconds["fast"],
        "speedup_fast_path": seconds["vectorised"] / seconds["fast"],
        "same_items": bool(torch.equal(found["vectorised"][0], found["fast"][0])),
        "max_score_difference": float((found["vectorised"][1] - found["fast"][1]).abs().max()),
        "methods": "stock_generate_s: generate_items(method='vectorised'), stock generate with TrieLogitsProcessor; "
        "fast_path_s: generate_items(method='fast'), each prompt run once, its cache copied to the beams",
        "notes": args.notes,
    }
    write_record(record, args.output)
    print(json.dumps(record, indent=2))


def trie_scoring(argv: list[str]) -> None:
    """What scoring only the trie's tokens saves: each saved recommender ranks the same validation users (the model
    alone, its history excluded) with the fast path as it runs, which computes the logits of only the tokens that
    continue each beam on the trie, and with the same search made to score the whole vocabulary at every step.
    Both must return the same items. Per-item collision codes (one token per item) are where it matters.

        OMP_NUM_THREADS=1 python benchmarks/decoding_speed.py scoring outputs/p39/t5-base2 outputs/p39/peritem

    Writes ``benchmarks/results/<dataset>_trie_scoring.json``.
    """
    from hf_genrec.decoding import generate as generate_module

    parser = argparse.ArgumentParser(prog="decoding_speed.py scoring", description=trie_scoring.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("bundles", nargs="+", help="Folders written by reproduce.py or `hf-genrec train`.")
    parser.add_argument("--dataset", default="amazon-beauty")
    parser.add_argument("--data-dir", default=os.environ.get("HF_GENREC_DATA_DIR"))
    parser.add_argument("--users", type=int, default=2000, help="Random validation users (seed 0).")
    parser.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    data = load_interactions(args.dataset, args.data_dir)
    search = generate_module.shared_beam_search
    results = {}
    for bundle in args.bundles:
        recommender = GenerativeRecommender.from_pretrained(bundle)
        validation = leave_one_out(data, max_history=recommender.config.max_history)["validation"]
        rows = np.random.default_rng(0).choice(len(validation), size=min(args.users, len(validation)), replace=False)
        histories = validation.select(rows)["history"][:]
        found = {}
        for scoring in ("whole vocabulary", "trie tokens"):
            if scoring == "whole vocabulary":  # the same search, without the trie it would score candidates from
                generate_module.shared_beam_search = lambda *a, **kw: search(*a, **{**kw, "index": None})
            try:
                found[scoring] = timed(
                    lambda r=recommender, h=histories: r.recommend(h, k=10, transition_weight=0.0), 1
                )
            finally:
                generate_module.shared_beam_search = search
            print(f"{bundle} {scoring}: {found[scoring][0]:.1f} s", flush=True)
        (dense_s, dense), (sparse_s, sparse) = found["whole vocabulary"], found["trie tokens"]
        results[Path(bundle).name] = {
            "bundle": bundle,
            "vocab_size": int(recommender.model.config.vocab_size),
            "per_item_codes": bool(
                recommender.item_tokenizer.semantic_ids.diagnostics.get("per_item_collision_codes")
            ),
            "whole_vocabulary_s": dense_s,
            "trie_tokens_s": sparse_s,
            "speedup": dense_s / sparse_s,
            "same_items": all([i for i, _ in a] == [i for i, _ in b] for a, b in zip(dense, sparse)),
            "max_score_difference": max(abs(x - y) for a, b in zip(dense, sparse) for (_, x), (_, y) in zip(a, b)),
        }
    record = {
        "dataset": args.dataset,
        "setup": f"{len(rows)} random validation users, 10 items each, the bundle's beams, history excluded, no prior; "
        f"one timed run per way; {torch.get_num_threads()} thread(s)",
        "bundles": results,
    }
    write_record(record, args.output or f"benchmarks/results/{args.dataset}_trie_scoring.json")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    commands = {"constrained": constrained, "beams": beam_width, "catalogue": catalogue, "trainer": trainer_evaluation}
    dispatch(__doc__, {**commands, "decoder": decoder_only, "scoring": trie_scoring})
