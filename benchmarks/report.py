"""Markdown tables of the reproduction results beside the published numbers (what the README's tables are made of).

    python benchmarks/report.py [--results-dir benchmarks/results]

Reads ``<dataset>.json`` (generative model), ``<dataset>_sasrec.json`` and the ``--ensemble N`` records
(``<dataset>_ensemble<N>.json``, ``<dataset>_sasrec_ensemble<N>.json``) written by ``benchmarks/reproduce.py``.
Published rows are quoted from their sources: TIGER's Table 1 (Rajput et al., NeurIPS 2023) for Amazon Beauty, and
the HSTU repository's MovieLens-1M table (Zhai et al., ICML 2024) for ML-1M.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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


def _row(label: str, metrics: dict, note: str = "") -> str:
    cells = [f"{metrics[m]:.4f}" if m in metrics else "–" for m in METRICS]
    return f"| {label} | " + " | ".join(cells) + f" | {note} |"


def table(dataset: str, results_dir: Path) -> str:
    lines = ["| model | Recall@5 | NDCG@5 | Recall@10 | NDCG@10 | training |", "|---|---:|---:|---:|---:|---|"]
    for label, metrics in PUBLISHED.get(dataset, []):
        lines.append(_row(label, metrics, "published"))
    genrec_file, sasrec_file = results_dir / f"{dataset}.json", results_dir / f"{dataset}_sasrec.json"
    baselines = None
    if genrec_file.exists():
        genrec = json.loads(genrec_file.read_text())
        note = f"{genrec['train_minutes']:.0f} min, {genrec['epochs']:.1f} epochs, {genrec['train_steps']} steps"
        fused = (
            f", successor prior fused at weight {genrec['transition_weight']:g}"
            if genrec.get("transition_weight")
            else ""
        )
        lines.append(_row(f"hf_genrec ({genrec.get('id_scheme', '')} IDs{fused}, this CPU)", genrec["test"], note))
        baselines = genrec.get("baselines")
    if sasrec_file.exists():
        sasrec = json.loads(sasrec_file.read_text())
        note = f"{sasrec['train_minutes']:.0f} min, {sasrec['epochs']:.1f} epochs"
        lines.append(_row("SASRec, full softmax (hf_genrec harness, this CPU)", sasrec["test"], note))
        fusion = sasrec.get("successor_prior_fusion")
        if fusion:
            label = f"SASRec with the same successor prior fused (weight {fusion['transition_weight']:g})"
            lines.append(_row(label, fusion["test"], note))
        baselines = baselines or sasrec.get("baselines")
    for path in sorted(results_dir.glob(f"{dataset}_ensemble*.json")) + sorted(
        results_dir.glob(f"{dataset}_sasrec_ensemble*.json")
    ):
        lines += _ensemble_rows(json.loads(path.read_text()))
    if baselines:
        lines.append(_row("most popular (same harness)", baselines["most_popular"], "–"))
        if "successor_prior" in baselines:
            lines.append(
                _row("successor prior alone, then most popular (same harness)", baselines["successor_prior"], "–")
            )
    return "\n".join(lines)


def _ensemble_rows(record: dict) -> list[str]:
    """Rows of a ``--ensemble N`` record: the ensemble with and without the prior."""
    n, members = record["ensemble"], record["members"]
    note = f"{record['train_minutes']:.0f} min: {n} runs of {members[0]['budget_minutes']:g} min"
    if record["model"] == "genrec":
        weight = record.get("transition_weight")
        label = f"hf_genrec, {n} seeds ensembled" + (f", successor prior fused at weight {weight:g}" if weight else "")
        rows = [_row(label, record["test"], note)]
        if record.get("test_model_alone"):
            rows.append(_row(f"hf_genrec, {n} seeds ensembled, model alone", record["test_model_alone"], note))
        return rows
    rows = [_row(f"SASRec, {n} seeds ensembled", record["test"], note)]
    fusion = record.get("successor_prior_fusion")
    if fusion:
        label = f"SASRec, {n} seeds ensembled, successor prior fused (weight {fusion['transition_weight']:g})"
        rows.append(_row(label, fusion["test"], note))
    return rows


def curve(dataset: str, results_dir: Path, rows: int = 8) -> str:
    path = results_dir / f"{dataset}.json"
    if not path.exists():
        return ""
    points = json.loads(path.read_text()).get("curve", [])
    every = max(1, round(len(points) / rows))
    keep = [p for i, p in enumerate(points) if i % every == every - 1 or i == len(points) - 1]
    keep = [p for i, p in enumerate(keep) if i == 0 or p["step"] != keep[i - 1]["step"]]
    if len(keep) > 1 and keep[-1]["train_minutes"] - keep[-2]["train_minutes"] < 0.5:  # budget stop right after
        keep.pop(-2)
    lines = ["| minutes | epoch | validation Recall@10 | validation NDCG@10 |", "|---:|---:|---:|---:|"]
    lines += [
        f"| {p['train_minutes']:.1f} | {p['epoch']:.1f} | {p['recall@10']:.4f} | {p['ndcg@10']:.4f} |" for p in keep
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results-dir", default="benchmarks/results")
    args = parser.parse_args()
    results_dir = Path(args.results_dir)
    for dataset in ("amazon-beauty", "ml-1m"):
        print(f"## {dataset}\n\n{table(dataset, results_dir)}\n")
        points = curve(dataset, results_dir)
        if points:
            print(f"Validation curve ({dataset}):\n\n{points}\n")


if __name__ == "__main__":
    main()
