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
fuses it when ``config.fusion.scorer_weight`` (or ``recommend(..., scorer_weight=)``) is above 0. The scorer must number
items as the recommender's item map does (`reindex_items` converts one trained on another item order).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel, left_pad
from .trie import TrieIndex, candidate_positions


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


def best_fusion_weight(grid: dict[str, dict[str, float]], metric: str = "ndcg@10") -> str:
    """The weight (a key of ``grid``: weight → validation metrics) whose ``metric`` is highest; ties go to the
    smaller weight, which leans less on the prior."""
    return max(grid, key=lambda weight: (grid[weight][metric], -float(weight)))


def _is_padded(priors) -> bool:
    """Whether ``priors`` is ``(items, probs)``, two ``[batch, width]`` arrays (`ItemTransitions.batch_prior`),
    rather than one ``(items, probs)`` pair per history."""
    return isinstance(priors, tuple) and len(priors) == 2 and all(getattr(x, "ndim", None) == 2 for x in priors)


class TransitionFusionLogitsProcessor(LogitsProcessor):
    """Adds ``weight * log(1 + P(B | last item) / smoothing)`` to the score of every item ``B``, spread over its
    tokens through the trie (see the module docstring).

    Apply it last, to log-probabilities that are already constrained and normalised: the bonus is not a
    probability, and normalising after it would undo it. ``generate_items(..., fusion=...)`` does this on every
    decoding path. Rows of ``input_ids`` are ``batch * beams``, the beams of each history together.

    Args:
        index (`TrieIndex`): the item trie the search is constrained to.
        spellings (`torch.Tensor`): ``[n_items, max_length]`` every item's spelling, ``-1`` after its EOS.
        priors (`Sequence[tuple[np.ndarray, np.ndarray]]` or `tuple[np.ndarray, np.ndarray]`): for each history,
            item rows and their prior probabilities (e.g. `ItemTransitions.prior`); or all histories' at once, as
            two ``[batch, width]`` arrays padded with item ``-1`` (`ItemTransitions.batch_prior`). Items left out
            get no bonus.
        weight (`float`): how much the prior counts against the model's log-probability (0 turns it off).
        smoothing (`float`): the successor probability at which the bonus is ``weight * log 2``; smaller values
            make rare successors count more.
        decoder_start_length (`int`, defaults to 1): tokens at the front of ``input_ids`` that are not part of the
            spelling (T5's decoder start token).
        paths (`torch.Tensor`, *optional*): ``[n_items, max_length]`` the trie nodes along every item's spelling,
            ``index.item_paths(spellings, torch.arange(len(spellings)))[1]``, computed once by a caller that builds
            many processors over the same trie, so that each does not walk the trie for every successor again.
        normalize (`bool`, defaults to `False`): take the log-softmax of each step's fused scores, for a model
            trained with the prior fused into its loss (``transition_weight_in_loss``): it learned each step's
            distribution as ``softmax(log p_model + bonus)``, so it is ranked with the same.
    """

    def __init__(
        self,
        index: TrieIndex,
        spellings: torch.Tensor,
        priors: Sequence[tuple[np.ndarray, np.ndarray]],
        weight: float,
        smoothing: float,
        decoder_start_length: int = 1,
        paths: torch.Tensor | None = None,
        normalize: bool = False,
    ):
        if weight < 0 or smoothing <= 0:
            raise ValueError(f"weight must be >= 0 and smoothing > 0, got weight={weight}, smoothing={smoothing}.")
        self.index = index
        self.decoder_start_length = int(decoder_start_length)
        self.normalize = bool(normalize)
        if _is_padded(priors):
            items, probs = (torch.as_tensor(np.asarray(x)) for x in priors)
            items, probs = items.long(), probs.float()
            if items.shape != probs.shape:
                raise ValueError(f"Padded priors need items and probs of one shape, got {items.shape}, {probs.shape}.")
        else:
            found = [(np.asarray(rows, dtype=np.int64), np.asarray(p, dtype=np.float32)) for rows, p in priors]
            width = max((len(items) for items, _ in found), default=0)
            items = torch.full((len(found), max(width, 1)), -1, dtype=torch.long)
            probs = torch.zeros((len(found), max(width, 1)), dtype=torch.float32)
            for b, (rows, p) in enumerate(found):
                items[b, : len(rows)] = torch.from_numpy(rows)
                probs[b, : len(rows)] = torch.from_numpy(p)
        self.batch = len(items)
        device = index.keys.device
        # a successor the trie does not hold (a removed item, one outside a sub-catalogue's trie) carries no mass
        if paths is None:
            spelled, path = index.item_paths(spellings, items)
        else:
            if paths.shape != spellings.shape:
                raise ValueError(
                    f"paths {tuple(paths.shape)} must have the shape of spellings {tuple(spellings.shape)}."
                )
            rows = items.clamp(min=0).to(device)
            spelled = spellings.to(device=device, dtype=torch.long)[rows]
            path = torch.where((items >= 0).to(device)[..., None], paths.to(device)[rows], -1)
        probs = torch.where(path[..., 0] >= 0, probs.to(device), 0.0)
        # mass[b, s, d]: the successor probability below the node successor s passes at depth d
        # (summed over the real entries only: histories' priors differ in length, and the padding can dominate)
        on_path = path >= 0
        history = torch.arange(self.batch, device=device)[:, None, None].expand_as(path)
        _, inverse = torch.unique((history * index.num_nodes + path)[on_path], return_inverse=True)
        totals = torch.zeros(int(inverse.max()) + 1 if inverse.numel() else 1, device=device)
        totals.index_add_(0, inverse, probs[..., None].expand_as(path)[on_path].float())
        mass = torch.zeros(path.shape, device=device)
        mass[on_path] = totals[inverse]
        #: bonus of a node: weight * log(1 + mass / smoothing) (the root's counts as 0: a shift every item shares)
        self.node_bonus = torch.where(path >= 0, weight * torch.log1p(mass / smoothing), 0.0)
        self.path = path
        self.token = spelled

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        bonuses = self._bonuses(input_ids, scores.device)
        if bonuses is None:
            return scores
        parent_bonus, token, child = bonuses
        rows, vocab = scores.shape
        token = torch.where(token < 0, vocab, token)
        # a token leading to a node without successors loses the parent's bonus; one leading to successors keeps
        # that of its child
        bonus = (-parent_bonus)[:, None].expand(rows, vocab + 1).clone()
        bonus.scatter_(1, token, torch.where(token < vocab, child, bonus.gather(1, token)))
        fused = scores + bonus[:, :vocab]
        return torch.log_softmax(fused, dim=-1) if self.normalize else fused

    def candidate_scores(
        self, input_ids: torch.LongTensor, candidates: torch.Tensor, scores: torch.FloatTensor
    ) -> torch.FloatTensor:
        """``__call__`` on the scores of each row's candidate tokens ``[rows, K]`` (sorted; see
        `hf_genrec.decoding.trie.allowed_logits`) rather than of the whole vocabulary."""
        bonuses = self._bonuses(input_ids, scores.device)
        if bonuses is None:
            return scores
        parent_bonus, token, child = bonuses
        rows, k = scores.shape
        position, found = candidate_positions(candidates, token)
        bonus = (-parent_bonus)[:, None].expand(rows, k + 1).clone()
        bonus.scatter_(1, position, torch.where(found, child, bonus.gather(1, position)))
        fused = scores + bonus[:, :k]
        return torch.log_softmax(fused, dim=-1) if self.normalize else fused

    def _bonuses(
        self, input_ids: torch.LongTensor, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """`(parent_bonus, token, child)` for each beam row: the bonus of the node the row is at ``[rows]``, the
        next tokens that lead to successors ``[rows, S]`` (``-1`` where none) and the bonus each then
        gains over the parent's ``[rows, S]``; `None` once past the longest spelling."""
        step = input_ids.shape[1] - self.decoder_start_length
        if step >= self.token.shape[-1] or self.batch == 0:
            return None
        beams, node = self.index.beam_nodes(input_ids, self.batch, self.decoder_start_length, "priors")
        path, node_bonus = self.path.to(device), self.node_bonus.to(device)
        if step == 0:
            parent_bonus = torch.zeros(self.batch, beams, device=device)
            # every successor lies below the root
            match = (path[..., 0] >= 0)[:, None, :].expand(self.batch, beams, -1)
        else:
            node = node.to(device).view(self.batch, beams)
            match = (node[..., None] == path[:, None, :, step - 1]) & (node[..., None] >= 0)  # [batch, beams, S]
            below = torch.where(match, node_bonus[:, None, :, step - 1], 0.0)
            parent_bonus = below.max(dim=-1).values  # every successor through this node carries the same bonus
        token = torch.where(match, self.token[..., step].to(device)[:, None, :], -1)
        child = node_bonus[:, None, :, step].expand_as(token) - parent_bonus[..., None]
        rows = self.batch * beams
        return parent_bonus.reshape(rows), token.reshape(rows, -1), child.reshape(rows, -1)


@dataclass
class FusionConfig:
    """What a constrained beam search over the catalogue bans and fuses at ranking time, beside the model's own
    scores. One object for every place that ranks: `GenRecTrainingArguments` inherits these fields (they are the
    ``hf-genrec train`` flags and rank the validation users), `GenRecConfig.fusion` keeps them in the bundle, and
    ``GenerativeRecommender.recommend(..., fusion=...)`` or a keyword per field overrides them for one call.

    Each fused source adds ``weight * log(1 + P(item | history) / smoothing)`` to an item's score, spread over the
    tokens of its ID through the trie (shallow fusion); a weight of 0 leaves it out.
    """

    exclude_history: bool = field(
        default=False,
        metadata={
            "help": "Rank only items that are not in the history (banned inside the beam search), for data where a "
            "user meets an item once (reviews, ratings)."
        },
    )
    transition_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the successor prior of the training sequences (hf_genrec.models.prior) fused into the "
            "beam search: an item gains transition_weight * log(1 + P(item | history) / transition_smoothing). 0: off."
        },
    )
    transition_smoothing: float = field(
        default=0.01,
        metadata={"help": "Successor probability at which the prior's bonus is transition_weight * log 2."},
    )
    transition_recent_items: int = field(
        default=3, metadata={"help": "The prior mixes the successors of this many last history items (1, 1/2, ...)."}
    )
    transition_normalize: bool = field(
        default=False,
        metadata={
            "help": "Renormalise each decoding step's fused scores (a log-softmax), as a model trained with the prior "
            "in its loss (transition_weight_in_loss) needs; set by training when that is on."
        },
    )
    scorer_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the dense next-item scorer (a SASRec: the hybrid) fused into the beam search: each of "
            "its scorer_top_k most likely items gains scorer_weight * log(1 + P / scorer_smoothing). 0: off."
        },
    )
    scorer_top_k: int = field(default=200, metadata={"help": "Items per history that get the scorer's bonus."})
    scorer_smoothing: float = field(
        default=0.01, metadata={"help": "Scorer probability at which its bonus is scorer_weight * log 2."}
    )

    def __post_init__(self):
        self.check_fusion()

    def check_fusion(self) -> None:
        """Raise on settings no search can use (negative weights, smoothing <= 0, windows < 1)."""
        if self.transition_weight < 0 or self.transition_smoothing <= 0:
            raise ValueError(
                f"transition_weight must be >= 0 and transition_smoothing > 0, got {self.transition_weight} and "
                f"{self.transition_smoothing}."
            )
        if self.scorer_weight < 0 or self.scorer_smoothing <= 0 or self.scorer_top_k < 1:
            raise ValueError(
                f"scorer_weight must be >= 0, scorer_smoothing > 0 and scorer_top_k >= 1, got {self.scorer_weight}, "
                f"{self.scorer_smoothing} and {self.scorer_top_k}."
            )
        if self.transition_recent_items < 1:
            raise ValueError(f"transition_recent_items must be >= 1, got {self.transition_recent_items}.")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(FusionConfig))

    @property
    def fusion(self) -> FusionConfig:
        """These settings alone, as a `FusionConfig` (also on objects that inherit the fields, such as
        `GenRecTrainingArguments`)."""
        return FusionConfig(**{name: getattr(self, name) for name in FusionConfig.field_names()})

    @property
    def fuses(self) -> bool:
        """Whether anything is fused into the search (a prior or a scorer)."""
        return bool(self.transition_weight or self.scorer_weight)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FusionConfig.field_names()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | FusionConfig | None) -> FusionConfig:
        """A `FusionConfig` from a mapping of its fields; unknown keys are an error that names them."""
        if values is None:
            return cls()
        if isinstance(values, FusionConfig):
            return values.fusion
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise TypeError(f"Unknown fusion settings {unknown}; FusionConfig has {list(cls.field_names())}.")
        return cls(**values)

    def replace(self, **overrides: Any) -> FusionConfig:
        """A copy with the given fields changed; ``None`` values keep the current one."""
        changes = {name: value for name, value in overrides.items() if value is not None}
        return FusionConfig.from_dict({**self.to_dict(), **changes})


