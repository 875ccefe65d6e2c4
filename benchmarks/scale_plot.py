"""The plot and the table of a `scale_curves.py` record: cost and memory against catalogue size, one line per method
(log-log), with Recall@10 at the fixed budget beside them, so cost is never shown without quality."""

from __future__ import annotations

from pathlib import Path

#: (label, method, serving index or None) of each line
LINES = [
    ("T5 recipe (trie)", "t5", None),
    ("decoder-only recipe (trie)", "decoder", None),
    ("SASRec full softmax", "sasrec_full", None),
    ("SASRec sampled + FAISS flat", "sasrec_sampled", "flat"),
    ("SASRec sampled + FAISS HNSW", "sasrec_sampled", "hnsw"),
]
#: (panel title, field, log scale)
PANELS = [
    ("training s per 1,000 targets", "train_s_per_1k_targets", True),
    ("peak memory (MB)", "peak_rss_mb", True),
    ("serving structure build (s)", "serving_build_s", True),
    ("latency, one user, p50 (ms)", "latency_p50_ms", True),
    ("users/s, batches of 64", "batch64_users_per_s", True),
    ("Recall@10 at the fixed budget", "recall@10", False),
]


def value(row: dict, index: str | None, field: str):
    """A measurement of a case; serving fields of the sampled SASRec come from its ``index``'s sub-record."""
    if index is not None and isinstance(row.get(index), dict) and field in row[index]:
        return row[index][field]
    return row.get(field)


