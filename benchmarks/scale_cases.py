"""The cases of `scale_curves.py`, each run in a process of its own: one method on one catalogue (synthetic or a
real dataset), or the reading of many training rows (in memory or memory-mapped from Arrow).

A case returns one flat dict of measurements; `scale_curves.py` runs it, stamps it and writes the record.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from scale import peak_rss_mb, rss_mb  # benchmarks/scale.py
from synthetic import generate_sequences, item_features, make_catalogue

#: the recipes the generative methods train: the general Amazon recipe, and it with the decoder-only overlay
RECIPES = Path(__file__).resolve().parents[1] / "hf_genrec" / "recipes"
#: SASRec's size in every case: as wide as the T5 recipe (d_model 64), 2 blocks, 1 head (the paper's Beauty shape)
SASREC = dict(hidden_size=64, num_layers=2, num_heads=1, dropout=0.2)
#: items of a history every model reads
MAX_HISTORY = 20
#: HNSW graph degree and build/search breadth (faiss's defaults are 32 / 40 / 16; 64 keeps Recall@10 close to exact)
HNSW = dict(M=32, ef_construction=40, ef_search=64)


# ------------------------------------------------------------------------------------------------------------ data


class CaseData:
    """A case's catalogue and users: ``train`` (each user's items but the last two, the training part), ``histories``
    and ``targets`` of the evaluated users (all items but the last, and the last)."""

    def __init__(self, spec: dict):
        start = time.perf_counter()
        if spec["dataset"] == "synthetic":
            catalogue = make_catalogue(spec["n_items"], seed=spec["seed"])
            users = np.concatenate(
                list(generate_sequences(catalogue, spec["n_users"], spec["length"], seed=spec["seed"]))
            )
            self.n_items = spec["n_items"]
            self.train = [row[:-2] for row in users]
            self.features = lambda: item_features(catalogue, dim=32, seed=spec["seed"])
            self.popularity = np.bincount(users[:, :-2].ravel(), minlength=self.n_items)
        else:
            from hf_genrec.data import load_interactions
            from hf_genrec.features.collaborative import collaborative_features

            data = load_interactions(spec["dataset"], spec["data_dir"], download=False)
            item_ids = data.items["item_id"][:]
            row_of = {item: i for i, item in enumerate(item_ids)}
            users = [np.asarray([row_of[i] for i in seq], dtype=np.int64) for seq in data.sequences["item_ids"][:]]
            users = [u for u in users if len(u) >= 3]
            self.n_items = len(item_ids)
            self.train = [u[:-2] for u in users]
            strings = [[item_ids[i] for i in u] for u in self.train]
            # the recipe's IDs cluster co-occurrence vectors (item_features: collaborative)
            self.features = lambda: collaborative_features(strings, item_ids, dim=32)
            self.popularity = np.bincount(np.concatenate(self.train), minlength=self.n_items)
        rng = np.random.default_rng(0)
        chosen = rng.choice(len(users), size=min(spec["eval_users"], len(users)), replace=False)
        self.histories = [np.asarray(users[i][:-1])[-MAX_HISTORY:] for i in chosen]
        self.targets = np.asarray([users[i][-1] for i in chosen])
        self.interactions = int(sum(len(u) for u in users))
        self.n_users = len(users)
        self.prepare_s = time.perf_counter() - start

    def popularity_recall(self) -> float:
        top = np.argsort(-self.popularity)[:10]
        return float(np.isin(self.targets, top).mean())


def recall_at_10(ranked: np.ndarray, targets: np.ndarray) -> float:
    return float((ranked[:, :10] == targets[:, None]).any(1).mean())


def mb(n_bytes: float) -> float:
    return round(n_bytes / 2**20, 2)


def folder_mb(path: Path) -> float:
    return mb(sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file()))


def serving_timings(rank, histories: list, targets: np.ndarray, latency_users: int) -> dict:
    """p50/p99 of ranking one user at a time, users per second in batches of 64, and Recall@10 of those rankings.
    ``rank(histories)`` returns ``[batch, >=10]`` item rows."""
    rank(histories[:2])  # warm-up: first calls pay for allocation and thread start-up
    single = []
    for history in histories[:latency_users]:
        start = time.perf_counter()
        rank([history])
        single.append(time.perf_counter() - start)
    ranked, start = [], time.perf_counter()
    for lo in range(0, len(histories), 64):
        ranked.append(np.asarray(rank(histories[lo : lo + 64])))
    seconds = time.perf_counter() - start
    return {
        "latency_p50_ms": round(1000 * float(np.percentile(single, 50)), 2),
        "latency_p99_ms": round(1000 * float(np.percentile(single, 99)), 2),
        "batch64_users_per_s": round(len(histories) / seconds, 1),
        "recall@10": round(recall_at_10(np.concatenate(ranked), targets), 4),
        "eval_users": len(histories),
    }


def memory_stage(out: dict, name: str) -> None:
    """Resident memory now (and its anonymous part: pages of memory-mapped files, such as Arrow rows, count in the
    resident memory but the kernel can drop them), and the peak so far."""
    out[f"rss_after_{name}_mb"] = round(rss_mb(), 1)
    out[f"anon_rss_after_{name}_mb"] = round(anon_rss_mb(), 1)
    out[f"peak_rss_after_{name}_mb"] = round(peak_rss_mb(), 1)


def anon_rss_mb() -> float:
    """Anonymous resident memory of this process in MB (``RssAnon``: not backed by a file)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# ------------------------------------------------------------------------------------------------------ generative


