"""Collaborative item features: which items users interact with close together, as dense vectors for the quantisers.

Text embeddings place items by what they are; semantic IDs built on them share a prefix between items that read
alike, whether or not people buy them together. Vectors learned from the interactions themselves place items by who
uses them together, so IDs built on them share prefixes between items that follow each other in histories, which is
what the seq2seq model has to predict. The method is the classic count-based one (Levy & Goldberg, 2014): positive
pointwise mutual information of items co-occurring within a few steps of each other in users' sequences, factorised
by a truncated SVD (`collaborative_features`). The other reads the item embeddings of a SASRec trained on the
sequences (`sasrec_features`; the training is the caller's, `hf_genrec.training.sasrec.train_sasrec_for_features`):
slower (minutes of training), but learnt from order as well as co-occurrence. Both need no text, so they also serve
catalogues with attribute ids only. Nothing in this module trains a model.

Build them from the **training part** of each sequence only (`hf_genrec.evaluation.baselines.training_part`): the validation
and test items must not shape the IDs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

import numpy as np
import torch

logger = logging.getLogger(__name__)


def encode_sequences(sequences: Iterable[Sequence[str]], item_ids: Sequence[str]) -> list[list[int]]:
    """Each sequence's items as rows of ``item_ids``; an item outside ``item_ids`` is an error that names it."""
    index = {item: i for i, item in enumerate(item_ids)}
    if len(index) != len(item_ids):
        raise ValueError("item_ids holds an item twice; pass the item table's ids, each once.")
    encoded = []
    for n, sequence in enumerate(sequences):
        try:
            encoded.append([index[item] for item in sequence])
        except KeyError as error:
            raise ValueError(
                f"Sequence {n} holds item {error.args[0]!r}, which is not in item_ids; pass the item table the "
                "sequences come from."
            ) from None
    return encoded


