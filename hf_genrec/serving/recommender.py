"""`GenerativeRecommender`: one object that holds the model, the item spellings and the trie, and recommends."""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessorList, PreTrainedModel

from ..bundle.catalog_log import CatalogLog
from ..bundle.config import GenRecConfig
from ..bundle.hub import push_folder
from ..bundle.io import BundleContents, load_bundle, save_bundle
from ..bundle.model_card import GenRecCardData
from ..decoding.fusion import FusionConfig, check_scorer_items, fusion_processors
from ..decoding.generate import build_trie_index, generate_items, item_spellings
from ..decoding.trie import TrieIndex
from ..features.content_map import ContentMap
from ..models.prior import ItemTransitions
from ..models.sasrec import SASRecModel
from ..semantic_ids import ItemIDScheme
from ..tokenization import ItemTokenizer
from ..training.collator import GenRecCollator
from .catalog import NewItemIndex
from .cold_start import ColdStartMixin
from .living_catalog import LivingCatalogMixin, insert_new_items

logger = logging.getLogger(__name__)


class GenerativeRecommender(LivingCatalogMixin, ColdStartMixin):
    """A trained generative recommender, ready to serve.

    Args:
        model (`PreTrainedModel`): an encoder-decoder (`T5ForConditionalGeneration`) or a decoder-only causal LM
            (`LlamaForCausalLM`, `GPT2LMHeadModel`, ...; `hf_genrec.models.causal_lm`).
        item_tokenizer (`ItemTokenizer`): the catalogue and its semantic-ID spellings.
        config (`GenRecConfig`, *optional*): beams, default K and history cap.
        quantizer (`ItemIDScheme`, *optional*): the fitted ID scheme, saved with the bundle so new items can be
            given IDs the same way.
        card_data (`GenRecCardData`, *optional*): metrics and training facts for the model card.
        catalog (`CatalogLog`, *optional*): items added and retired since training (``catalog.json``).
        transitions (`ItemTransitions`, *optional*): successor counts of the training sequences, for the fused
            prior of ``config.fusion.transition_weight`` (``transitions.safetensors``).
        content_map (`ContentMap`, *optional*): item content → codes, for new items with no interactions
            (``content_map.safetensors``; see `fit_content_map`).
        scorer (`SASRecModel`, *optional*): a dense next-item scorer over the same item rows, fused into the beam
            search with ``config.fusion.scorer_weight`` (the hybrid recommender, `hf_genrec.decoding.fusion`; ``scorer/``).
        item_titles (`dict[str, str]`, *optional*): ``{item id: title}`` where the data has titles, for pages that
            show the items (`hf-genrec demo`; ``item_titles.json``). Items added later have none unless given.

    Example:
    ```python
    >>> rec = GenerativeRecommender.from_pretrained("outputs/ml-100k")
    >>> rec.recommend([["50", "181", "100"]], k=3)  # per history: (item id, score), best first
    [[('...', -...), ('...', -...), ('...', -...)]]
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel,
        item_tokenizer: ItemTokenizer,
        config: GenRecConfig | None = None,
        quantizer: ItemIDScheme | None = None,
        card_data: GenRecCardData | None = None,
        catalog: CatalogLog | None = None,
        transitions: ItemTransitions | None = None,
        content_map: ContentMap | None = None,
        scorer: SASRecModel | None = None,
        item_titles: dict[str, str] | None = None,
    ):
        self.model = model.eval()
        #: the models whose next-token distributions are averaged (`ensemble`); ``[model]`` for one model
        self.models: list[PreTrainedModel] = [self.model]
        self.transitions = transitions
        self.content_map = content_map
        self.item_tokenizer = item_tokenizer
        self.config = config or GenRecConfig()
        self.quantizer = quantizer
        self.card_data = card_data or GenRecCardData(dataset=self.config.dataset)
        self.catalog = catalog or CatalogLog()
        self.scorer = scorer
        self.item_titles = item_titles
        self._trie_index: TrieIndex | None = None
        self._spellings: torch.Tensor | None = None
        self._item_paths: torch.Tensor | None = None
        self._new_trie_index: TrieIndex | None = None
        self._new_item_index: NewItemIndex | None = None
        self._collator = GenRecCollator(pad_token_id=item_tokenizer.pad_token_id)

    @property
    def scorer(self) -> SASRecModel | None:
        """The dense next-item scorer fused into the search with ``config.fusion.scorer_weight`` (`None`: none)."""
        return self._scorer

    @scorer.setter
    def scorer(self, scorer: SASRecModel | None) -> None:
        if scorer is not None:
            check_scorer_items(scorer, self.item_tokenizer.num_items, len(self.catalog.new_items))
            scorer.eval()
        self._scorer = scorer

    @classmethod
    def ensemble(cls, members: Sequence[GenerativeRecommender]) -> GenerativeRecommender:
        """One recommender that decodes with the mean of several models' next-token distributions.

        The members must share one catalogue and one spelling of it (e.g. runs of one recipe with different seeds
        over the same semantic IDs, or checkpoints of one run); each keeps its own weights and architecture. The
        ensemble uses the first member's settings (beams, history cap, fusion, catalogue log, transitions), and
        `recommend` runs every member's decoder at each step of one beam search (`shared_beam_search`), so it costs
        about the members' decoding times added together.

        Example:
        ```python
        >>> first = GenerativeRecommender.from_pretrained("outputs/ml-100k")
        >>> second = GenerativeRecommender.from_pretrained("outputs/ml-100k")  # in practice: another seed's run
        >>> GenerativeRecommender.ensemble([first, second]).recommend([["50", "181", "100"]], k=3)
        [[('...', -...), ('...', -...), ('...', -...)]]
        ```
        """
        members = list(members)
        if not members:
            raise ValueError("ensemble needs at least one GenerativeRecommender.")
        first = members[0]
        for i, member in enumerate(members[1:], start=1):
            same_items = member.item_ids == first.item_ids and np.array_equal(
                member.item_tokenizer.item_token_ids, first.item_tokenizer.item_token_ids
            )
            if not same_items or len(member.item_tokenizer) != len(first.item_tokenizer):
                raise ValueError(
                    f"Member {i} spells a different catalogue than member 0 (other items, codes or vocabulary): an "
                    "ensemble's models must be trained on the same semantic IDs (the same ID scheme, features and "
                    "id_seed; only the training seed may differ)."
                )
            if member.config.max_history != first.config.max_history:
                raise ValueError(
                    f"Member {i} reads {member.config.max_history} history items and member 0 "
                    f"{first.config.max_history}: an ensemble encodes each history once, so they must agree."
                )
            if member.model.device != first.model.device:
                raise ValueError(
                    f"Member {i} is on {member.model.device} and member 0 on {first.model.device}: load them on one "
                    "device (from_pretrained(..., device=...))."
                )
        combined = cls(
            first.model,
            first.item_tokenizer,
            config=first.config,
            quantizer=first.quantizer,
            card_data=first.card_data,
            # its own copy: add_items / remove_items on the ensemble must not change member 0's log
            catalog=copy.deepcopy(first.catalog),
            transitions=first.transitions,
            content_map=first.content_map,
            scorer=first.scorer,
            item_titles=first.item_titles,
        )
        combined.models = [member.model.eval() for member in members]
        return combined

    @property
    def trie_index(self) -> TrieIndex:
        """The vectorised trie of the catalogue (built on first use)."""
        if self._trie_index is None:
            self._trie_index = build_trie_index(self.item_tokenizer)
        return self._trie_index

    @property
    def spellings(self) -> torch.Tensor:
        """``[n_items, max_length]`` every item's spelling (built on first use, like the trie), for the fusion."""
        if self._spellings is None:
            self._spellings = torch.from_numpy(item_spellings(self.item_tokenizer))
        return self._spellings

    @property
    def item_paths(self) -> torch.Tensor:
        """``[n_items, max_length]`` the trie nodes along every item's spelling (built on first use), so the fusion
        does not walk the trie for each history's successors."""
        if self._item_paths is None:
            self._item_paths = self.trie_index.item_paths(self.spellings, torch.arange(len(self.spellings)))[1]
        return self._item_paths

    @property
    def item_ids(self) -> list[str]:
        return self.item_tokenizer.item_ids

    def recommend(
        self,
        histories: Sequence[Sequence[str]],
        k: int | None = None,
        num_beams: int | None = None,
        batch_size: int = 64,
        method: str = "auto",
        new_item_slots: int | None = None,
        fusion: FusionConfig | Mapping[str, Any] | None = None,
        **fusion_overrides: Any,
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` items for each history (item ids, oldest first), with their scores, best first: an item's
        log-probability under the model, plus the bonuses of whatever ``fusion`` adds (so a fused score can be > 0).

        ``method`` picks the constrained beam search (see :func:`generate_items`); the default shares each
        history's cross-attention across beams, several times faster than stock ``generate`` with the same results.

        Every returned item is in the catalogue: decoding is constrained to the item trie.

        ``new_item_slots`` (default ``config.new_item_slots``, 0: off) turns on the cold-start mode: the items added
        since training (`add_items`) that share the deepest code prefix with the history's items (the most recent
        first; ties broken by a second beam search constrained to the new items' trie, the model's own ranking of
        them) take the last ``new_item_slots`` places of the top ``k``, when fewer new items made the top ``k`` on
        their own; items of the history itself are not inserted. An inserted item carries its score from that
        second search (normalised over the new items only when the model decodes with renormalised scores), or NaN
        when the search did not reach it: these scores are not comparable with the others.

        ``fusion`` (default ``config.fusion``, a `FusionConfig`) says what the search bans and fuses, and any of its
        fields passed as a keyword (``exclude_history=True``, ``transition_weight=0``, ...) overrides it for this call:
        ``exclude_history`` keeps every item of each given history (all of it, not only the ``max_history`` items the
        model reads) out of the results, banned inside the beam search, so each history still gets ``k`` items;
        ``transition_weight`` fuses the successor prior of the training sequences (`hf_genrec.models.prior`) and
        ``scorer_weight`` the bundle's dense next-item scorer (the hybrid): an item gains ``weight * log(1 +
        P(item | history) / smoothing)``, which the returned scores then include.
        """
        if isinstance(histories, str) or (len(histories) > 0 and isinstance(histories[0], str)):
            raise TypeError(
                "`histories` must be a list of histories (a list of lists of item ids); for one user pass `[history]`."
            )
        k = self.config.top_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int (the number of items per history), got {k!r}.")
        if num_beams is not None and num_beams < k:
            raise ValueError(
                f"num_beams={num_beams} is smaller than k={k}: beam search returns at most num_beams items. Pass "
                f"num_beams >= {k} (or leave it unset: the bundle's num_beams, raised to k when smaller)."
            )
        if num_beams is None and self.config.num_beams < k:
            logger.info(
                "k=%d is larger than the bundle's num_beams=%d; searching with %d beams.", k, self.config.num_beams, k
            )
        num_beams = max(num_beams or self.config.num_beams, k)
        if k > self.item_tokenizer.num_items:
            raise ValueError(f"k={k} is larger than the catalogue ({self.item_tokenizer.num_items} items).")
        # the bundle's default gives way to a smaller k; an explicit value must fit
        slots = min(self.config.new_item_slots, k) if new_item_slots is None else new_item_slots
        if isinstance(slots, bool) or not isinstance(slots, int) or not 0 <= slots <= k:
            raise ValueError(f"new_item_slots must be an int in [0, k={k}], got {slots!r}.")
        unknown = sorted(set(fusion_overrides) - set(FusionConfig.field_names()))
        if unknown:
            raise TypeError(
                f"recommend() got unknown keyword arguments {unknown}; besides its own it takes the FusionConfig "
                f"fields {list(FusionConfig.field_names())}."
            )
        fusion = FusionConfig.from_dict(self.config.fusion if fusion is None else fusion).replace(**fusion_overrides)
        if fusion.transition_weight and self.transitions is None:
            raise ValueError(
                "transition_weight needs the item transitions of the training sequences, and this recommender has "
                "none: fit them with ItemTransitions.fit(training sequences as item rows, num_items) and set "
                "`recommender.transitions`, or pass transition_weight=0."
            )
        if fusion.scorer_weight and self.scorer is None:
            raise ValueError(
                "scorer_weight needs a dense next-item scorer, and this recommender has none: set "
                "`recommender.scorer` to a SASRecModel trained on its item rows, or pass scorer_weight=0."
            )
        excluding = fusion.exclude_history
        new_index = self.new_item_trie_index if slots else None
        new_items = set(self.catalog.new_items) if new_index is not None else set()
        results: list[list[tuple[str, float]]] = []
        for start in range(0, len(histories), batch_size):
            chunk = histories[start : start + batch_size]
            features = []
            for i, history in enumerate(chunk):
                try:
                    ids = self.item_tokenizer.encode_history(
                        [str(x) for x in history], max_items=self.config.max_history
                    )
                except ValueError as err:
                    raise ValueError(f"History {start + i}: {err}") from err
                features.append({"input_ids": ids})
            batch = self._collator(features)
            input_ids = batch["input_ids"].to(self.model.device)
            attention_mask = batch["attention_mask"].to(self.model.device)
            # each whole history's item rows, once for both the exclusion and the prior
            history_rows = None
            if excluding or fusion.fuses:
                history_rows = [self.item_tokenizer.index_of([str(x) for x in h]).tolist() for h in chunk]
            exclude = history_rows if excluding else None
            indices, scores = generate_items(
                self.models,
                self.item_tokenizer,
                input_ids,
                attention_mask,
                num_beams=num_beams,
                k=k,
                method=method,
                index=self.trie_index,
                exclude_items=exclude,
                fusion=self._fusion(history_rows, fusion),
            )
            item_ids = self.item_tokenizer.item_ids
            rows = [
                [(item_ids[i], s) for i, s in zip(row_idx, row_scores) if i >= 0]
                for row_idx, row_scores in zip(indices.tolist(), scores.tolist())
            ]
            if new_index is not None:
                new_indices, new_scores = generate_items(
                    self.models,
                    self.item_tokenizer,
                    input_ids,
                    attention_mask,
                    num_beams=num_beams,
                    k=min(num_beams, len(new_index)),
                    method=method,
                    index=new_index,
                    exclude_items=self._new_item_exclusions(exclude),
                )
                codes = self.item_tokenizer.semantic_ids.codes
                for row, history, row_idx, row_scores in zip(rows, chunk, new_indices.tolist(), new_scores.tolist()):
                    scored = {item_ids[i]: s for i, s in zip(row_idx, row_scores) if i >= 0}
                    history = [str(x) for x in history]
                    window = history[-self.config.max_history :]
                    # with exclude_history none of the history is inserted, else none of what the model read of it
                    banned = set(history) if exclude is not None else set(window)
                    ranked = self.new_item_index.rank(
                        codes[self.item_tokenizer.index_of(window)], list(scored), slots + k, exclude=banned
                    )
                    candidates = [(item, scored.get(item, float("nan"))) for item in ranked]
                    row[:] = insert_new_items(row, candidates, new_items, k, slots)
            results.extend(rows)
        return results

    def _fusion(self, history_rows: list[list[int]] | None, fusion: FusionConfig) -> LogitsProcessorList | None:
        """What ``fusion`` fuses into the search for histories given as item rows (`None`: nothing)."""
        if not fusion.fuses:
            return None
        return fusion_processors(
            history_rows,
            self.trie_index,
            self.spellings,
            self.item_paths,
            fusion,
            transitions=self.transitions,
            scorer=self.scorer,
        )

    def bundle_contents(self) -> BundleContents:
        """This recommender's parts, as a bundle holds them (the fields of `BundleContents` are its own)."""
        return BundleContents(**{part.name: getattr(self, part.name) for part in dataclasses.fields(BundleContents)})

    def save_pretrained(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> None:
        """Write the bundle (`hf_genrec.bundle.layout`): model, tokenizer, item map, config, quantiser, prior, scorer,
        catalogue log, content map, item titles and model card, whichever this recommender has."""
        if len(self.models) > 1:
            raise ValueError(
                f"This recommender is an ensemble of {len(self.models)} models, and a bundle holds one: save each "
                "member's bundle and build the ensemble again after loading them (GenerativeRecommender.ensemble)."
            )
        save_bundle(self.bundle_contents(), save_directory, repo_id=repo_id)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        token: str | None = None,
        private: bool | None = None,
        revision: str | None = None,
        commit_message: str = "Upload hf_genrec recommender",
        create_pr: bool = False,
    ):
        """Save the bundle and upload it to ``repo_id`` on the Hub as one commit (created if needed)."""
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, repo_id=repo_id)
            return push_folder(
                tmp,
                repo_id,
                token=token,
                private=private,
                revision=revision,
                commit_message=commit_message,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo_id: str | os.PathLike,
        *,
        device: str | torch.device | None = None,
        revision: str | None = None,
        token: str | bool | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        model: PreTrainedModel | None = None,
    ) -> GenerativeRecommender:
        """Load a bundle, every part of it, from a local folder or a Hub repo id; the trie is rebuilt from the item map.

        Args:
            path_or_repo_id: a folder written by `save_pretrained` / `hf-genrec train`, or ``"user/repo"``.
            device: where to put the model (default: CPU).
            revision, token, cache_dir, local_files_only: as for ``huggingface_hub.snapshot_download``.
            model (`PreTrainedModel`, *optional*): the bundle's model when it is already loaded (the pipeline's).
        """
        contents = load_bundle(
            path_or_repo_id,
            model=model,
            device=device,
            revision=revision,
            token=token,
            cache_dir=cache_dir,
            local_files_only=local_files_only,
        )
        return cls.from_bundle_contents(contents)

    @classmethod
    def from_bundle_contents(cls, contents: BundleContents) -> GenerativeRecommender:
        """A recommender of a bundle's parts (`hf_genrec.bundle.io.load_bundle`)."""
        return cls(**{part.name: getattr(contents, part.name) for part in dataclasses.fields(contents)})