#: the recipe keys a generative case reads besides the model's (`ModelArguments`): the only ones ``--set`` may change
TRAINING_KEYS = ("n_levels", "max_history", "per_device_train_batch_size", "learning_rate", "lr_scheduler_type",
                 "warmup_steps", "constrained_loss")  # fmt: skip


def recipe_settings(decoder: bool, overrides: dict | None = None) -> dict:
    """The general Amazon recipe's settings (hf_genrec/recipes/amazon-default.yaml), with the decoder-only overlay
    (decoder.yaml) on top for the decoder-only method, and a variant's ``overrides`` (``--set``) last."""
    settings = yaml.safe_load((RECIPES / "amazon-default.yaml").read_text())
    if decoder:
        settings.update(yaml.safe_load((RECIPES / "decoder.yaml").read_text()))
    return {**settings, **(overrides or {})}


def parse_overrides(pairs: list[str]) -> dict:
    """``["item_positions=false", ...]`` as recipe values (YAML-parsed), refusing a key the cases do not read: a
    recipe key such as ``collision_codes`` would otherwise be silently ignored."""
    from dataclasses import fields

    from hf_genrec.recipes.arguments import ModelArguments

    readable = {f.name for f in fields(ModelArguments)} | set(TRAINING_KEYS)
    overrides = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set {pair!r}: write KEY=VALUE, e.g. --set item_positions=false")
        if key not in readable:
            raise SystemExit(f"--set {key}: the generative cases do not read this key; they read "
                             f"{', '.join(sorted(readable))}")  # fmt: skip
        overrides[key] = yaml.safe_load(text)
    return overrides


