"""Which item followed which in the training sequences, and shallow fusion of that prior into the beam search.

A generative recommender spells the next item's ID from what the history looks like; it is poor at recalling that
item B followed item A in some other user's sequence. On Amazon Beauty that case holds for 8.6% of test users, and
it is where the whole gap to SASRec lies: on those users SASRec ranks the target in its top 10 for 68% of them and
the generative model for 37%, while on the other 91% the two are level (NDCG@10 0.0177 against 0.0174).

`ItemTransitions` counts which items followed which (within ``window`` steps, weighted ``1 / steps``; ``window=1``
is the first-order Markov chain), and `TransitionFusionLogitsProcessor` adds that prior to the beam search's
scores, as speech recognisers fuse an external language model into a seq2seq decoder ("shallow fusion"): an item
``B`` after a history ``h`` scores

    log p_model(B | h) + weight * log(1 + P(B | h) / smoothing)

where ``P(B | h)`` mixes the successor distributions of the history's last few items (`ItemTransitions.prior`).
The bonus is spread over the ID's tokens through the trie (a prefix carries the prior mass of the items below
it), so beams are steered towards likely successors from the first token while each finished item's score is
exactly the sum above. Items outside the prior get no bonus, and a history whose items were never followed by
anything is ranked by the model alone.

The prior can also be fused into training (``GenRecTrainingArguments.transition_weight_in_loss``): each decoding
step's softmax is taken over the model's logits plus the prior's bonus (a product of experts), so the model learns
what the prior does not already say rather than relearning the transitions it holds. A training target's prior
leaves out its own user's sequence (`ItemTransitions.prior(..., leave_out=)`), as the prior of a held-out user
never contains that user's transitions. Such a model is ranked with the same normalised fusion
(``TransitionFusionLogitsProcessor(normalize=True)``, `GenRecConfig.transition_normalize`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file
from transformers import LogitsProcessor

from ..decoding.trie import TrieIndex

TRANSITIONS_NAME = "transitions.safetensors"


class ItemTransitions:
    """Successor counts of every item in training sequences, stored sparse (CSR): ``successors[indptr[a]:
    indptr[a + 1]]`` are the items that followed item ``a`` (directly, or within ``window`` steps), ``counts``
    how often (each weighted ``1 / steps``).

    Build it from the training part of each sequence only (`hf_genrec.evaluation.baselines.training_part`), never from
    validation or test items.

    Args:
        indptr (`np.ndarray`): ``[num_items + 1]`` row offsets.
        successors (`np.ndarray`): item rows of the successors, grouped by predecessor.
        counts (`np.ndarray`): how often each (predecessor, successor) pair occurred (weighted).
        window (`int`, defaults to 1): the most steps apart the pairs were counted (a record of how it was fitted).
        shrinkage (`float`, defaults to 0): pseudo-count added to each item's total when its successor counts become
            probabilities, ``P(b | a) = count(a, b) / (total(a) + shrinkage)``: a successor seen once after an item
            seen once gets ``1 / (1 + shrinkage)``, not certainty, while well-observed items keep nearly their
            frequencies. It also weighs the better-observed items more when `prior` mixes the last few.

    Example:

    ```python
    >>> from hf_genrec import ItemTransitions
    >>> transitions = ItemTransitions.fit([[0, 1, 2], [0, 1], [0, 3]], num_items=4)  # item rows, oldest first
    >>> items, probs = transitions.prior([2, 0])  # what followed the last item, 0
    >>> {int(i): round(float(p), 3) for i, p in zip(items, probs)}
    {1: 0.667, 3: 0.333}
    ```
    """

    def __init__(
        self, indptr: np.ndarray, successors: np.ndarray, counts: np.ndarray, window: int = 1, shrinkage: float = 0.0
    ):
        self.window = int(window)
        self.shrinkage = float(shrinkage)
        if not self.shrinkage >= 0:  # also refuses NaN
            raise ValueError(f"shrinkage must be >= 0, got {shrinkage}.")
        self.indptr = np.asarray(indptr, dtype=np.int64)
        self.successors = np.asarray(successors, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.float32)
        if (
            self.indptr.ndim != 1
            or len(self.indptr) < 1
            or self.indptr[0] != 0
            or self.indptr[-1] != len(self.successors)
        ):
            raise ValueError("indptr must start at 0 and end at len(successors): these are not CSR transition arrays.")
        if len(self.counts) != len(self.successors) or (np.diff(self.indptr) < 0).any():
            raise ValueError("successors and counts must have one entry per pair, and indptr must not decrease.")
        if len(self.successors) and (self.successors.min() < 0 or self.successors.max() >= self.num_items):
            raise ValueError(f"Successor rows must lie in [0, {self.num_items}).")

    @property
    def num_items(self) -> int:
        return len(self.indptr) - 1

    @classmethod
    def fit(
        cls, sequences: Sequence[Sequence[int]], num_items: int, window: int = 1, shrinkage: float = 0.0
    ) -> ItemTransitions:
        """Count every pair of ``sequences`` (item rows, oldest first) in which the second item came at most
        ``window`` steps after the first, weighted ``1 / steps`` (``window=1``: the first-order Markov chain).
        ``shrinkage`` is kept for turning the counts into probabilities (see the class docstring)."""
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}.")
        first, second, weight = [], [], []
        for s in sequences:
            s = np.asarray(s, dtype=np.int64)
            for step in range(1, min(window, len(s) - 1) + 1):
                first.append(s[:-step])
                second.append(s[step:])
                weight.append(np.full(len(s) - step, 1.0 / step))
        first = np.concatenate(first) if first else np.zeros(0, dtype=np.int64)
        second = np.concatenate(second) if second else np.zeros(0, dtype=np.int64)
        weight = np.concatenate(weight) if weight else np.zeros(0)
        if len(first) and (min(first.min(), second.min()) < 0 or max(first.max(), second.max()) >= num_items):
            raise ValueError(f"Sequences hold item rows outside [0, {num_items}); pass rows of the item table.")
        keys, inverse = np.unique(first * num_items + second, return_inverse=True)
        counts = np.bincount(inverse.reshape(-1), weights=weight, minlength=len(keys))
        indptr = np.zeros(num_items + 1, dtype=np.int64)
        np.add.at(indptr, keys // num_items + 1, 1)
        return cls(np.cumsum(indptr), keys % num_items, counts, window=window, shrinkage=shrinkage)

    def probabilities(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        """``(successors, P(successor | item))`` of one item row (both empty when nothing ever followed it), each
        count over the item's total plus ``shrinkage``."""
        if not 0 <= item < self.num_items:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        lo, hi = self.indptr[item], self.indptr[item + 1]
        counts = self.counts[lo:hi]
        return self.successors[lo:hi], counts / (max(float(counts.sum()), 1.0) + self.shrinkage)

    def _own_successors(self, item: int, sequence: Sequence[int]) -> dict[int, float]:
        """The weighted successor counts ``fit`` took from ``sequence`` for ``item``."""
        own: dict[int, float] = {}
        sequence = list(sequence)
        for position, current in enumerate(sequence):
            if current == item:
                for step, successor in enumerate(sequence[position + 1 : position + 1 + self.window], start=1):
                    own[int(successor)] = own.get(int(successor), 0.0) + 1.0 / step
        return own

    def prior(
        self, history: Sequence[int], recent: int = 1, leave_out: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(items, P(item | history))``: the successors of the history's ``recent`` last items (item rows), the
        most recent weighing most (weights ``1, 1/2, 1/3, ...``, over the items that have successors). Empty when
        none has any (e.g. items added after fitting).

        ``leave_out``: the whole training sequence ``history`` was cut from, for the prior of a training target.
        Its own pairs are taken out of the counts, so the prior does not already know the transition being
        learned (nor the sequence's later items), as it cannot for a held-out user."""
        items, probs = self.batch_prior([history], recent, None if leave_out is None else [leave_out])
        kept = items[0] >= 0
        return items[0][kept], probs[0][kept]

    def batch_prior(
        self,
        histories: Sequence[Sequence[int]],
        recent: int = 1,
        leave_out: Sequence[Sequence[int] | None] | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """`prior` of many histories at once, vectorised (training asks for hundreds per step).

        Returns:
            `(items, probs)`, both ``[len(histories), width]``: row ``n`` holds what ``prior(histories[n], recent,
            leave_out[n])`` returns, by item row, then ``-1`` / ``0`` padding.
        """
        if recent < 1:
            raise ValueError(f"recent must be >= 1, got {recent}.")
        if leave_out is not None and len(leave_out) != len(histories):
            raise ValueError(f"leave_out has {len(leave_out)} entries for {len(histories)} histories.")
        # one group per (history, recent item): which item, its weight 1 / (position + 1)
        owner, item, weight = [], [], []
        own_group, own_successor, own_count = [], [], []
        for n, history in enumerate(histories):
            for position, a in enumerate(reversed(list(history)[-recent:])):
                if not 0 <= a < self.num_items:
                    continue
                if leave_out is not None and leave_out[n] is not None:
                    for successor, count in self._own_successors(int(a), leave_out[n]).items():
                        own_group.append(len(owner))
                        own_successor.append(successor)
                        own_count.append(count)
                owner.append(n)
                item.append(int(a))
                weight.append(1.0 / (position + 1))
        owner, item, weight = np.asarray(owner, np.int64), np.asarray(item, np.int64), np.asarray(weight)
        lo, hi = self.indptr[item], self.indptr[item + 1]
        lengths = hi - lo
        group = np.repeat(np.arange(len(item)), lengths)
        at = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths) + np.repeat(lo, lengths)
        successor, count = self.successors[at], self.counts[at].astype(np.float64)
        if own_group:
            # the gathered pairs are sorted by (group, successor): find each own pair among them
            keys = group * self.num_items + successor
            own_keys = np.asarray(own_group, np.int64) * self.num_items + np.asarray(own_successor, np.int64)
            where = np.searchsorted(keys, own_keys).clip(max=max(len(keys) - 1, 0))
            known = (where < len(keys)) & (keys[where] == own_keys) if len(keys) else np.zeros(len(own_keys), bool)
            np.subtract.at(count, where[known], np.asarray(own_count)[known])
            count = count.clip(min=0.0)
            alive = count > 1e-6  # pairs only the left-out sequence had are gone
            group, successor, count = group[alive], successor[alive], count[alive]
        total = np.bincount(group, weights=count, minlength=len(item))
        has_successors = np.bincount(group, minlength=len(item)) > 0
        # each history's mix is over the recent items that (still) have successors
        norm = np.bincount(owner[has_successors], weights=weight[has_successors], minlength=len(histories))
        value = count * weight[group] / ((np.maximum(total, 1.0) + self.shrinkage)[group] * norm[owner[group]])
        keys, inverse = np.unique(owner[group] * self.num_items + successor, return_inverse=True)
        probs = np.bincount(inverse.reshape(-1), weights=value, minlength=len(keys))
        rows, columns = keys // self.num_items, keys % self.num_items
        width = int(np.bincount(rows, minlength=len(histories)).max()) if len(keys) else 0
        slot = np.arange(len(keys)) - np.searchsorted(rows, rows)  # rank within its row (keys are sorted)
        items = np.full((len(histories), max(width, 1)), -1, dtype=np.int64)
        out = np.zeros((len(histories), max(width, 1)), dtype=np.float32)
        items[rows, slot] = columns
        out[rows, slot] = probs
        return items, out

    def dense_bonus(
        self, histories: Sequence[Sequence[int]], weight: float, smoothing: float, recent: int = 1
    ) -> torch.Tensor:
        """``[batch, num_items]`` the fused bonus ``weight * log(1 + P(item | history) / smoothing)`` for models
        that score every item at once (e.g. ``SASRecModel.recommend(..., item_bonus=...)``)."""
        if weight < 0 or smoothing <= 0:
            raise ValueError(f"weight must be >= 0 and smoothing > 0, got weight={weight}, smoothing={smoothing}.")
        bonus = torch.zeros(len(histories), self.num_items)
        items, probs = self.batch_prior(histories, recent)
        rows, slots = np.nonzero(items >= 0)
        bonus[torch.from_numpy(rows), torch.from_numpy(items[rows, slots])] = weight * torch.log1p(
            torch.from_numpy(probs[rows, slots]) / smoothing
        )
        return bonus

    def predict(
        self,
        histories: Sequence[Sequence[int]],
        k: int,
        recent: int = 1,
        fallback: Sequence[int] | None = None,
        exclude: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """The prior alone as a recommender (a baseline for the fusion): ``[len(histories), k]`` item rows by
        ``P(item | history)``, then ``fallback`` (e.g. `MostPopular`'s ranking) for the places left; ``exclude``
        (one list per history) keeps items out; ``-1`` fills a list nothing is left for."""
        if exclude is not None and len(exclude) != len(histories):
            raise ValueError(
                f"exclude has {len(exclude)} entries for {len(histories)} histories; give one per history."
            )
        out = np.full((len(histories), k), -1, dtype=np.int64)
        fallback = np.asarray([] if fallback is None else fallback, dtype=np.int64)
        all_items, all_probs = self.batch_prior(histories, recent)
        for row in range(len(histories)):
            kept = all_items[row] >= 0
            items, probs = all_items[row][kept], all_probs[row][kept]
            ranked = np.concatenate([items[np.argsort(-probs, kind="stable")], fallback])
            banned = set() if exclude is None else {int(i) for i in exclude[row]}
            picked, seen = [], set()
            for item in ranked.tolist():
                if item not in banned and item not in seen:
                    picked.append(item)
                    seen.add(item)
                    if len(picked) == k:
                        break
            out[row, : len(picked)] = picked
        return out

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        Path(save_directory).mkdir(parents=True, exist_ok=True)
        tensors = {"indptr": self.indptr, "successors": self.successors, "counts": self.counts}
        metadata = {"window": str(self.window), "shrinkage": repr(self.shrinkage)}
        save_file(tensors, str(Path(save_directory) / TRANSITIONS_NAME), metadata=metadata)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike) -> ItemTransitions:
        path = Path(directory) / TRANSITIONS_NAME
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: this bundle holds no item transitions.")
        tensors = load_file(str(path))
        with safe_open(str(path), framework="numpy") as f:
            metadata = f.metadata() or {}
        window, shrinkage = int(metadata.get("window", 1)), float(metadata.get("shrinkage", 0.0))
        missing = {"indptr", "successors", "counts"} - set(tensors)
        if missing:
            raise ValueError(f"{path} lacks {sorted(missing)}: it was not written by ItemTransitions.")
        return cls(tensors["indptr"], tensors["successors"], tensors["counts"], window=window, shrinkage=shrinkage)


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
        step = input_ids.shape[1] - self.decoder_start_length
        if step >= self.token.shape[-1] or self.batch == 0:
            return scores
        rows, vocab = scores.shape
        beams, node = self.index.beam_nodes(input_ids, self.batch, self.decoder_start_length, "priors")
        device = scores.device
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
        # a token leading to a node without successors loses the parent's bonus; one leading to successors keeps
        # that of its child
        bonus = (-parent_bonus)[..., None].expand(self.batch, beams, vocab + 1).clone()
        token = torch.where(match, self.token[..., step].to(device)[:, None, :], vocab).clamp(max=vocab)
        child = node_bonus[:, None, :, step].expand_as(token) - parent_bonus[..., None]
        bonus.scatter_(2, token, torch.where(match, child, bonus.gather(2, token)))
        fused = scores + bonus[..., :vocab].reshape(rows, vocab)
        return torch.log_softmax(fused, dim=-1) if self.normalize else fused