def plot_record(record: dict, path: str | Path) -> Path:
    """Draw the record's synthetic cases (lines) and real anchors (hollow markers) into a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = record["results"]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (title, field, log) in zip(axes.flat, PANELS):
        for n, (label, method, index) in enumerate(LINES):
            color = f"C{n}"
            if index == "hnsw" and field in ("train_s_per_1k_targets", "peak_rss_mb"):
                continue  # one training for both indexes: the flat line stands for it
            # a recipe variant (--set) is a table row, not a line: the lines are the methods as shipped
            ok = [
                r for r in rows if r["method"] == method and r.get("status") == "ok" and not r.get("recipe_overrides")
            ]
            points = sorted((r["n_items"], value(r, index, field)) for r in ok if r["dataset"] == "synthetic")
            points = [(x, y) for x, y in points if isinstance(y, (int, float)) and (y > 0 or not log)]
            if points:
                ax.plot(*zip(*points), "o-", color=color, label=label)
            for r in ok:
                y = value(r, index, field)
                if r["dataset"] != "synthetic" and isinstance(y, (int, float)) and (y > 0 or not log):
                    ax.plot(r["n_items"], y, "s", mfc="none", color=color)
            missing = [r["n_items"] for r in rows if r["method"] == method and r.get("status") != "ok"
                       and r.get("n_items") and not r.get("recipe_overrides")]  # fmt: skip
            for x in missing:  # a case that did not run: a cross on the axis, so its absence is seen
                ax.plot(x, 0.02, "x", color=color, transform=ax.get_xaxis_transform(), clip_on=False)
        ax.set_xscale("log")
        if log:
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("catalogue size (items)")
        ax.grid(True, which="both", alpha=0.3)
    axes.flat[3].legend(fontsize=8)  # a serving panel: it has every line
    mode = record.get("mode", "full")
    fig.suptitle(
        f"Cost against catalogue size ({mode} run; squares: real datasets; x: not run). {record.get('machine', '')}",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def variant(row: dict) -> str:
    """`` (key=value, ...)`` for a case of a recipe variant (``--set``), nothing for the recipe as shipped."""
    overrides = row.get("recipe_overrides") or {}
    return (
        f" ({', '.join(f'{k}={str(v).lower() if isinstance(v, bool) else v}' for k, v in overrides.items())})"
        if overrides
        else ""
    )


def fmt(x, digits: int = 2) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return "–"
    return f"{x:,.{digits}f}" if isinstance(x, float) else f"{x:,}"


def table_rows(record: dict) -> list[list[str]]:
    """One row per method, catalogue and serving index: what each cost, or why it did not run."""
    out = []
    for r in record["results"]:
        if r["method"] == "examples":
            continue
        where = "synthetic" if r["dataset"] == "synthetic" else r["dataset"]
        size = fmt(r.get("n_items"), 0)
        indexes = ["flat", "hnsw"] if r["method"] == "sasrec_sampled" and r.get("status") == "ok" else [None]
        for index in indexes:
            method = r["method"] + (f" + {index}" if index else "") + variant(r)
            if r.get("status") != "ok":
                out.append([method, where, size, *(["–"] * 8), f"{r.get('status')}: {r.get('reason', '')}"])
                continue
            out.append([method, where, size, fmt(r.get("train_s_per_1k_targets")), fmt(r.get("peak_rss_mb"), 0),
                        fmt(value(r, index, "serving_build_s")), fmt(value(r, index, "bundle_mb")),
                        fmt(value(r, index, "latency_p50_ms")), fmt(value(r, index, "latency_p99_ms")),
                        fmt(value(r, index, "batch64_users_per_s"), 0),
                        f"{fmt(value(r, index, 'recall@10'), 4)} ({fmt(r.get('popularity_recall@10'), 4)})",
                        "ok"])  # fmt: skip
    return out


HEADER = ("| method | data | items | train s / 1k targets | peak MB | serving build s | bundle MB | p50 ms | p99 ms | "
          "users/s (64) | Recall@10 (popular) | status |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")  # fmt: skip
EXAMPLES_HEADER = ("| rows | interactions | rows built in (s) | peak MB after rows | peak MB after training | "
                   "training steps | status |\n|---|---:|---:|---:|---:|---:|---|")  # fmt: skip


def examples_rows(record: dict) -> list[list[str]]:
    out = []
    for r in record["results"]:
        if r["method"] != "examples":
            continue
        status = "ok" if r.get("status") == "ok" else f"{r.get('status')}: {r.get('reason', '')}"
        out.append([f"{r.get('storage')} ({fmt(r.get('n_items'), 0)} items)", fmt(r.get("interactions", r.get("n_users")), 0),
                    fmt(r.get("rows_s")), fmt(r.get("peak_rss_after_rows_mb"), 0),
                    fmt(r.get("peak_rss_after_training_mb"), 0), fmt(r.get("train_steps"), 0), status])  # fmt: skip
    return out


def table(record: dict) -> str:
    lines = [HEADER, *("| " + " | ".join(row) + " |" for row in table_rows(record))]
    examples = examples_rows(record)
    if examples:
        lines += ["", EXAMPLES_HEADER, *("| " + " | ".join(row) + " |" for row in examples)]
    return "\n".join(lines)


#: the guide's name of each method
LABELS = {"t5": "T5 recipe", "decoder": "decoder-only recipe", "sasrec_full": "SASRec, full softmax",
          "sasrec_sampled": "SASRec sampled + FAISS flat / HNSW"}  # fmt: skip
GUIDE_HEADER = ("| items | method | train s / 1k targets | peak MB | serving build | bundle MB | p50 ms (one user) | "
                "users/s (64) | Recall@10 |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|")  # fmt: skip
DATASETS = {"amazon-beauty": "Beauty", "ml-1m": "ML-1M"}


def short_size(n: int) -> str:
    for unit, name in ((10**6, "M"), (10**3, "k")):
        if n >= unit and n % unit == 0:
            return f"{n // unit}{name}"
    return f"{n:,}"


def guide_table(record: dict) -> str:
    """The docs' table of a record: one row per method and catalogue (synthetic sizes, then the real anchors), the
    sampled SASRec's two indexes in one cell as ``flat / HNSW``, recipe variants after the recipes; cases that did
    not run are rows of dashes with their reason listed below, then most-popular's Recall@10 per catalogue."""

    def both(r: dict, field: str, digits: int) -> str:
        if r["method"] != "sasrec_sampled":
            return fmt(value(r, None, field), digits)
        return " / ".join(fmt(value(r, index, field), digits) for index in ("flat", "hnsw"))

    def order(r: dict) -> tuple:
        real = r["dataset"] != "synthetic"
        return (
            real,
            r["dataset"],
            r.get("n_items") or 0,
            bool(r.get("recipe_overrides")),
            list(LABELS).index(r["method"]),
        )

    rows = sorted((r for r in record["results"] if r["method"] in LABELS), key=order)
    lines, reasons, popular = [GUIDE_HEADER], [], {}
    for r in rows:
        size = (
            short_size(r["n_items"])
            if r["dataset"] == "synthetic"
            else f"{DATASETS.get(r['dataset'], r['dataset'])} ({r['n_items']:,})"
        )
        name = LABELS[r["method"]] + variant(r)
        if r.get("status") != "ok":
            lines.append(f"| {size} | {name} | – | – | – | – | – | – | {r.get('status')} |")
            reasons.append(f"- {name} at {size} items, {r.get('status')}: {r.get('reason', '')}")
            continue
        popular.setdefault(size, r.get("popularity_recall@10"))
        build = both(r, "serving_build_s", 2) + " s" if r["method"] != "sasrec_full" else "–"
        lines.append(f"| {size} | {name} | {fmt(r.get('train_s_per_1k_targets'))} | {fmt(r.get('peak_rss_mb'), 0)} | "
                     f"{build} | {both(r, 'bundle_mb', 1)} | {both(r, 'latency_p50_ms', 1)} | "
                     f"{both(r, 'batch64_users_per_s', 0)} | {both(r, 'recall@10', 3)} |")  # fmt: skip
    out = "\n".join(lines)
    if reasons:
        out += "\n\nCases that did not run:\n\n" + "\n".join(reasons)
    if popular:
        out += (
            "\n\nMost-popular's Recall@10 on the same users: "
            + ", ".join(f"{fmt(v, 3)} at {k}" for k, v in popular.items())
            + "."
        )
    return out