def run_generative(spec: dict, data: CaseData, out: dict) -> None:
    from dataclasses import fields

    from hf_genrec import GenerativeRecommender, GenRecTrainer, GenRecTrainingArguments, ItemTokenizer, RQKMeans
    from hf_genrec.decoding.generate import build_trie_index, generate_items
    from hf_genrec.recipes.arguments import ModelArguments
    from hf_genrec.recipes.backbone import build_backbone, count_train_targets
    from hf_genrec.tokenization import minimal_t5_tokenizer
    from hf_genrec.training.examples import tokenize_causal_sequences, tokenize_sequences

    decoder = spec["method"] == "decoder"
    recipe = recipe_settings(decoder, spec.get("recipe_overrides"))
    start = time.perf_counter()
    features = data.features()
    item_ids = [str(i) for i in range(data.n_items)]
    quantizer = RQKMeans(n_levels=recipe["n_levels"], codebook_size=spec["codebook_size"], pca_dim=None)
    ids = quantizer.fit(features, item_ids)
    del features
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    out["ids_s"] = round(time.perf_counter() - start, 2)
    out["id_table_mb"] = mb(np.asarray(ids.codes).nbytes)
    memory_stage(out, "ids")

    start = time.perf_counter()
    sequences = ([item_ids[i] for i in row] for row in data.train)
    tokenize = tokenize_causal_sequences if decoder else tokenize_sequences
    # rows go to an Arrow file in chunks, memory-mapped: resident memory stays bounded at 10M items (and it was not
    # slower than building them in memory in the examples case)
    scratch = tempfile.TemporaryDirectory()
    rows = tokenize(sequences, item_tokenizer, recipe["max_history"], arrow_path=Path(scratch.name) / "rows.arrow")
    out["rows_storage"] = "arrow"
    model_args = ModelArguments(**{f.name: recipe[f.name] for f in fields(ModelArguments) if f.name in recipe})
    sample = rows.select(range(min(len(rows), 10_000)))  # the mean over all rows would read every row back
    targets_per_row = count_train_targets(sample, item_tokenizer, model_args) / len(sample)
    out["rows_s"] = round(time.perf_counter() - start, 2)
    memory_stage(out, "rows")

    model = build_backbone(item_tokenizer, model_args, seed=0)
    parameters = sum(p.numel() for p in model.parameters())
    out.update(model_mb=mb(4 * parameters), optimizer_mb=mb(8 * parameters), item_table_mb=out["id_table_mb"])
    with tempfile.TemporaryDirectory() as tmp:
        args = GenRecTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=recipe["per_device_train_batch_size"],
            learning_rate=recipe["learning_rate"], lr_scheduler_type=recipe["lr_scheduler_type"],
            warmup_steps=recipe["warmup_steps"], constrained_loss=recipe["constrained_loss"], num_train_epochs=1000,
            max_train_minutes=spec["budget_s"] / 60, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, report_to="none", logging_steps=10**9, use_cpu=True, disable_tqdm=True,
            seed=42, dataloader_num_workers=0,
        )  # fmt: skip
        trainer = GenRecTrainer(model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=rows)
        start = time.perf_counter()
        state = trainer.train()
        train_s = time.perf_counter() - start
    trained = state.global_step * recipe["per_device_train_batch_size"] * targets_per_row
    out.update(train_s=round(train_s, 2), train_steps=state.global_step, trained_targets=int(trained))
    out["train_s_per_1k_targets"] = round(1000 * train_s / max(trained, 1), 3)
    memory_stage(out, "training")

    model.eval()
    held = rss_mb()
    start = time.perf_counter()
    index = build_trie_index(item_tokenizer)
    out["serving_build_s"] = round(time.perf_counter() - start, 3)
    out["serving_build_mb"] = round(rss_mb() - held, 1)
    out["serving_structure"] = "trie index"
    memory_stage(out, "serving_build")
    with tempfile.TemporaryDirectory() as tmp:
        GenerativeRecommender(model, item_tokenizer, quantizer=quantizer).save_pretrained(tmp)
        out["bundle_mb"] = folder_mb(Path(tmp))

    pad = item_tokenizer.pad_token_id
    beams = spec["num_beams"]

    def rank(histories):
        encoded = [item_tokenizer.encode_history([item_ids[i] for i in h]) for h in histories]
        width = max(map(len, encoded))
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in encoded])
        mask = (input_ids != pad).long()
        with torch.no_grad():
            items, _ = generate_items(model, item_tokenizer, input_ids, mask, num_beams=beams, k=10, index=index)
        return items.numpy()

    out.update(serving_timings(rank, data.histories, data.targets, spec["latency_users"]))
    out["num_beams"] = beams
    del rows
    scratch.cleanup()


# ---------------------------------------------------------------------------------------------------------- SASRec