def cooccurrence_pairs(
    sequences: Iterable[Sequence[str]], item_ids: Sequence[str], window: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Item index pairs ``(rows, cols, weights)`` of every two items at most ``window`` steps apart in a sequence,
    both ways round, weighted ``1 / steps``."""
    encoded = encode_sequences(sequences, item_ids)
    lengths = [len(rows) for rows in encoded]
    flat = np.asarray([row for rows in encoded for row in rows], dtype=np.int64)
    user = np.repeat(np.arange(len(lengths)), lengths)
    rows, cols, weights = [], [], []
    for step in range(1, window + 1):
        same_user = user[step:] == user[:-step]
        first, second = flat[:-step][same_user], flat[step:][same_user]
        rows += [first, second]
        cols += [second, first]
        weights += [np.full(2 * len(first), 1.0 / step)]
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)


def collaborative_features(
    sequences: Iterable[Sequence[str]],
    item_ids: Sequence[str],
    dim: int = 64,
    window: int = 3,
    context_smoothing: float = 0.75,
    seed: int = 0,
) -> np.ndarray:
    """Item vectors ``float32 [n_items, dim]`` from the PPMI of windowed co-occurrence, factorised by truncated SVD.

    Args:
        sequences: each user's items in time order; **only the part a model may train on** (no validation or test
            items).
        item_ids: the item table's ids; row ``i`` of the result belongs to ``item_ids[i]``.
        dim: vector size (at most ``n_items - 1``).
        window: items up to this many steps apart count as co-occurring, weighted ``1 / steps``.
        context_smoothing: exponent of the context counts in the PMI (0.75 damps the pull of popular items).
        seed: seed of the randomised SVD.

    Returns:
        Unit-length rows (``U * sqrt(S)`` normalised). Items that co-occur with nothing in ``sequences`` get a zero
        row, and their number is logged: their IDs carry no collaborative meaning.

    Example:

    ```python
    >>> from hf_genrec.features.collaborative import collaborative_features
    >>> sequences = [["a", "b", "c"], ["a", "b"], ["c", "d"], ["d", "c"]]
    >>> collaborative_features(sequences, ["a", "b", "c", "d"], dim=2).shape
    (4, 2)
    ```
    """
    item_ids = list(item_ids)
    n_items = len(item_ids)
    if not 1 <= dim < n_items:
        raise ValueError(f"dim={dim} must be between 1 and n_items - 1 = {n_items - 1}.")
    if window < 1:
        raise ValueError(f"window={window} must be at least 1 step.")
    rows, cols, weights = cooccurrence_pairs(sequences, item_ids, window)
    if len(rows) == 0:
        raise ValueError(
            "No two items co-occur in the sequences (every sequence has fewer than 2 items): collaborative features "
            "need interaction histories; use text or attribute features instead."
        )
    counts = torch.sparse_coo_tensor(
        torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(weights), (n_items, n_items), check_invariants=False
    ).coalesce()
    pair, count = counts.indices(), counts.values()
    item_count = torch.zeros(n_items, dtype=torch.float64).index_add_(0, pair[0], count)
    total = count.sum()
    context = item_count**context_smoothing
    context = context / context.sum()
    pmi = torch.log(count / total) - torch.log(item_count[pair[0]] / total) - torch.log(context[pair[1]])
    positive = pmi > 0
    ppmi = torch.sparse_coo_tensor(
        pair[:, positive], pmi[positive].float(), (n_items, n_items), check_invariants=False
    ).coalesce()
    with torch.random.fork_rng(devices=[]):  # seeded without touching the caller's generator
        torch.manual_seed(seed)
        left, singular, _ = torch.svd_lowrank(ppmi, q=dim, niter=6)
    # fix each direction's sign (its largest-magnitude component positive), so the features are reproducible
    signs = torch.sign(left[left.abs().argmax(dim=0), torch.arange(left.shape[1])])
    left = left * torch.where(signs == 0, 1.0, signs)
    vectors = (left * singular.sqrt()).numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 1e-12)
    isolated = int((item_count == 0).sum())
    logger.info(
        "Collaborative item features: %d x %d from %d co-occurring pairs (window %d); %d items co-occur with "
        "nothing in the training sequences and get zero vectors.",
        n_items,
        dim,
        int(positive.sum()),
        window,
        isolated,
    )
    return vectors.astype(np.float32)


def sasrec_features(
    model: torch.nn.Module, item_ids: Sequence[str], sequences: Iterable[Sequence[str]] | None = None
) -> np.ndarray:
    """Item vectors ``float32 [n_items, dim]``: the item embeddings of a trained SASRec, unit length.

    SASRec scores the next item by the dot product of its state with each item's embedding (shared with its input),
    so items it finds interchangeable as next items get close vectors: the closeness a generative model's ID
    prefixes should have, learnt from order and context rather than from co-occurrence counts. Nothing is trained
    here: train the model first, on the training part of the sequences, e.g. with
    `hf_genrec.training.sasrec.train_sasrec_for_features` (what the recipes do for ``item_features: sasrec``). On
    Amazon Beauty, IDs from these vectors did not rank better than IDs from `collaborative_features` (see the
    README's Beauty results), so the recipes keep those.

    Args:
        model: a trained `hf_genrec.models.sasrec.SASRecModel` whose row ``i`` (token ``i + 1``) is ``item_ids[i]``.
        item_ids: the item table's ids; row ``i`` of the result belongs to ``item_ids[i]``.
        sequences: the item-id sequences the model trained on. Items in none of them get a zero row (their
            embeddings never trained: they hold their random initialisation), and their number is logged. Without
            them every row is kept.

    Returns:
        Unit-length rows (zero rows for the untrained items).

    Example:

    ```python
    >>> from hf_genrec.models.sasrec import SASRecConfig, SASRecModel
    >>> sequences, item_ids = [["a", "b", "c"], ["b", "c"]], ["a", "b", "c", "d"]
    >>> # in practice: model = train_sasrec_for_features(sequences, item_ids) from hf_genrec.training.sasrec
    >>> model = SASRecModel(SASRecConfig(num_items=len(item_ids), hidden_size=8))
    >>> vectors = sasrec_features(model, item_ids, sequences)
    >>> vectors.shape, bool(vectors[3].any())  # "d" is in no sequence: a zero row
    ((4, 8), False)
    ```
    """
    embeddings = getattr(model, "item_embeddings", None)
    if not isinstance(embeddings, torch.nn.Embedding):
        raise TypeError(
            f"sasrec_features reads the item embeddings of a trained SASRecModel, got {type(model).__name__}. "
            "Train one first, e.g. hf_genrec.training.sasrec.train_sasrec_for_features(sequences, item_ids)."
        )
    item_ids = list(item_ids)
    if embeddings.num_embeddings != len(item_ids) + 1:
        raise ValueError(
            f"The SASRec scores {embeddings.num_embeddings - 1} items but item_ids has {len(item_ids)}: pass the item "
            "table it was trained on (its row i is item_ids[i])."
        )
    seen = np.ones(len(item_ids), dtype=bool)
    if sequences is not None:
        seen[:] = False
        seen[[row for rows in encode_sequences(sequences, item_ids) for row in rows]] = True
    vectors = embeddings.weight[1:].detach().float().cpu().numpy()
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = np.divide(vectors, norms, out=np.zeros_like(vectors), where=(norms > 1e-12) & seen[:, None])
    logger.info(
        "SASRec item features: %d x %d; %d items are in no training sequence and get zero vectors.",
        len(item_ids),
        vectors.shape[1],
        int((~seen).sum()),
    )
    return vectors.astype(np.float32)


def fold_in_features(
    item_ids: Sequence[str],
    sequences: Iterable[Sequence[str]],
    known_item_ids: Sequence[str],
    known_features: np.ndarray,
    window: int = 3,
) -> np.ndarray:
    """Features of new items ``float32 [len(item_ids), d]`` from the known items they co-occur with.

    A new item has no row in the factorised co-occurrence matrix, but its first interactions show which known items
    people use it with. Its vector is the mean of those items' vectors, weighted as `cooccurrence_pairs` weighs them
    (``1 / steps`` within ``window``), and scaled to their mean length, so the fitted quantiser places it beside
    them. It works for any feature space (collaborative or text) whose known vectors you pass.

    Args:
        item_ids: the new items, each once, none of them known.
        sequences: interaction histories in time order that mention the new items (other items must be known).
        known_item_ids: the catalogue's ids; row ``i`` of ``known_features`` belongs to ``known_item_ids[i]``.
        known_features: float ``[len(known_item_ids), d]``.
        window: items up to this many steps apart count as co-occurring.

    Raises:
        ValueError: if a new item co-occurs with no known item in ``sequences`` (it cannot be placed from them:
            give it text features or codes), or a sequence holds an item that is neither known nor new.
    """
    new = [str(item) for item in item_ids]
    known = [str(item) for item in known_item_ids]
    features = np.asarray(known_features, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(known):
        raise ValueError(
            f"known_features must be [len(known_item_ids)={len(known)}, d], got shape {tuple(features.shape)}."
        )
    overlap = set(new) & set(known)
    if overlap:
        raise ValueError(f"{len(overlap)} new items are already known (first: {sorted(overlap)[:5]}).")
    if window < 1:
        raise ValueError(f"window={window} must be at least 1 step.")
    rows, cols, weights = cooccurrence_pairs(sequences, new + known, window)
    n_new = len(new)
    into_new = (rows < n_new) & (cols >= n_new)  # a new item beside a known one
    rows, cols, weights = rows[into_new], cols[into_new] - n_new, weights[into_new]
    total = np.bincount(rows, weights=weights, minlength=n_new)
    lonely = [item for item, weight in zip(new, total.tolist()) if weight == 0]
    if lonely:
        raise ValueError(
            f"{len(lonely)} new items co-occur with no catalogue item within {window} steps in the sequences "
            f"(first: {lonely[:5]}), so nothing places them; pass histories that mention them beside known items, or "
            "add them with text features or codes= instead."
        )
    summed = np.zeros((n_new, features.shape[1]))
    np.add.at(summed, rows, weights[:, None] * features[cols])
    neighbour_norm = np.bincount(rows, weights=weights * np.linalg.norm(features[cols], axis=1), minlength=n_new)
    neighbour_norm /= total  # their weighted mean length
    lengths = np.linalg.norm(summed, axis=1)
    scale = np.divide(neighbour_norm, lengths, out=np.zeros_like(lengths), where=lengths > 1e-12)
    return (summed * scale[:, None]).astype(np.float32)
