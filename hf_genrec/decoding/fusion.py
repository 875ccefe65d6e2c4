"""A dense next-item scorer (SASRec) fused into the generative model's beam search: the hybrid recommender.

A generative recommender spells the next item's semantic ID; an ID-based model such as SASRec scores every item
with its own embedding, which remembers item-to-item patterns that shared ID prefixes blur. The hybrid keeps the
constrained beam search (every result is a catalogue item, the beams decide what is spelled) and adds the scorer's
opinion the same way the successor prior is added (shallow fusion, `hf_genrec.models.prior`): each of the scorer's
``top_k`` most likely next items ``B`` gains

    weight * log(1 + P_scorer(B | history) / smoothing)

spread over the tokens of its ID through the trie, so beams are steered towards the scorer's candidates from the
first token. Items outside the scorer's top ``top_k`` (and items added to the catalogue after it was trained) get
no bonus, and the model's own ranking decides among them.

`GenerativeRecommender` holds the scorer (``recommender.scorer``, saved in the bundle's ``scorer/`` folder) and
fuses it when ``config.scorer_weight`` (or ``recommend(..., scorer_weight=)``) is above 0. The scorer must number
items as the recommender's item map does (`reindex_items` converts one trained on another item order).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..models.prior import ItemTransitions, TransitionFusionLogitsProcessor
from ..models.sasrec import SASRecModel, left_pad
from .trie import TrieIndex

SCORER_DIR = "scorer"


def scorer_priors(
    scorer: SASRecModel,
    histories: Sequence[Sequence[int]],
    top_k: int,
    exclude_history: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The scorer's ``top_k`` most likely next items of each history and their probabilities, as the two
    ``[batch, top_k]`` arrays `TransitionFusionLogitsProcessor` takes (``ItemTransitions.batch_prior``'s layout).

    Args:
        scorer (`SASRecModel`): numbers items as the histories do (row ``i`` is token ``i + 1``).
        histories (`Sequence[Sequence[int]]`): item rows, oldest first; rows the scorer does not know (items added
            to the catalogue after it was trained) are left out of what it reads.
        top_k (`int`): candidates per history; the rest of the catalogue gets no bonus.
        exclude_history (`bool`): give the history's own items no probability (the rest share it).
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}.")
    known = scorer.config.num_items
    rows = [[int(i) for i in history if 0 <= int(i) < known] for history in histories]
    tokens = left_pad(rows, scorer.config.max_positions).to(scorer.device)
    log_probs = scorer.item_log_probs(tokens, exclude_history=exclude_history)[:, 1:]  # column 0 is padding
    top, items = log_probs.topk(min(top_k, known), dim=-1)
    return items.cpu().numpy(), top.float().exp().cpu().numpy()


def fusion_processors(
    histories: Sequence[Sequence[int]],
    trie_index: TrieIndex,
    spellings: torch.Tensor,
    paths: torch.Tensor,
    transitions: ItemTransitions | None = None,
    transition_weight: float = 0.0,
    transition_recent_items: int = 3,
    transition_smoothing: float = 0.01,
    transition_normalize: bool = False,
    scorer: SASRecModel | None = None,
    scorer_histories: Sequence[Sequence[int]] | None = None,
    scorer_weight: float = 0.0,
    scorer_top_k: int = 200,
    scorer_smoothing: float = 0.01,
    exclude_history: bool = False,
) -> LogitsProcessorList:
    """What is fused into a constrained beam search over the catalogue whose trie, spellings and trie paths are
    given, for histories of item rows: the successor prior of ``transitions`` (``transition_weight``), then the
    ``scorer``'s ``scorer_top_k`` candidates (``scorer_weight``), each item gaining ``weight * log(1 + P /
    smoothing)``; a weight of 0 leaves its processor out. The scorer reads ``scorer_histories`` when given (one per
    history, e.g. further back than the model reads), else ``histories``. One builder for `GenerativeRecommender`
    and `GenRecTrainer`, so ranking and validation fuse alike."""
    processors = []
    if transition_weight:
        processors.append(
            TransitionFusionLogitsProcessor(
                trie_index,
                spellings,
                transitions.batch_prior(histories, transition_recent_items),
                weight=transition_weight,
                smoothing=transition_smoothing,
                paths=paths,
                # a model trained on softmax(log p + bonus) is ranked with the same distribution
                normalize=transition_normalize,
            )
        )
    if scorer_histories is not None and len(scorer_histories) != len(histories):
        raise ValueError(f"scorer_histories has {len(scorer_histories)} entries for {len(histories)} histories.")
    if scorer_weight:
        # a model trained with the prior in its loss renormalises each step after the prior, not after this
        processors.append(
            TransitionFusionLogitsProcessor(
                trie_index,
                spellings,
                scorer_priors(
                    scorer,
                    histories if scorer_histories is None else scorer_histories,
                    scorer_top_k,
                    exclude_history=exclude_history,
                ),
                weight=scorer_weight,
                smoothing=scorer_smoothing,
                paths=paths,
            )
        )
    return LogitsProcessorList(processors)


def check_scorer_items(scorer: SASRecModel, num_items: int, new_items: int = 0) -> None:
    """Raise unless ``scorer`` is a `SASRecModel` numbering the catalogue's ``num_items`` items (or all but its
    ``new_items`` added ones, which it cannot score)."""
    if not isinstance(scorer, SASRecModel):
        raise TypeError(f"scorer must be a SASRecModel (hf_genrec.models.sasrec), got {type(scorer).__name__}.")
    sizes = {num_items, num_items - new_items}
    if scorer.config.num_items not in sizes:
        raise ValueError(
            f"The scorer scores {scorer.config.num_items} items but the catalogue has {num_items}"
            + (f" ({num_items - new_items} without the items added since training)" if new_items else "")
            + ": it must number items as the recommender's item map does. Train it on the item map's rows "
            "(`recommender.item_ids`), or convert it with hf_genrec.decoding.fusion.reindex_items."
        )


def reindex_items(scorer: SASRecModel, from_ids: Sequence[str], to_ids: Sequence[str]) -> SASRecModel:
    """A copy of ``scorer`` (trained with item ``from_ids[i]`` as row ``i``) that numbers items as ``to_ids``.

    Every item of ``to_ids`` must be in ``from_ids``; items only ``from_ids`` holds are dropped.
    """
    from_ids, to_ids = [str(i) for i in from_ids], [str(i) for i in to_ids]
    if len(from_ids) != scorer.config.num_items:
        raise ValueError(
            f"from_ids names {len(from_ids)} items but the scorer has {scorer.config.num_items}: pass the item ids "
            "in the order the scorer was trained with."
        )
    position = {item: row for row, item in enumerate(from_ids)}
    missing = [item for item in to_ids if item not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} items of to_ids are unknown to the scorer (e.g. {missing[:3]}): it cannot score items "
            "it was not trained on. Train it on the same catalogue."
        )
    config = copy.deepcopy(scorer.config)
    config.num_items = len(to_ids)
    out = SASRecModel(config).to(scorer.device)
    state = scorer.state_dict()
    table = state["item_embeddings.weight"]
    rows = torch.tensor([0] + [position[item] + 1 for item in to_ids], device=table.device)
    state["item_embeddings.weight"] = table[rows]
    out.load_state_dict(state)
    return out.eval()
