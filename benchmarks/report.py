"""Generate ``benchmarks/README.md`` and the README's headline results table from the records, never by hand.

    python benchmarks/report.py            # writes benchmarks/README.md, benchmarks/results/archive/INDEX.md and
                                           # the block between README.md's results markers
    python benchmarks/report.py --check    # exits 1 if any of the three on disk differs from what the records give

One section per question (one script each: reproduce, paired, fusion_search, decoding_speed, training_speed,
id_schemes, cold_start, scale, serve_load), each a table of the current records in ``benchmarks/results/`` with every
record's command, machine and date. Superseded records sit in ``benchmarks/results/archive/``; ``archive/index.json`` says
what each measured and what replaced it, and ``archive/INDEX.md`` is generated from it. Published rows are quoted
from their sources: TIGER's Table 1 (Rajput et al., NeurIPS 2023) for Amazon Beauty, and the HSTU repository's
MovieLens-1M table (Zhai et al., ICML 2024) for ML-1M.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MARK_START = re.compile(r"<!-- results:start[^>]*-->")
MARK_END = "<!-- results:end -->"

#: published figures: (label, {metric: value}); "–" where the source gives none
PUBLISHED = {
    "amazon-beauty": [
        ("SASRec (as reported by TIGER)", {"recall@5": 0.0387, "ndcg@5": 0.0249, "recall@10": 0.0605, "ndcg@10": 0.0318}),
        ("S3-Rec (as reported by TIGER)", {"recall@5": 0.0387, "ndcg@5": 0.0244, "recall@10": 0.0647, "ndcg@10": 0.0327}),
        ("TIGER (paper; 200k steps on accelerators)", {"recall@5": 0.0454, "ndcg@5": 0.0321, "recall@10": 0.0648, "ndcg@10": 0.0384}),
    ],
    "ml-1m": [
        ("SASRec (HSTU repository)", {"recall@10": 0.2853, "ndcg@10": 0.1603}),
        ("HSTU-large (HSTU repository)", {"recall@10": 0.3294, "ndcg@10": 0.1893}),
    ],
}  # fmt: skip
METRICS = ("recall@5", "ndcg@5", "recall@10", "ndcg@10")
DATASETS = ("ml-100k", "ml-1m", "amazon-beauty")

#: the headline: per dataset, (what, record, where in it: `test`, a baseline, or `metrics.<bundle>` of a paired
#: record, whose bundles were ranked alone or fused). Each row is the record that measured the recipe as
#: hf_genrec/recipes/ ships it now (width 64, 2+1 layers, prior with pseudo-count 30); where no record of the current
#: recipe exists (the hybrid on ML-100K ran at width 128) there is no row.
HEADLINE = {
    "ml-100k": [
        ("hf_genrec, recipe `ml-100k`", "amd-epyc/ml-100k_quickstart_width-64.json", "test"),
        ("hf_genrec decoder-only, `ml-100k` + `decoder` (Llama)", "ml-100k_decoder-recipe.json", "test"),
        ("the T5 of recipe `ml-100k` alone (no prior)", "ml-100k_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/ml-100k_t5"),
        ("the decoder-only Llama alone (no prior)", "ml-100k_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/ml-100k_decoder"),
        ("successor prior alone", "amd-epyc/ml-100k_quickstart_width-64.json", "baselines.successor_prior"),
        ("most popular", "amd-epyc/ml-100k_quickstart_width-64.json", "baselines.most_popular"),
    ],
    "ml-1m": [
        ("hf_genrec, recipe `ml-1m`", "amd-epyc/ml-1m_20min_width-64.json", "test"),
        ("hf_genrec decoder-only, `ml-1m` + `decoder` (Llama)", "ml-1m_decoder-recipe.json", "test"),
        ("hf_genrec hybrid, `ml-1m` + `hybrid`", "amd-epyc/ml-1m_hybrid-recipe_width-64.json", "test"),
        ("the T5 of recipe `ml-1m` alone (no prior)", "ml-1m_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/ml-1m_t5"),
        ("the decoder-only Llama alone (no prior)", "ml-1m_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/ml-1m_decoder"),
        ("SASRec (`reproduce.py --model sasrec`)", "ml-1m_sasrec.json", "test"),
        ("SASRec + the successor prior", "ml-1m_sasrec.json", "successor_prior_fusion.test"),
        ("successor prior alone", "amd-epyc/ml-1m_20min_width-64.json", "baselines.successor_prior"),
        ("most popular", "amd-epyc/ml-1m_20min_width-64.json", "baselines.most_popular"),
    ],
    "amazon-beauty": [
        ("hf_genrec, recipe `amazon-beauty` (= `amazon-default`)", "amazon-beauty.json", "test"),
        ("hf_genrec decoder-only, `amazon-beauty` + `decoder` (Llama)", "amazon-beauty_decoder-recipe.json", "test"),
        ("hf_genrec hybrid, `amazon-beauty` + `hybrid`", "amd-epyc/amazon-beauty_hybrid-recipe_width-64.json", "test"),
        ("the T5 of recipe `amazon-beauty` alone (no prior)", "amazon-beauty_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/amazon-beauty_t5"),
        ("the decoder-only Llama alone (no prior)", "amazon-beauty_t5-vs-decoder_model-alone.json", "metrics.outputs/b40/amazon-beauty_decoder"),
        ("SASRec (`reproduce.py --model sasrec`)", "amazon-beauty_sasrec.json", "test"),
        ("SASRec + the successor prior", "amazon-beauty_sasrec.json", "successor_prior_fusion.test"),
        ("successor prior alone", "amazon-beauty.json", "baselines.successor_prior"),
        ("most popular", "amazon-beauty.json", "baselines.most_popular"),
    ],
}  # fmt: skip
#: the papers' rows shown beside ours in the headline
HEADLINE_PUBLISHED = {
    "amazon-beauty": [("TIGER (paper; 200k steps on accelerators)", "published"), ("SASRec (as reported by TIGER)", "published")],
    "ml-1m": [("SASRec (HSTU repository)", "published"), ("HSTU-large (HSTU repository)", "published")],
}  # fmt: skip

#: scripts merged into today's (issue 38): a record's command is shown as the command that reruns it now
RENAMED = {
    "hybrid_paired.py": "paired.py hybrid",
    "paired_bundles.py": "paired.py bundles",
    "validation_vs_test.py": "paired.py splits",
    "weight_average.py": "paired.py averaged",
    "transition_fusion.py": "fusion_search.py grid",
    "prior_alone.py": "fusion_search.py prior-alone",
    "constrained_decoding.py": "decoding_speed.py constrained",
    "beam_width.py": "decoding_speed.py beams",
    "catalog_speed.py": "decoding_speed.py catalogue",
    "trainer_evaluation.py": "decoding_speed.py trainer",
    "training_step.py": "training_speed.py step",
    "training_throughput.py": "training_speed.py throughput",
}
#: (question, heading, script) in the order of benchmarks/README.md
QUESTIONS = [
    ("reproduce", "Quality on a CPU budget: the recipes, their variants and the baselines", "reproduce.py"),
    ("paired", "Paired comparisons, user by user", "paired.py"),
    ("fusion", "Fusion search: the successor prior's settings", "fusion_search.py"),
    ("decoding", "Decoding speed", "decoding_speed.py"),
    ("training", "Training speed", "training_speed.py"),
    ("id_schemes", "Item-ID schemes", "id_schemes.py"),
    ("cold_start", "Cold-start items", "cold_start.py"),
    ("scale", "Scale: a million items, and reading the data", "scale.py"),
    ("scale_curves", "Where generative retrieval pays: cost against catalogue size", "scale_curves.py"),
    ("serving", "Serving over HTTP: throughput and latency under load", "serve_load.py"),
]


# ---------------------------------------------------------------------------------------------------- records


def load_records(results_dir: Path) -> dict[str, dict]:
    """Every current record (not under ``archive/``), by its path relative to ``results_dir``."""
    records = {}
    for path in sorted(results_dir.rglob("*.json")):
        rel = path.relative_to(results_dir).as_posix()
        if rel.startswith("archive/"):
            continue
        record = json.loads(path.read_text())
        missing = [key for key in ("command", "machine", "date") if key not in record]
        if missing:
            raise SystemExit(f"{path} has no {', '.join(missing)}: every current record says what made it, where and "
                             "when (write it with benchmarks/machine.py's write_record, or archive it).")  # fmt: skip
        records[rel] = record
    return records


def current_command(command: str) -> str:
    """``command`` with a merged script's name replaced by today's script and subcommand."""
    for old, new in RENAMED.items():
        command = re.sub(rf"(python\s+(?:\S*/)?){re.escape(old)}", lambda m, new=new: m.group(1) + new, command)
    return command


def question_of(record: dict) -> str:
    """Which question a record answers, from the script (as renamed) its command ran."""
    command = current_command(record["command"])
    for question, _, script in QUESTIONS:
        if re.search(rf"(^|[\s/]){re.escape(script)}(\s|$)", command):
            return question
    return "reproduce" if "hf-genrec train" in command else "other"


def dig(record: dict, where: str):
    for key in where.split("."):
        record = record.get(key) if isinstance(record, dict) else None
    return record


def short_machine(machine: str) -> str:
    """The CPU part of a machine line ('AMD EPYC', 'Intel(R) Xeon(R) Processor' -> 'Intel Xeon')."""
    cpu = machine.split(",")[0].replace("(R)", "").replace(" Processor", "").strip()
    return re.sub(r"\s+", " ", cpu)


def fmt(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


def link(rel: str, prefix: str = "results/") -> str:
    return f"[`{rel}`]({prefix}{rel})"


def training_note(record: dict) -> str:
    """Minutes of training and epochs, as far as the record says."""
    minutes = record.get("train_minutes")
    parts = [f"{minutes:.0f} min" if isinstance(minutes, (int, float)) else ""]
    if isinstance(record.get("epochs"), (int, float)):
        parts.append(f"{record['epochs']:.1f} epochs")
    if isinstance(record.get("ensemble"), int):
        parts.append(f"{record['ensemble']} runs")
    return ", ".join(p for p in parts if p) or "–"


def budget_note(record: dict) -> str:
    """The run's whole training budget (a hybrid's SASRec included), else the minutes it trained."""
    return minutes_note(record.get("budget_minutes") or record.get("train_minutes"))


def minutes_note(minutes) -> str:
    return f"{minutes:.0f} min" if isinstance(minutes, (int, float)) else "–"


def headline_budget(record: dict, where: str) -> str:
    """A headline row's budget: its run's, or, for a bundle a paired record ranked (``metrics.<bundle>``), the
    minutes that bundle trained; a baseline has none."""
    if where in ("test", "successor_prior_fusion.test"):  # a model, alone or with the prior fused at ranking
        return budget_note(record)
    if where.startswith("metrics."):
        return minutes_note((record.get("train_minutes") or {}).get(where.removeprefix("metrics.")))
    return "–"


def provenance(rels: list[str], records: dict[str, dict]) -> str:
    """One line per record: its command (as it runs now), machine and date, with where a backfilled field came from."""
    lines = []
    for rel in rels:
        record = records[rel]
        notes = [f"{key} from {record[key + '_source']}" for key in ("command", "machine", "date")
                 if record.get(key + "_source")]  # fmt: skip
        command = current_command(record["command"])
        ran = "" if command == record["command"] else f" (ran as `{record['command']}`)"
        note = f"; {'; '.join(notes)}" if notes else ""
        if len(record.get("commands") or []) > 1:  # a record grown over several invocations names each
            command, ran = "` then `".join(current_command(c) for c in record["commands"]), ""
        lines.append(f"- {link(rel)}: `{command}`{ran}. {record['machine']}, {record['date']}{note}.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------- tables


def metrics_row(cells: list[str], metrics: dict | None, tail: list[str]) -> str:
    values = [fmt((metrics or {}).get(m)) for m in METRICS]
    return "| " + " | ".join([*cells, *values, *tail]) + " |"


def headline_table(records: dict[str, dict], link_prefix: str = "benchmarks/") -> str:
    """The README's table: a row per shipped recipe and baseline with a record, the papers' rows beside them."""
    lines = [
        "| dataset | what | Recall@10 | NDCG@10 | budget |",
        "|---|---|---:|---:|---|",
    ]
    for dataset in DATASETS:
        for what, rel, where in HEADLINE.get(dataset, []):
            record = records.get(rel)
            metrics = dig(record, where) if record else None
            if not metrics:
                continue
            budget = headline_budget(record, where)
            lines.append(f"| {dataset} | {what} | {fmt(metrics.get('recall@10'))} | {fmt(metrics.get('ndcg@10'))} | "
                         f"{budget} |")  # fmt: skip
        published = dict(PUBLISHED.get(dataset, []))
        for label, note in HEADLINE_PUBLISHED.get(dataset, []):
            metrics = published[label]
            lines.append(f"| {dataset} | {label} | {fmt(metrics.get('recall@10'))} | {fmt(metrics.get('ndcg@10'))} | "
                         f"{note} |")  # fmt: skip
    lines.append("")
    lines.append(
        "Leave-one-out, full ranking over every item, all test users, history items never ranked; our rows on a "
        f"2-core CPU. Each row's record, command, machine and date: [benchmarks/README.md]({link_prefix}README.md)."
    )
    return "\n".join(lines)


def reproduce_section(rels: list[str], records: dict[str, dict]) -> str:
    out = []
    for dataset in sorted({records[r].get("dataset") or "?" for r in rels}, key=lambda d: (d not in DATASETS, d)):
        mine = [
            r
            for r in rels
            if (records[r].get("dataset") or "?") == dataset and isinstance(records[r].get("test"), dict)
        ]
        if not mine:
            continue
        lines = [f"#### {dataset}", "", "| record | model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 | training | machine | date |",
                 "|---|---|---:|---:|---:|---:|---|---|---|"]  # fmt: skip
        for label, metrics in PUBLISHED.get(dataset, []):
            lines.append(metrics_row(["published", label], metrics, ["–", "–", "–"]))
        for rel in mine:
            record = records[rel]
            model = record.get("model") or "genrec"
            if record.get("scorer_weight") is not None:
                model = "hybrid"
            fused = record.get("transition_weight")
            model += f", prior {fused:g}" if isinstance(fused, (int, float)) and fused else ""
            tail = [training_note(record), short_machine(record["machine"]), record["date"]]
            lines.append(metrics_row([link(rel), model], record["test"], tail))
            fusion = record.get("successor_prior_fusion")
            if isinstance(fusion, dict) and isinstance(fusion.get("test"), dict):
                label = f"sasrec, prior {fusion.get('transition_weight', 0):g}"
                lines.append(metrics_row([link(rel), label], fusion["test"], tail))
        baseline_of = next((r for r in mine if isinstance(records[r].get("baselines"), dict)), None)
        if baseline_of:
            for name, metrics in records[baseline_of]["baselines"].items():
                if isinstance(metrics, dict) and name in ("most_popular", "successor_prior"):
                    lines.append(metrics_row([link(baseline_of), name.replace("_", " ")], metrics, ["–", "–", "–"]))
        out.append("\n".join(lines))
    return "\n\n".join(out)


def paired_section(rels: list[str], records: dict[str, dict]) -> str:
    lines = ["| record | first | minus | users | Δ Recall@10 | Δ NDCG@10 |", "|---|---|---|---:|---:|---:|"]
    gaps = ["| record | split | users | Recall@10 | NDCG@10 | (last item → target) seen in training |",
            "|---|---|---:|---:|---:|---:|"]  # fmt: skip

    def diff(d: dict, metric: str) -> str:
        entry = d.get(metric) or {}
        return f"{entry['mean']:+.4f} ± {entry['standard_error']:.4f}" if "mean" in entry else "–"

    for rel in rels:
        record = records[rel]
        for key, value in record.items():
            if key.endswith("_minus") and isinstance(value, dict):
                first = key[: -len("_minus")]
                for other, d in value.items():
                    lines.append(f"| {link(rel)} | {first} | {other} | {record.get('users', '–')} | "
                                 f"{diff(d, 'recall@10')} | {diff(d, 'ndcg@10')} |")  # fmt: skip
        users = str(record.get("users", "–"))
        if record.get("split"):  # paired.py bundles --split: the users ranked, and the models alone or fused
            alone = record.get("transition_weight") == 0
            users += f" {record['split']}, {'models alone' if alone else 'fused'}"
        for other, d in (record.get("minus_first") or {}).items():
            first = next(iter(record.get("metrics") or {}), "first bundle")
            lines.append(f"| {link(rel)} | {Path(other).name} | {Path(first).name} | {users} | "
                         f"{diff(d, 'recall@10')} | {diff(d, 'ndcg@10')} |")  # fmt: skip
        for split, value in (record.get("splits") or {}).items():
            if isinstance(value, dict) and "averaged_minus_raw" in value:
                d = value["averaged_minus_raw"]
                lines.append(f"| {link(rel)} | averaged ({split}) | raw | {value.get('users', '–')} | "
                             f"{diff(d, 'recall@10')} | {diff(d, 'ndcg@10')} |")  # fmt: skip
            elif isinstance(value, dict) and "averaged" in value:
                for name in ("averaged", "raw"):
                    m = value[name]
                    gaps.append(f"| {link(rel)} | {split}, {name} weights | {value.get('users', '–')} | "
                                f"{fmt(m.get('recall@10'))} | {fmt(m.get('ndcg@10'))} | – |")  # fmt: skip
            elif isinstance(value, dict) and "metrics" in value:
                m = value["metrics"]
                gaps.append(f"| {link(rel)} | {split} | {value.get('users', '–')} | {fmt(m.get('recall@10'))} | "
                            f"{fmt(m.get('ndcg@10'))} | {fmt(value.get('transition_in_training'))} |")  # fmt: skip
    parts = ["Mean per-user difference (first minus the other) ± its standard error:", "", "\n".join(lines)]
    if len(gaps) > 2:
        parts += [
            "",
            "One bundle on both splits (`paired.py splits`), and averaged against raw weights:",
            "",
            "\n".join(gaps),
        ]
    return "\n".join(parts)


def fusion_section(rels: list[str], records: dict[str, dict]) -> str:
    grid = ["| record | validation users | best weight / smoothing / shrinkage | validation NDCG@10 at best | test Recall@10 / NDCG@10, prior off | at best |",
            "|---|---:|---|---:|---|---|"]  # fmt: skip
    alone = ["| record | split | users | NDCG@10 by pseudo-count |", "|---|---|---:|---|"]
    for rel in rels:
        record = records[rel]
        if "grid" in record:
            best = record["best"]
            picked = [row for row in record["grid"] if all(row.get(k) == best[k] for k in best)]
            test = record.get("test", {})

            def pair(weight, test=test) -> str:
                m = (test.get(str(weight)) or {}).get("metrics") or {}
                return f"{fmt(m.get('recall@10'))} / {fmt(m.get('ndcg@10'))}"

            grid.append(f"| {link(rel)} | {record.get('validation_users', '–')} | {best['weight']:g} / {best['smoothing']:g} / "
                        f"{best.get('shrinkage', 0):g} | {fmt(picked[0]['metrics']['ndcg@10']) if picked else '–'} | {pair(0.0)} | "
                        f"{pair(best['weight'])} |")  # fmt: skip
        if "by_shrinkage" in record:
            cells = ", ".join(f"{float(k):g}: {fmt(v.get('ndcg@10'))}" for k, v in record["by_shrinkage"].items())
            alone.append(f"| {link(rel)} | {record.get('split', '–')} | {record.get('users', '–')} | {cells} |")
    return "\n".join(
        [
            "\n".join(grid),
            "",
            "The prior alone as a recommender (`fusion_search.py prior-alone`):",
            "",
            "\n".join(alone),
        ]
    )


def decoding_section(rels: list[str], records: dict[str, dict]) -> str:
    parts = []
    for rel in rels:
        record = records[rel]
        if "catalogues" in record:
            lines = ["| items | unconstrained | reference fn | vectorised | fast path | speed-up (fast) | index B/item | identical |",
                     "|---:|---:|---:|---:|---:|---|---:|---|"]  # fmt: skip
            for n, row in record["catalogues"].items():
                lines.append(f"| {int(n):,} | {fmt(row.get('unconstrained_s'), 2)} s | {fmt(row.get('reference_fn_s'), 2)} s | "
                             f"{fmt(row.get('vectorised_s'), 2)} s | {fmt(row.get('fast_path_s'), 2)} s | "
                             f"{fmt(row.get('speedup_fast_path'), 1)}x over {row.get('stock_generate_method', '–')} | "
                             f"{fmt(row.get('index_bytes_per_item'), 1)} | {row.get('identical', '–')} |")  # fmt: skip
            parts.append(f"Constrained beam search, {link(rel)} ({record.get('setup', '')}):\n\n" + "\n".join(lines))
        elif "by_transition_weight_then_beams" in record:
            lines = ["| prior weight | beams | Recall@10 | NDCG@10 | same top 10 as the widest | seconds |",
                     "|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
            for weight, by_beams in record["by_transition_weight_then_beams"].items():
                for beams, m in by_beams.items():
                    lines.append(f"| {float(weight):g} | {beams} | {fmt(m.get('recall@10'))} | {fmt(m.get('ndcg@10'))} | "
                                 f"{fmt(m.get('same_top10_as_widest'), 3)} | {fmt(m.get('seconds'), 1)} |")  # fmt: skip
            parts.append(
                f"Beam width, {link(rel)} ({record.get('validation_users')} validation users):\n\n" + "\n".join(lines)
            )
        elif "catalogue_items" in record:
            seconds = record["seconds"]
            cells = ", ".join(f"{k.replace('_', ' ')} {v:.2f} s" for k, v in seconds.items())
            parts.append(f"Living catalogue, {link(rel)}: {record['changes']:,} changes to {record['catalogue_items']:,} "
                         f"items: {cells}.")  # fmt: skip
        elif "runs" in record and "same_metrics" in record:
            cells = ", ".join(f"{name} {run['seconds']:.1f} s" for name, run in record["runs"].items())
            parts.append(f"Trainer evaluation by decoding method, {link(rel)} ({record.get('users')} users, "
                         f"{record.get('num_beams')} beams): {cells}; same metrics: {record['same_metrics']}.")  # fmt: skip
        elif "bundles" in record and "setup" in record:  # decoding_speed.py scoring
            lines = ["| bundle | per-item codes | vocabulary | whole vocabulary (s) | trie's tokens (s) | speed-up | same items |",
                     "|---|---|---:|---:|---:|---:|---|"]  # fmt: skip
            for name, row in record["bundles"].items():
                lines.append(f"| {name} | {row['per_item_codes']} | {row['vocab_size']:,} | {fmt(row['whole_vocabulary_s'], 1)} | "
                             f"{fmt(row['trie_tokens_s'], 1)} | {fmt(row['speedup'], 1)}x | {row['same_items']} |")  # fmt: skip
            parts.append(
                f"Ranking with the trie's tokens only, {link(rel)} ({record['setup']}):\n\n" + "\n".join(lines)
            )
        elif record.get("decoder_only"):
            parts.append(f"Decoder-only model, {link(rel)} ({record.get('setup', '')}): stock generate "
                         f"{fmt(record.get('stock_generate_s'), 2)} s, fast path {fmt(record.get('fast_path_s'), 2)} s "
                         f"({fmt(record.get('speedup_fast_path'), 1)}x); same items: {record.get('same_items')}, "
                         f"largest score difference {record.get('max_score_difference')}. {record.get('notes', '')}")  # fmt: skip
    return "\n\n".join(parts)


def training_section(rels: list[str], records: dict[str, dict]) -> str:
    steps = [r for r in rels if "targets_per_second" in records[r]]
    throughput = [r for r in rels if "runs" in records[r] and "speedup" in records[r]]
    parts = []
    for title, mine, key, unit in (("Training step (`training_speed.py step`), targets per second", steps, "targets_per_second", None),
                                   ("Whole Trainer runs (`training_speed.py throughput`), next-item targets per second", throughput, "runs", "sequences_per_second")):  # fmt: skip
        if not mine:
            continue
        variants = list(dict.fromkeys(v for r in mine for v in records[r][key]))
        lines = ["| variant | " + " | ".join(link(r) for r in mine) + " |", "|---|" + "---:|" * len(mine)]
        for variant in variants:
            values = [records[r][key].get(variant) for r in mine]
            values = [v.get(unit) if unit and isinstance(v, dict) else v for v in values]
            lines.append(f"| {variant} | " + " | ".join(fmt(v, 0) for v in values) + " |")
        parts.append(f"{title}:\n\n" + "\n".join(lines))
    return "\n\n".join(parts)


def id_schemes_section(rels: list[str], records: dict[str, dict]) -> str:
    parts = []
    for rel in rels:
        record = records[rel]
        lines = [
            "| scheme | Recall@10 | NDCG@10 | build (s) | collisions before the extra level |",
            "|---|---:|---:|---:|---:|",
        ]
        for name, row in record.get("schemes", {}).items():
            test = row.get("test") or {}
            lines.append(f"| {name} | {fmt(test.get('recall@10'))} | {fmt(test.get('ndcg@10'))} | "
                         f"{fmt(row.get('build_seconds'), 1)} | {fmt(row.get('collision_rate_before'), 3)} |")  # fmt: skip
        popular = record.get("most_popular") or {}
        lines.append(f"| most popular | {fmt(popular.get('recall@10'))} | {fmt(popular.get('ndcg@10'))} | – | – |")
        parts.append(f"{link(rel)} ({record.get('dataset')}; {json.dumps(record.get('budget', {}).get('epochs'))} epochs "
                     "of the same T5 per scheme):\n\n" + "\n".join(lines))  # fmt: skip
    return "\n\n".join(parts)


def cold_start_section(rels: list[str], records: dict[str, dict]) -> str:
    lines = [
        "| record | split | IDs from | mode | cold targets Recall@10 | all targets Recall@10 |",
        "|---|---|---|---|---:|---:|",
    ]
    for rel in rels:
        record, meta = records[rel], records[rel].get("metadata", {})
        for mode, metrics in record.get("cold_items", {}).items():
            everyone = record.get("all_items", {}).get(mode, {})
            lines.append(f"| {link(rel)} | {meta.get('eval_split', 'test')} | {meta.get('item_features') or 'text'} | "
                         f"{mode.replace('_', ' ')} | {fmt(metrics.get('recall@10'))} | {fmt(everyone.get('recall@10'))} |")  # fmt: skip
    return "\n".join(lines)


def scale_section(rels: list[str], records: dict[str, dict]) -> str:
    lines = ["| record | case | size | wall time (s) | peak memory (MB) |", "|---|---|---|---:|---:|"]
    for rel in rels:
        for row in records[rel].get("results", []):
            size = f"{row['n_items']:,} items x {row['dim']}" if row.get("n_items") else row.get("dataset", "–")
            seconds = row.get("fit_s", row.get("read_s"))
            lines.append(
                f"| {link(rel)} | {row['case']} | {size} | {fmt(seconds, 1)} | {fmt(row.get('peak_rss_mb'), 0)} |"
            )
    return "\n".join(lines)


def serving_section(rels: list[str], records: dict[str, dict], prefix: str = "results/") -> str:
    """Per load-test record: throughput and latency per server setting and number of concurrent clients, and the
    micro-batching gain (its throughput over one search per request)."""
    parts = []
    for rel in rels:
        record = records[rel]
        lines = [
            "| server | concurrent clients | requests/s | p50 (ms) | p99 (ms) | errors |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for server, levels in (record.get("runs") or {}).items():
            for clients, run in levels.items():
                lines.append(f"| {server} | {clients} | {fmt(run.get('requests_per_second'), 1)} | "
                             f"{fmt(run.get('p50_ms'), 1)} | {fmt(run.get('p99_ms'), 1)} | {run.get('errors', '–')} |")  # fmt: skip
        gain = ", ".join(
            f"{clients} clients {fmt(value, 2)}x" for clients, value in (record.get("gain") or {}).items()
        )
        parts.append(f"{link(rel, prefix)} ({record.get('bundle', '–')}):\n\n" + "\n".join(lines)
                     + (f"\n\nMicro-batching gain in requests/s over one search per request: {gain}." if gain else ""))  # fmt: skip
    return "\n\n".join(parts)


def scale_curves_section(rels: list[str], records: dict[str, dict]) -> str:
    """Each record's table (`scale_plot.table`): per method and catalogue, cost, serving and Recall@10, or why a case
    did not run; a quick run says so. The plot follows when ``docs/img/<record name>.png`` exists."""
    from scale_plot import table  # benchmarks/scale_plot.py

    out = []
    for rel in rels:
        record = records[rel]
        mode = record.get("mode", "full")
        note = " (CI-sized: tiny catalogues, a 2-second budget; not the measurement)" if mode == "quick" else ""
        said = f" {record['note']}" if record.get("note") else ""
        out += [f"{link(rel)}: {mode} run{note}.{said}", "", table(record), ""]
        plot = ROOT / "docs" / "img" / f"{Path(rel).stem}.png"  # scale_curves.py --plot, named after the record
        if plot.exists():
            out += [f"![cost against catalogue size, {mode} run](../docs/img/{plot.name})", ""]
    return "\n".join(out).rstrip()


def scale_guide_section(rels: list[str], records: dict[str, dict], prefix: str = "results/") -> str:
    """docs/scale.md's table: the record's cases in the guide's compact form (`scale_plot.guide_table`)."""
    from scale_plot import guide_table  # benchmarks/scale_plot.py

    return "\n\n".join(f"{guide_table(records[rel])}\n\nRecord: {link(rel, prefix)}." for rel in rels)