def run_sasrec(spec: dict, data: CaseData, out: dict) -> None:
    from hf_genrec.models.sasrec import SASRecConfig, left_pad
    from hf_genrec.training.sasrec import train_sasrec

    sampled = spec["method"] == "sasrec_sampled"
    positions = spec["max_positions"]
    loss = dict(loss="sampled_softmax", num_negatives=spec["num_negatives"]) if sampled else {}
    config = SASRecConfig(num_items=data.n_items, max_positions=positions, **SASREC, **loss)
    batch = spec["batch_size"]
    start = time.perf_counter()
    model, info = train_sasrec(
        data.train, config, epochs=1000, batch_size=batch, learning_rate=1e-3, max_minutes=spec["budget_s"] / 60
    )
    out["train_wall_s"] = round(time.perf_counter() - start, 2)  # with the rows' building, which train_sasrec does
    train_s = 60 * info["train_minutes"]  # the Trainer's own clock: training steps only
    targets_per_row = np.mean([max(0, min(len(r), positions + 1) - 1) for r in data.train])
    trained = info["steps"] * batch * targets_per_row
    item_table = (data.n_items + 1) * config.hidden_size
    parameters = sum(p.numel() for p in model.parameters())
    out.update(
        batch_size=batch, train_s=round(train_s, 2), train_steps=info["steps"], trained_targets=int(trained),
        train_s_per_1k_targets=round(1000 * train_s / max(trained, 1), 3), model_mb=mb(4 * parameters),
        item_table_mb=mb(4 * item_table), optimizer_mb=mb(8 * parameters),
    )  # fmt: skip
    memory_stage(out, "training")
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        out["bundle_mb"] = folder_mb(Path(tmp))
    model.eval()
    if not sampled:
        out["serving_structure"] = "none (every item scored)"
        out["serving_build_s"], out["serving_build_mb"] = 0.0, 0.0

        def rank(histories):
            return model.recommend(left_pad(histories, positions), k=10)[0].numpy()

        out.update(serving_timings(rank, data.histories, data.targets, spec["latency_users"]))
        return
    run_faiss(spec, model, data, out, positions)


def run_faiss(spec: dict, model, data: CaseData, out: dict, positions: int) -> None:
    """Serve the sampled-softmax SASRec from FAISS indexes of its item embeddings (inner product, as its logits):
    exact (IndexFlatIP) and approximate (IndexHNSWFlat); one set of measurements per index, prefixed."""
    import faiss

    from hf_genrec.models.sasrec import left_pad

    embeddings = np.ascontiguousarray(model.item_embeddings.weight[1:].detach().numpy(), dtype=np.float32)
    dim = embeddings.shape[1]
    builders = {
        "flat": lambda: faiss.IndexFlatIP(dim),
        "hnsw": lambda: faiss.IndexHNSWFlat(dim, HNSW["M"], faiss.METRIC_INNER_PRODUCT),
    }
    for name, build in builders.items():
        held = rss_mb()
        start = time.perf_counter()
        index = build()
        if name == "hnsw":
            index.hnsw.efConstruction = HNSW["ef_construction"]
        index.add(embeddings)
        if name == "hnsw":
            index.hnsw.efSearch = HNSW["ef_search"]
        build_s = time.perf_counter() - start
        build_mb = rss_mb() - held
        memory_stage(out, f"{name}_build")
        with tempfile.TemporaryDirectory() as tmp:
            faiss.write_index(index, str(Path(tmp) / "items.faiss"))
            index_mb = folder_mb(Path(tmp))

        def rank(histories, index=index):
            with torch.no_grad():
                queries = model.encode(left_pad(histories, positions))[:, -1].numpy()
            return index.search(np.ascontiguousarray(queries, dtype=np.float32), 10)[1]

        timings = serving_timings(rank, data.histories, data.targets, spec["latency_users"])
        out[name] = {
            "serving_structure": "faiss.IndexFlatIP" if name == "flat" else f"faiss.IndexHNSWFlat {HNSW}",
            "serving_build_s": round(build_s, 3),
            "serving_build_mb": round(build_mb, 1),
            "index_mb": index_mb,
            "bundle_mb": round(out["bundle_mb"] + index_mb, 2),
            **timings,
        }
        del index


