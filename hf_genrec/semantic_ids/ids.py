"""`SemanticIDs`: the codes of every item, their codebook sizes, and how healthy they are."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np

from ..utils.saving import staged_directory
from ._io import drop_unknown_keys, library_version, read_json, read_safetensors, resolve_file, write_json
from ._validation import check_collision_option, check_item_ids
from .collisions import add_collision_level as _append_collision_level
from .collisions import check_codes, id_lengths, tuple_groups
from .diagnostics import compute_diagnostics, format_summary

METADATA_NAME = "semantic_ids.json"
CODES_NAME = "codes.safetensors"
ITEM_IDS_NAME = "item_ids.json"
FORMAT_VERSION = 1
_METADATA_KEYS = {
    "format_version",
    "hf_genrec_version",
    "scheme",
    "n_items",
    "n_levels",
    "codebook_sizes",
    "has_collision_level",
    "vocabulary",
    "added_tokens",
    "diagnostics",
}


@dataclass(repr=False)
class SemanticIDs:
    """One unique tuple of codes per item.

    Two ways to turn codes into tokens:

    - ``vocabulary=None`` (RQ-VAE, RQ-KMeans, hierarchical, random, atomic): each (level, code) pair is its own added
      token, ``<a_12>`` for code 12 at level 0 and so on.
    - ``vocabulary=[...]`` (title IDs): codes at every level index one shared list of token strings, pieces of the
      base tokenizer's own vocabulary, plus ``added_tokens`` the tokenizer must add (disambiguating suffixes).

    Args:
        codes: int64 ``[n_items, n_levels]``, including the collision level when there is one; rows are unique.
            Variable-length IDs end in ``-1`` padding.
        codebook_sizes: number of codes each level can take (for the collision level: the largest number of items
            sharing one tuple).
        item_ids: row ``i`` of ``codes`` belongs to ``item_ids[i]`` (the item table's order).
        scheme: what made the codes (``"rqvae"``, ``"rqkmeans"``, ``"hierarchical"``, ``"title"``, ``"random"``,
            ``"atomic"`` or ``"custom"``).
        has_collision_level: whether the last level is TIGER's disambiguation level.
        vocabulary: token strings the codes index (shared by all levels), or ``None`` for per-level ID tokens.
        added_tokens: entries of ``vocabulary`` that are not in the base tokenizer and must be added to it.
        diagnostics: JSON-serialisable statistics (see :func:`compute_diagnostics`); computed when not given.
    """

    codes: np.ndarray
    codebook_sizes: list[int]
    item_ids: list[str]
    scheme: str = "custom"
    has_collision_level: bool = False
    diagnostics: dict = field(default_factory=dict)
    vocabulary: list[str] | None = None
    added_tokens: list[str] = field(default_factory=list)

    def __post_init__(self):
        self.codes = check_codes(self.codes, allow_padding=True)
        if self.vocabulary is not None:
            self.vocabulary = [str(token) for token in self.vocabulary]
            if len(set(self.vocabulary)) != len(self.vocabulary):
                raise ValueError("vocabulary has duplicated tokens; each code must name a distinct token.")
            unknown = sorted(set(self.added_tokens) - set(self.vocabulary))
            if unknown:
                raise ValueError(f"added_tokens {unknown[:5]} are not in vocabulary; add them to it first.")
            if self.codes.max() >= len(self.vocabulary):
                raise ValueError(
                    f"code {int(self.codes.max())} is out of range of the vocabulary of {len(self.vocabulary)} "
                    "tokens; codes index the vocabulary."
                )
        self.added_tokens = [str(token) for token in self.added_tokens]
        self.item_ids = check_item_ids(self.item_ids, len(self.codes), what="codes")
        self.codebook_sizes = [int(size) for size in self.codebook_sizes]
        self.has_collision_level = bool(self.has_collision_level)
        if len(self.codebook_sizes) != self.codes.shape[1]:
            raise ValueError(
                f"codebook_sizes has {len(self.codebook_sizes)} entries but codes have {self.codes.shape[1]} levels."
            )
        too_big = self.codes.max(axis=0) >= np.asarray(self.codebook_sizes)
        if too_big.any():
            level = int(np.flatnonzero(too_big)[0])
            raise ValueError(
                f"level {level} has code {int(self.codes[:, level].max())} but codebook_sizes[{level}] = "
                f"{self.codebook_sizes[level]}; codes must be < their level's codebook size."
            )
        group, counts = tuple_groups(self.codes)
        if (counts > 1).any():
            shared = np.flatnonzero(counts[group] > 1)
            raise ValueError(
                f"{len(shared)} items share their code tuple with another item (first: "
                f"{[self.item_ids[i] for i in shared[:5]]}); semantic IDs must be unique per item. Build them with "
                "from_codes(codes, item_ids, add_collision_level=True) to append TIGER's disambiguation level."
            )
        if not self.diagnostics:
            self.diagnostics = compute_diagnostics(self.codes, self.codebook_sizes, self.has_collision_level)

    # ------------------------------------------------------------------ views
    @property
    def n_levels(self) -> int:
        return int(self.codes.shape[1])

    @property
    def is_variable_length(self) -> bool:
        """Whether IDs have different lengths (rows padded with ``-1``)."""
        return bool((self.codes < 0).any())

    @property
    def lengths(self) -> np.ndarray:
        """Number of codes in each item's ID."""
        return id_lengths(self.codes)

    @property
    def n_items(self) -> int:
        return int(self.codes.shape[0])

    def __len__(self) -> int:
        return self.n_items

    @cached_property
    def lookup(self) -> dict[str, int]:
        """item id -> row of ``codes``."""
        return {item: row for row, item in enumerate(self.item_ids)}

    def codes_of(self, item_id: str) -> tuple[int, ...]:
        """The code tuple of one item."""
        try:
            return tuple(int(code) for code in self.codes[self.lookup[str(item_id)]] if code >= 0)
        except KeyError:
            raise KeyError(f"unknown item id {item_id!r} ({self.n_items} items have semantic IDs)") from None

    def with_item_collision_codes(self) -> SemanticIDs:
        """A copy whose collision level numbers every item (row ``i`` gets code ``i``) instead of the items that share
        each tuple: each item then has a token of its own, an embedding that can learn what is particular to it (its
        successors, say) beside the codes it shares with similar items.

        The IDs stay valid prefixes of one another's tuples; only the last level's vocabulary grows, to one token per
        item, so the model's vocabulary grows by the catalogue. Items added later take the smallest code free under
        their prefix, as with TIGER's collision level, so they share a token the model trained for another item.
        """
        if not self.has_collision_level or self.is_variable_length:
            raise ValueError(
                "Per-item collision codes replace the collision level, and these IDs have none (fixed-length IDs "
                "with add_collision_level=True have one; variable-length IDs never do)."
            )
        codes = self.codes.copy()
        codes[:, -1] = np.arange(self.n_items)
        sizes = [*self.codebook_sizes[:-1], self.n_items]
        diagnostics = {**self.diagnostics, **compute_diagnostics(codes, sizes, True), "per_item_collision_codes": True}
        return replace(self, codes=codes, codebook_sizes=sizes, diagnostics=diagnostics)

    def __repr__(self) -> str:
        rate = self.diagnostics.get("collision_rate_before")
        rate_text = f", collision_rate_before={rate:.4f}" if rate is not None else ""
        return (
            f"SemanticIDs(scheme={self.scheme!r}, n_items={self.n_items}, n_levels={self.n_levels}, "
            f"codebook_sizes={self.codebook_sizes}, has_collision_level={self.has_collision_level}{rate_text})"
        )

    def summary(self) -> str:
        """Human-readable table of codebook usage, perplexity, items per prefix and collisions."""
        return format_summary(self)

    # ------------------------------------------------------------------ files
    def save(self, directory: str | os.PathLike) -> None:
        """Write ``semantic_ids.json`` (metadata + diagnostics), ``item_ids.json`` and ``codes.safetensors``."""
        from safetensors.numpy import save_file

        with staged_directory(directory) as directory:  # a crash while saving leaves the previous files
            write_json(
                directory / METADATA_NAME,
                {
                    "format_version": FORMAT_VERSION,
                    "hf_genrec_version": library_version(),
                    "scheme": self.scheme,
                    "n_items": self.n_items,
                    "n_levels": self.n_levels,
                    "codebook_sizes": self.codebook_sizes,
                    "has_collision_level": self.has_collision_level,
                    "vocabulary": self.vocabulary,
                    "added_tokens": self.added_tokens,
                    "diagnostics": self.diagnostics,
                },
            )
            (directory / ITEM_IDS_NAME).write_text(_dump_ids(self.item_ids), encoding="utf-8")
            save_file({"codes": self.codes}, str(directory / CODES_NAME), metadata={"format": "np"})

    @classmethod
    def load(cls, directory: str | os.PathLike, **hub_kwargs) -> SemanticIDs:
        """Read what :meth:`save` wrote (a local folder, or a Hub repo id with ``subfolder=`` etc.)."""

        metadata_path = resolve_file(directory, METADATA_NAME, **hub_kwargs)
        metadata = drop_unknown_keys(read_json(metadata_path), _METADATA_KEYS, str(metadata_path))
        if metadata.get("format_version", FORMAT_VERSION) > FORMAT_VERSION:
            raise ValueError(
                f"{metadata_path} has format_version {metadata['format_version']}, newer than this hf_genrec "
                f"({library_version()}) reads ({FORMAT_VERSION}). Upgrade hf_genrec."
            )
        codes = read_safetensors(resolve_file(directory, CODES_NAME, **hub_kwargs))["codes"]
        item_ids = read_json(resolve_file(directory, ITEM_IDS_NAME, **hub_kwargs))
        if len(item_ids) != len(codes) or codes.shape[1] != metadata["n_levels"]:
            raise ValueError(
                f"{directory}: {len(item_ids)} item ids, codes of shape {tuple(codes.shape)} and n_levels="
                f"{metadata['n_levels']} do not match; the files come from different saves."
            )
        return cls(
            codes=codes,
            codebook_sizes=metadata["codebook_sizes"],
            item_ids=item_ids,
            scheme=metadata["scheme"],
            has_collision_level=metadata["has_collision_level"],
            diagnostics=metadata.get("diagnostics") or {},
            vocabulary=metadata.get("vocabulary"),
            added_tokens=metadata.get("added_tokens") or [],
        )


def _dump_ids(item_ids: list[str]) -> str:
    import json

    return json.dumps(item_ids, ensure_ascii=False) + "\n"


def build_semantic_ids(
    codes,
    item_ids,
    *,
    scheme: str,
    codebook_sizes: list[int] | None = None,
    add_collision_level: bool | str | None = None,
    extra_diagnostics: dict | None = None,
    collision_codebook_size: int | None = None,
) -> SemanticIDs:
    """Codes (without a collision level) -> :class:`SemanticIDs`, adding the collision level as asked.

    ``add_collision_level``: ``True`` always appends it (TIGER: every ID has the same length), ``None``/``"auto"``
    only when some items share a tuple, ``False`` never (and raises if some items share a tuple). Variable-length codes
    (``-1`` padding) must already be unique: there is no single last level to append to. ``collision_codebook_size``
    fixes the collision level's size (default: the largest number of items sharing one tuple); more items on one
    tuple than it holds raise.
    """
    codes = check_codes(codes, allow_padding=True)
    item_ids = check_item_ids(item_ids, len(codes), what="codes")
    option = check_collision_option(add_collision_level)
    if collision_codebook_size is not None and (
        isinstance(collision_codebook_size, bool) or not isinstance(collision_codebook_size, int | np.integer)
        or collision_codebook_size < 1
    ):  # fmt: skip
        raise ValueError(f"collision_codebook_size must be a positive int or None, got {collision_codebook_size!r}.")
    if codebook_sizes is None:
        codebook_sizes = (codes.max(axis=0) + 1).tolist()
    codebook_sizes = [int(size) for size in codebook_sizes]
    if len(codebook_sizes) != codes.shape[1]:
        raise ValueError(f"codebook_sizes has {len(codebook_sizes)} entries but codes have {codes.shape[1]} levels.")
    group, counts = tuple_groups(codes)
    has_collisions = bool((counts > 1).any())
    if option is False and has_collisions:
        shared = int((counts[group] > 1).sum())
        raise ValueError(
            f"{shared} of {len(codes)} items share their code tuple with another item, and add_collision_level=False. "
            "Pass add_collision_level=True (TIGER's extra disambiguation level) or use larger/more codebooks."
        )
    if (codes < 0).any() and has_collisions:
        shared = int((counts[group] > 1).sum())
        raise ValueError(
            f"{shared} of {len(codes)} variable-length IDs are shared by more than one item. Make them unique before "
            "(e.g. append a distinguishing code to the repeated ones, as TitleIDs does)."
        )
    add = (option is True or (option is None and has_collisions)) and not (codes < 0).any()
    if add and collision_codebook_size is not None and counts.max() > collision_codebook_size:
        crowded = np.flatnonzero(counts[group] > collision_codebook_size)
        raise ValueError(
            f"{int((counts > collision_codebook_size).sum())} code tuples are shared by more items than the collision "
            f"level holds (collision_codebook_size={collision_codebook_size}; the most crowded tuple has "
            f"{int(counts.max())} items, e.g. {[item_ids[i] for i in crowded[:5]]}). Raise collision_codebook_size "
            f"to at least {int(counts.max())}, leave it unset (sized to fit), or spread the items with larger or more "
            "codebooks (or balanced=True for RQKMeans)."
        )
    full = _append_collision_level(codes) if add else codes
    collision_size = int(counts.max()) if collision_codebook_size is None else int(collision_codebook_size)
    sizes = codebook_sizes + ([collision_size] if add else [])
    diagnostics = compute_diagnostics(full, sizes, add)
    diagnostics["fit_seconds"] = None  # codes made elsewhere; quantisers fill it in
    diagnostics.update(extra_diagnostics or {})
    return SemanticIDs(
        codes=full,
        codebook_sizes=sizes,
        item_ids=item_ids,
        scheme=scheme,
        has_collision_level=add,
        diagnostics=diagnostics,
    )


def from_codes(
    codes,
    item_ids,
    add_collision_level: bool | str | None = None,
    codebook_sizes: list[int] | None = None,
    scheme: str = "custom",
    collision_codebook_size: int | None = None,
) -> SemanticIDs:
    """Wrap your own int ``[n_items, n_levels]`` codes (one row per item, in ``item_ids`` order) as SemanticIDs.

    Args:
        codes: non-negative ints, one row per item; variable-length IDs end in ``-1`` padding (and must be unique).
        item_ids: one unique id per row.
        add_collision_level: ``None``/``"auto"`` (default) appends TIGER's disambiguation level only when some items
            share a tuple; ``True`` always; ``False`` never (raises when tuples collide).
        codebook_sizes: codes per level (default: max code + 1 per level).
        collision_codebook_size: size of the collision level (default: the most items sharing one tuple); a fixed
            size (e.g. TIGER-style 256 codes, so a model's vocabulary stays put) raises when more items share a tuple.

    Example:

    ```python
    >>> from hf_genrec.semantic_ids.ids import from_codes
    >>> ids = from_codes([[0, 1], [0, 2], [1, 1], [0, 1]], ["a", "b", "c", "d"])  # "a" and "d" share (0, 1)
    >>> ids.codes.tolist()  # so a collision level numbers them
    [[0, 1, 0], [0, 2, 0], [1, 1, 0], [0, 1, 1]]
    >>> ids.codes_of("d")
    (0, 1, 1)
    ```
    """
    codes = check_codes(codes, allow_padding=True)
    check_item_ids(item_ids, len(codes), what="codes")
    if codebook_sizes is not None and len(codebook_sizes) != codes.shape[1]:
        raise ValueError(
            f"codebook_sizes has {len(codebook_sizes)} entries but codes have {codes.shape[1]} levels; give one size "
            "per level of your codes (the collision level, if added, is sized automatically)."
        )
    if codebook_sizes is not None:
        too_big = codes.max(axis=0) >= np.asarray(codebook_sizes)
        if too_big.any():
            level = int(np.flatnonzero(too_big)[0])
            raise ValueError(
                f"level {level} has code {int(codes[:, level].max())} but codebook_sizes[{level}] = "
                f"{codebook_sizes[level]}; codes must be < their level's codebook size."
            )
    return build_semantic_ids(
        codes,
        item_ids,
        scheme=scheme,
        codebook_sizes=codebook_sizes,
        add_collision_level=add_collision_level,
        collision_codebook_size=collision_codebook_size,
    )