SECTIONS = {
    "reproduce": reproduce_section,
    "paired": paired_section,
    "fusion": fusion_section,
    "decoding": decoding_section,
    "training": training_section,
    "id_schemes": id_schemes_section,
    "cold_start": cold_start_section,
    "scale": scale_section,
    "scale_curves": scale_curves_section,
    "serving": serving_section,
}


def archive_index(results_dir: Path) -> str:
    """``archive/INDEX.md``: what each archived record measured and what replaced it, from ``archive/index.json``."""
    index_path = results_dir / "archive" / "index.json"
    entries = json.loads(index_path.read_text()) if index_path.exists() else []
    lines = [
        "# Archived benchmark records",
        "",
        "<!-- generated by `python benchmarks/report.py` from index.json; do not edit by hand -->",
        "",
        "Records that a later measurement superseded: an earlier run of a recipe that no longer ships, or a rerun "
        "replaced by a later one, and that no current choice in `docs/recipes.md` rests on. Each keeps its path "
        "under `archive/` (`amd-epyc/` for the runs on that machine).",
        "",
        "| record | added | what it measured | replaced by |",
        "|---|---|---|---|",
    ]
    for entry in entries:
        replaced = ", ".join(archived_link(r) for r in entry["replaced_by"])
        lines.append(f"| {link(entry['file'], '')} | {entry.get('added', '–')} | {entry['measured']} | {replaced} |")
    missing = [e["file"] for e in entries if not (results_dir / "archive" / e["file"]).exists()]
    if missing:
        raise SystemExit(f"archive/index.json lists records that are not in archive/: {', '.join(missing)}")
    return "\n".join(lines) + "\n"