# -------------------------------------------------------------------------------------------------------- examples


def run_examples(spec: dict, out: dict) -> None:
    """Packed training rows of many interactions on a small catalogue, built in memory or written to Arrow in chunks
    and memory-mapped; then the T5 recipe trains on them for the budget, reading them through its data loader."""
    from hf_genrec import GenRecTrainer, GenRecTrainingArguments, ItemTokenizer, RQKMeans
    from hf_genrec.models.t5 import build_t5_model
    from hf_genrec.tokenization import minimal_t5_tokenizer
    from hf_genrec.training.examples import tokenize_sequences

    recipe = recipe_settings(decoder=False)
    catalogue = make_catalogue(spec["n_items"], seed=spec["seed"])
    item_ids = [str(i) for i in range(spec["n_items"])]
    ids = RQKMeans(n_levels=3, codebook_size=spec["codebook_size"], pca_dim=None).fit(
        item_features(catalogue, dim=32), item_ids
    )
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    memory_stage(out, "setup")

    def sequences():  # streamed: never more than one chunk of users in memory
        for chunk in generate_sequences(catalogue, spec["n_users"], spec["length"], seed=spec["seed"]):
            for row in chunk:
                yield [item_ids[i] for i in row]

    with tempfile.TemporaryDirectory() as tmp:
        arrow_path = Path(tmp) / "rows.arrow" if spec["storage"] == "arrow" else None
        start = time.perf_counter()
        rows = tokenize_sequences(sequences(), item_tokenizer, recipe["max_history"], arrow_path=arrow_path)
        out["rows_s"] = round(time.perf_counter() - start, 2)
        out["rows"] = len(rows)
        out["interactions"] = spec["n_users"] * spec["length"]
        memory_stage(out, "rows")
        if arrow_path is not None:
            out["arrow_file_mb"] = mb(arrow_path.stat().st_size)
        model = build_t5_model(item_tokenizer, seed=0, **{k: recipe[k] for k in (
            "causal_encoder", "item_positions", "recency_embeddings", "d_model", "d_ff", "d_kv", "num_heads",
            "num_layers", "num_decoder_layers", "dropout_rate")})  # fmt: skip
        args = GenRecTrainingArguments(
            output_dir=tmp, per_device_train_batch_size=32, learning_rate=3e-3, num_train_epochs=1,
            max_train_minutes=spec["budget_s"] / 60, eval_strategy="no", save_strategy="no",
            load_best_model_at_end=False, report_to="none", logging_steps=10**9, use_cpu=True, disable_tqdm=True,
            constrained_loss=True,
        )  # fmt: skip
        start = time.perf_counter()
        state = GenRecTrainer(model=model, args=args, item_tokenizer=item_tokenizer, train_dataset=rows).train()
        out.update(train_s=round(time.perf_counter() - start, 2), train_steps=state.global_step)
        memory_stage(out, "training")
        del rows


def run_case(spec: dict) -> dict:
    """One case's measurements. An error part-way is recorded as ``failed`` with its message, keeping what was
    measured before it (a long training is not lost to a failing bundle save)."""
    torch.set_num_threads(spec["threads"])
    out = {key: spec[key] for key in ("method", "dataset", "n_items", "batch_size", "recipe_overrides") if key in spec}
    try:
        if spec["method"] == "examples":
            out["storage"] = spec["storage"]
            run_examples(spec, out)
        else:
            data = CaseData(spec)
            out.update(n_items=data.n_items, n_users=data.n_users, interactions=data.interactions)
            out["prepare_s"] = round(data.prepare_s, 2)
            out["popularity_recall@10"] = round(data.popularity_recall(), 4)
            memory_stage(out, "data")
            if spec["method"] in ("t5", "decoder"):
                run_generative(spec, data, out)
            else:
                run_sasrec(spec, data, out)
        out["status"] = "ok"
    except Exception as error:  # noqa: BLE001  (any error is recorded, with what was measured before it)
        import traceback

        traceback.print_exc()
        out.update(status="failed", reason=f"{type(error).__name__}: {str(error)[:500]}")
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    return out