def fusion_processors(
    histories: Sequence[Sequence[int]],
    trie_index: TrieIndex,
    spellings: torch.Tensor,
    paths: torch.Tensor,
    fusion: FusionConfig,
    transitions: ItemTransitions | None = None,
    scorer: SASRecModel | None = None,
    scorer_histories: Sequence[Sequence[int]] | None = None,
) -> LogitsProcessorList:
    """What ``fusion`` fuses into a constrained beam search over the catalogue whose trie, spellings and trie paths
    are given, for histories of item rows: the successor prior of ``transitions`` (``fusion.transition_weight``),
    then the ``scorer``'s ``fusion.scorer_top_k`` candidates (``fusion.scorer_weight``). The scorer reads
    ``scorer_histories`` when given (one per history, e.g. further back than the model reads), else ``histories``.
    One builder for `GenerativeRecommender` and `GenRecTrainer`, so ranking and validation fuse alike."""
    processors = []
    if fusion.transition_weight:
        if transitions is None:
            raise ValueError("transition_weight > 0 needs the successor prior (ItemTransitions); none was given.")
        processors.append(
            TransitionFusionLogitsProcessor(
                trie_index,
                spellings,
                transitions.batch_prior(histories, fusion.transition_recent_items),
                weight=fusion.transition_weight,
                smoothing=fusion.transition_smoothing,
                paths=paths,
                # a model trained on softmax(log p + bonus) is ranked with the same distribution
                normalize=fusion.transition_normalize,
            )
        )
    if scorer_histories is not None and len(scorer_histories) != len(histories):
        raise ValueError(f"scorer_histories has {len(scorer_histories)} entries for {len(histories)} histories.")
    if fusion.scorer_weight:
        if scorer is None:
            raise ValueError("scorer_weight > 0 needs a dense scorer (a SASRecModel); none was given.")
        # a model trained with the prior in its loss renormalises each step after the prior, not after this
        processors.append(
            TransitionFusionLogitsProcessor(
                trie_index,
                spellings,
                scorer_priors(
                    scorer,
                    histories if scorer_histories is None else scorer_histories,
                    fusion.scorer_top_k,
                    exclude_history=fusion.exclude_history,
                ),
                weight=fusion.scorer_weight,
                smoothing=fusion.scorer_smoothing,
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