def archived_link(rel: str) -> str:
    """A link from archive/INDEX.md to a record: a current one (``../<path>``), an archived one, or plain text."""
    if not rel.endswith(".json"):
        return rel
    return link(rel[len("archive/") :], "") if rel.startswith("archive/") else link(rel, "../")


def benchmarks_readme(records: dict[str, dict]) -> str:
    by_question: dict[str, list[str]] = {}
    for rel, record in records.items():
        by_question.setdefault(question_of(record), []).append(rel)
    out = [
        "# Benchmarks",
        "",
        "<!-- generated by `python benchmarks/report.py` from benchmarks/results/; do not edit by hand -->",
        "",
        "One script per question; each writes JSON records to `benchmarks/results/` (`amd-epyc/` holds the runs on "
        "that machine). This page is generated from the current records by `python benchmarks/report.py` "
        "(`--check` fails when it is stale). Superseded records, and what replaced each: "
        "[results/archive/INDEX.md](results/archive/INDEX.md).",
        "",
        "Protocol of every quality figure (TIGER's): leave-one-out per user (last item = test, second-to-last = "
        "validation), full ranking over the whole catalogue (trie-constrained beam search, 20 beams, for the "
        "generative model), metrics averaged over all test users unless a record says otherwise. Machines: 2-core "
        "virtual machines with no GPU (an AMD EPYC or an Intel Xeon; each record names its own).",
        "",
        "| question | script | records |",
        "|---|---|---:|",
    ]
    for question, heading, script in QUESTIONS:
        out.append(
            f"| [{heading}](#{anchor(heading)}) | `benchmarks/{script}` | {len(by_question.get(question, []))} |"
        )
    out += ["", "## Headline", "", headline_table(records, link_prefix=""), ""]
    for question, heading, script in QUESTIONS:
        rels = by_question.get(question, [])
        if not rels:
            continue
        out += [f"## {heading}", "", f"Script: `benchmarks/{script}` (`python benchmarks/{script} --help`).", ""]
        out += [
            SECTIONS[question](rels, records),
            "",
            "Command, machine and date of each record:",
            "",
            provenance(rels, records),
            "",
        ]
    if by_question.get("other"):
        out += ["## Other records", "", provenance(by_question["other"], records), ""]
    return "\n".join(out).rstrip() + "\n"


def anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def with_headline(readme: str, records: dict[str, dict]) -> str:
    """``readme`` with the block between the results markers replaced by the headline table (nothing else)."""
    start = MARK_START.search(readme)
    end = readme.find(MARK_END, start.end() if start else 0)
    if not start or end < 0:
        raise SystemExit(f"README.md has no '<!-- results:start ... -->' ... '{MARK_END}' block for the headline.")
    return readme[: start.end()] + "\n" + headline_table(records) + "\n" + readme[end:]


#: guide -> (its block's marker name, the record shown there, the section that renders it): a guide's table of
#: measurements is generated like the README's headline, so it never drifts from its record
GUIDE_BLOCKS = {
    "docs/serving.md": ("load-test", "serve_load.json", serving_section),
    "docs/scale.md": ("scale-curves", "scale_curves.json", scale_guide_section),
}


def with_block(text: str, name: str, content: str, where: str) -> str:
    """``text`` with the block between ``<!-- name:start ... -->`` and ``<!-- name:end -->`` replaced by ``content``."""
    start = re.search(rf"<!-- {re.escape(name)}:start[^>]*-->", text)
    end_mark = f"<!-- {name}:end -->"
    end = text.find(end_mark, start.end() if start else 0)
    if not start or end < 0:
        raise SystemExit(f"{where} has no '<!-- {name}:start ... -->' ... '{end_mark}' block for its table.")
    return text[: start.end()] + "\n" + content + "\n" + text[end:]


def outputs(results_dir: Path, readme_path: Path) -> dict[Path, str]:
    """What each generated file should hold, from the records."""
    records = load_records(results_dir)
    generated = {
        results_dir.parent / "README.md": benchmarks_readme(records),
        results_dir / "archive" / "INDEX.md": archive_index(results_dir),
    }
    if readme_path.exists():
        generated[readme_path] = with_headline(readme_path.read_text(), records)
    for guide, (name, rel, section) in GUIDE_BLOCKS.items():
        path = ROOT / guide
        if path.exists() and rel in records:  # before its first record the guide says it is not in yet
            content = section([rel], records, prefix="../benchmarks/results/")
            generated[path] = with_block(path.read_text(), name, content, guide)
    return generated


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default=str(RESULTS))
    parser.add_argument("--readme", default=str(ROOT / "README.md"), help="The README whose results block to write.")
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 if a generated file is stale.")
    args = parser.parse_args(argv)
    stale = []
    for path, text in outputs(Path(args.results_dir), Path(args.readme)).items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(str(path))
        else:
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale: {', '.join(stale)}; run `python benchmarks/report.py` and commit the result.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
