"""The training loss over the item trie, for `GenRecTrainer` with ``constrained_loss``.

Each decoding step's softmax is taken over the tokens the item trie allows there (`trie_cross_entropy`), optionally
leaving out the items of each target's history (``exclude_history_in_loss``) and fusing in the successor prior
(``transition_weight_in_loss``), so the model is trained on the distribution it is ranked with.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..decoding.exclude_history import history_excluded_tokens
from ..decoding.fusion import TransitionFusionLogitsProcessor
from ..decoding.trie import TrieIndex, trie_cross_entropy, trie_cross_entropy_from_states
from ..models.causal_lm import PLAIN_OUTPUT_LAYER, is_decoder_only
from ..models.prior import ItemTransitions
from ..tokenization import ItemTokenizer


def eos_is_forced(item_tokenizer: ItemTokenizer, blocks: torch.Tensor) -> bool:
    """Whether the last column of the label spellings ``blocks`` (``[N, width]``) holds only EOS (or -100) that
    follows a complete fixed-length ID, a token the constrained loss gives no loss or gradient."""
    if item_tokenizer.is_variable_length or blocks.shape[1] != item_tokenizer.id_length:
        return False
    last = blocks[:, -1]
    return bool(((last == item_tokenizer.eos_token_id) | (last == -100)).all())


def target_histories(
    item_tokenizer: ItemTokenizer, input_ids: torch.Tensor, target_ends: torch.Tensor | None, n_targets: int
) -> list[list[int]]:
    """The item rows each training target reads, one list per label spelling: the encoded history of its row, and
    for packed rows (``target_ends``, from `tokenize_sequences`) the items of its row's window up to its end
    (padding targets read one token, and have no loss)."""
    histories = [item_tokenizer.decode_history(row) for row in input_ids.tolist()]
    if target_ends is None:
        return histories
    out = []
    for rows, ends in zip(histories, target_ends.tolist()):
        if item_tokenizer.is_variable_length:
            item_ends = np.cumsum(item_tokenizer.item_lengths[rows]) if rows else np.zeros(0, dtype=np.int64)
        else:
            item_ends = (item_tokenizer.id_length - 1) * np.arange(1, len(rows) + 1)
        out.extend(rows[: int(np.searchsorted(item_ends, end, side="right"))] for end in ends)
    if len(out) != n_targets:
        raise ValueError(f"{len(out)} target histories for {n_targets} label spellings.")
    return out


@dataclass
class ConstrainedLoss:
    """Trie-normalised cross-entropy of a seq2seq model's item spellings (`trie_cross_entropy`).

    Args:
        item_tokenizer (`ItemTokenizer`): the catalogue and its spellings.
        trie_index (`TrieIndex`): the item trie (shared with the trainer's ranking).
        spellings (`torch.Tensor`): ``[n_items, max_length]`` every item's spelling (`item_spellings`).
        item_paths (`torch.Tensor`, *optional*): ``[n_items, max_length]`` the trie nodes along every spelling
            (`TrieIndex.item_paths`), computed once by the caller; without it the prior's fusion walks the trie.
        exclude_history (`bool`): leave the items of each target's history out of its softmax.
        transitions (`ItemTransitions`, *optional*): the successor counts of the training sequences, needed with
            ``transition_weight``.
        transition_weight (`float`): fuse the successor prior into each step's softmax with this weight (0: off).
        transition_recent_items (`int`), transition_smoothing (`float`): the prior's settings, as at ranking.
    """

    item_tokenizer: ItemTokenizer
    trie_index: TrieIndex
    spellings: torch.Tensor
    item_paths: torch.Tensor | None = None
    exclude_history: bool = False
    transitions: ItemTransitions | None = None
    transition_weight: float = 0.0
    transition_recent_items: int = 3
    transition_smoothing: float = 0.01

    def __call__(
        self, model: nn.Module, inputs: dict[str, torch.Tensor | Any], return_outputs: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The loss of ``model`` on a batch with ``labels`` (and the model's outputs with ``return_outputs``)."""
        if is_decoder_only(getattr(model, "module", model)):  # DDP wraps the model under accelerate
            return self.causal(model, inputs, return_outputs)
        labels = inputs["labels"]
        # packed rows hold one spelling per block of `width` tokens; plain rows hold one spelling
        width = labels.shape[1] // inputs["target_ends"].shape[1] if "target_ends" in inputs else labels.shape[1]
        blocks = labels.reshape(-1, width)
        spelled = blocks  # whole spellings, EOS included, whatever the loss skips below
        scale = 1.0
        if eos_is_forced(self.item_tokenizer, blocks):
            # Fixed-length IDs end in EOS, the one token the trie allows after a complete ID: its loss and gradient
            # are exactly zero, so the decoder skips that position (a fifth of its work with 4-token IDs). The
            # loss stays the same number: the mean still counts the EOS tokens.
            full = (blocks != -100).sum()
            blocks = blocks[:, :-1].contiguous()
            scale = (blocks != -100).sum() / full.clamp(min=1)
            width -= 1
            inputs = {**inputs, "labels": blocks.reshape(labels.shape[0], -1)}
        # Training needs only the logits of the tokens the trie allows: skip the output layer's whole vocabulary.
        from_states = not return_outputs and "target_ends" in inputs
        outputs = model(**inputs, skip_output_layer=True) if from_states else model(**inputs)
        vocab = self.trie_index.vocab_size
        banned = None
        if self.exclude_history:
            excluded = target_histories(
                self.item_tokenizer, inputs["input_ids"], inputs.get("target_ends"), len(blocks)
            )
            banned = history_excluded_tokens(self.trie_index, self.spellings, excluded, blocks)
        bonus = None
        if self.transition_weight:
            bonus = self.prior_bonus(inputs, spelled, blocks.shape[1], vocab, model.training)
        if from_states:
            states = outputs.decoder_hidden_states[-1]
            states = states.reshape(-1, width, states.shape[-1])
            output_layer = getattr(model, "module", model).get_output_embeddings()
            loss = trie_cross_entropy_from_states(states, output_layer, blocks, self.trie_index, banned, bonus)
            return loss * scale
        logits = outputs.logits.reshape(-1, width, outputs.logits.shape[-1])
        if bonus is not None:
            logits = logits.float() + torch.nn.functional.pad(bonus, (0, logits.shape[-1] - vocab))
        loss = trie_cross_entropy(logits, blocks, self.trie_index, banned=banned) * scale
        return (loss, outputs) if return_outputs else loss

    def causal(
        self, model: nn.Module, inputs: dict[str, torch.Tensor | Any], return_outputs: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Any]:
        """The loss of a decoder-only model on rows whose ``labels`` line up with ``input_ids`` (packed rows of
        `tokenize_causal_sequences`, or `causal_rows`): each target item's tokens are scored from the logits one
        position before them, over the tokens the trie allows. Fixed-length targets have no EOS label (the trie
        forces it), so the mean is over the same tokens as the model's own causal loss."""
        labels = inputs["labels"]
        if self.transition_weight:
            raise ValueError(
                "transition_weight_in_loss is not implemented for decoder-only models: set it to 0 and fuse the "
                "prior at ranking only (transition_weight), or train a T5 (build_t5_model)."
            )
        inputs = {name: value for name, value in inputs.items() if name != "labels"}
        rows, positions, blocks, histories = self.causal_targets(inputs["input_ids"], labels)
        banned = None
        if self.exclude_history:
            banned = history_excluded_tokens(self.trie_index, self.spellings, histories, blocks)
        # DDP (accelerate) must run the whole model in its own forward: a wrapped model takes the full logits
        if not return_outputs and hasattr(model, "config") and model.config.model_type in PLAIN_OUTPUT_LAYER:
            # Training needs only the logits of the tokens the trie allows: run the body, and score those alone.
            states = model.base_model(**inputs).last_hidden_state[rows[:, None], positions]
            output_layer = model.get_output_embeddings()
            return trie_cross_entropy_from_states(states, output_layer, blocks, self.trie_index, banned)
        outputs = model(**inputs)
        logits = outputs.logits[rows[:, None], positions]
        loss = trie_cross_entropy(logits, blocks, self.trie_index, banned=banned)
        return (loss, outputs) if return_outputs else loss

    def causal_targets(
        self, input_ids: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[int]]]:
        """The target items of decoder-only rows: for each, its row ``[N]``, the positions whose logits predict its
        tokens ``[N, width]``, its label tokens ``[N, width]`` (-100 after them) and the item rows before it."""
        tokenizer = self.item_tokenizer
        found = []  # (row, first token, last token + 1, history)
        for row, (tokens, row_labels) in enumerate(zip(input_ids.tolist(), labels.tolist())):
            ends = _item_ends(tokenizer, tokens)
            for start, end in zip([0, *ends[:-1]], ends):
                if any(label != -100 for label in row_labels[start:end]):
                    if start == 0:
                        raise ValueError("A decoder-only row's first item is a target, but nothing comes before it.")
                    found.append((row, start, end, tokenizer.decode_history(tokens[:start])))
        if not found:
            raise ValueError("The batch has no target tokens (every label is -100).")
        width = max(end - start for _, start, end, _ in found)
        blocks = torch.full((len(found), width), -100, dtype=torch.long)
        positions = torch.zeros((len(found), width), dtype=torch.long)
        for k, (row, start, end, _) in enumerate(found):
            blocks[k, : end - start] = labels[row, start:end]
            positions[k, : end - start] = torch.arange(start - 1, end - 1)
        rows = torch.tensor([row for row, *_ in found], dtype=torch.long)
        device = labels.device
        return rows.to(device), positions.to(device), blocks.to(device), [history for *_, history in found]

    def prior_bonus(
        self, inputs: dict[str, torch.Tensor], blocks: torch.Tensor, width: int, vocab: int, training: bool
    ) -> torch.Tensor:
        """``[N, width, vocab]`` the fused prior's bonus for the first ``width`` steps of each label spelling
        ``blocks`` (whole spellings, EOS included), as the beam search adds it (`TransitionFusionLogitsProcessor`).
        While training, each target's prior leaves out its own row's items (the window and its last target), which
        the counts were fitted on."""
        if self.transitions is None:
            raise ValueError(
                "transition_weight_in_loss needs the successor counts of the training sequences: pass "
                "transitions=ItemTransitions.fit(...) to the trainer."
            )
        target_ends = inputs.get("target_ends")
        histories = target_histories(self.item_tokenizer, inputs["input_ids"], target_ends, len(blocks))
        targets = self.item_tokenizer.decode_index(blocks.tolist())
        per_row = 1 if target_ends is None else target_ends.shape[1]
        own = []
        for row in range(len(blocks) // per_row):
            found = [t for t in targets[row * per_row : (row + 1) * per_row] if t >= 0]
            # the row's whole sequence: the longest history of its targets, then the last target
            longest = max(histories[row * per_row : (row + 1) * per_row], key=len)
            own.extend([longest + found[-1:]] * per_row)
        # evaluation rows end at held-out targets, which the counts never saw: their prior is the ranking's
        leave_out = own if training else None
        # a padding target (no label) gets no prior
        histories = [h if t >= 0 else [] for h, t in zip(histories, targets)]
        priors = self.transitions.batch_prior(histories, self.transition_recent_items, leave_out)
        fusion = TransitionFusionLogitsProcessor(
            self.trie_index,
            self.spellings,
            priors,
            weight=self.transition_weight,
            smoothing=self.transition_smoothing,
            paths=self.item_paths,
        )
        device = blocks.device
        start = torch.full((len(blocks), 1), self.item_tokenizer.pad_token_id, dtype=torch.long, device=device)
        zeros = torch.zeros(len(blocks), vocab, device=device)
        steps = []
        for step in range(width):
            prefix = torch.cat([start, blocks[:, :step].clamp(min=0)], dim=1)
            steps.append(fusion(prefix, zeros))
        return torch.stack(steps, dim=1)


def _item_ends(item_tokenizer: ItemTokenizer, tokens: list[int]) -> list[int]:
    """Where each item of a decoder-only row ends (padding dropped): every ``id_length - 1`` tokens for fixed-length
    IDs (a closing EOS, as `causal_rows` leaves, is an item of its own with no label), after each EOS otherwise."""
    length = len(tokens)
    while length and tokens[length - 1] == item_tokenizer.pad_token_id:
        length -= 1
    if item_tokenizer.is_variable_length:
        ends = [i + 1 for i in range(length) if tokens[i] == item_tokenizer.eos_token_id]
        return ends if ends and ends[-1] == length else [*ends, length]
    width = item_tokenizer.id_length - 1
    return [min(end, length) for end in range(width, length + width, width)]
