"""`GenerativeRecommender`: one object that holds the model, the item spellings and the trie, and recommends."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel

from .configuration import GenRecConfig
from .data.collator import GenRecCollator
from .decoding import build_trie_index, generate_items
from .hub import check_bundle, push_folder, resolve_bundle
from .model_card import GenRecCardData, build_model_card
from .semantic_ids import ItemIDScheme, load_quantizer
from .tokenization import ItemTokenizer
from .trie_logits import TrieIndex

QUANTIZER_DIR = "quantizer"


class GenerativeRecommender:
    """A trained generative recommender, ready to serve.

    Args:
        model (`PreTrainedModel`): an encoder-decoder (`T5ForConditionalGeneration`).
        item_tokenizer (`ItemTokenizer`): the catalogue and its semantic-ID spellings.
        config (`GenRecConfig`, *optional*): beams, default K and history cap.
        quantizer (`ItemIDScheme`, *optional*): the fitted ID scheme, saved with the bundle so new items can be
            given IDs the same way.
        card_data (`GenRecCardData`, *optional*): metrics and training facts for the model card.

    Example:
    ```python
    >>> rec = GenerativeRecommender.from_pretrained("outputs/ml-100k")
    >>> rec.recommend([["50", "181", "100"]], k=3)  # per history: (item id, log-probability), best first
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
    ):
        self.model = model.eval()
        self.item_tokenizer = item_tokenizer
        self.config = config or GenRecConfig()
        self.quantizer = quantizer
        self.card_data = card_data or GenRecCardData(dataset=self.config.dataset)
        self._trie_index: TrieIndex | None = None
        self._collator = GenRecCollator(pad_token_id=item_tokenizer.pad_token_id)

    @property
    def trie_index(self) -> TrieIndex:
        """The vectorised trie of the catalogue (built on first use)."""
        if self._trie_index is None:
            self._trie_index = build_trie_index(self.item_tokenizer)
        return self._trie_index

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
    ) -> list[list[tuple[str, float]]]:
        """Top-``k`` items for each history (item ids, oldest first), with their log-probabilities, best first.

        ``method`` picks the constrained beam search (see :func:`generate_items`); the default shares each
        history's cross-attention across beams, several times faster than stock ``generate`` with the same results.

        Every returned item is in the catalogue: decoding is constrained to the item trie.
        """
        if isinstance(histories, str) or (len(histories) > 0 and isinstance(histories[0], str)):
            raise TypeError(
                "`histories` must be a list of histories (a list of lists of item ids); for one user pass `[history]`."
            )
        k = k or self.config.top_k
        num_beams = max(num_beams or self.config.num_beams, k)
        if k > self.item_tokenizer.num_items:
            raise ValueError(f"k={k} is larger than the catalogue ({self.item_tokenizer.num_items} items).")
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
            device = self.model.device
            indices, scores = generate_items(
                self.model,
                self.item_tokenizer,
                batch["input_ids"].to(device),
                batch["attention_mask"].to(device),
                num_beams=num_beams,
                k=k,
                method=method,
                index=self.trie_index,
            )
            item_ids = self.item_tokenizer.item_ids
            for row_idx, row_scores in zip(indices.tolist(), scores.tolist()):
                results.append([(item_ids[i], s) for i, s in zip(row_idx, row_scores) if i >= 0])
        return results

    def save_pretrained(self, save_directory: str | os.PathLike, repo_id: str | None = None) -> None:
        """Write the bundle: model (safetensors), tokenizer, item map, quantiser, ``genrec_config.json``, model card."""
        save_directory = Path(save_directory)
        save_directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(save_directory)
        self.item_tokenizer.save_pretrained(save_directory)
        self.config.save_pretrained(save_directory)
        if self.quantizer is not None:
            self.quantizer.save_pretrained(save_directory / QUANTIZER_DIR)
        card = build_model_card(self.item_tokenizer, self.config, self.card_data, repo_id=repo_id)
        (save_directory / "README.md").write_text(card, encoding="utf-8")

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
        import tempfile

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
    ) -> GenerativeRecommender:
        """Load a bundle from a local folder or a Hub repo id; the trie is rebuilt from the item map.

        Args:
            path_or_repo_id: a folder written by `save_pretrained` / `hf-genrec train`, or ``"user/repo"``.
            device: where to put the model (default: CPU).
            revision, token, cache_dir, local_files_only: as for ``huggingface_hub.snapshot_download``.
        """
        folder = resolve_bundle(
            path_or_repo_id, revision=revision, token=token, cache_dir=cache_dir, local_files_only=local_files_only
        )
        check_bundle(folder)
        config = GenRecConfig.from_pretrained(folder)
        item_tokenizer = ItemTokenizer.from_pretrained(folder)
        try:
            model = AutoModelForSeq2SeqLM.from_pretrained(folder)
        except Exception as err:  # safetensors raises its own error type for damaged files
            if "safetensor" in type(err).__module__.lower() or "deserializ" in str(err).lower():
                raise ValueError(
                    f"{folder}/model.safetensors could not be read ({err}): the file is truncated or damaged. "
                    "Download it again (delete it from the Hugging Face cache) or save the recommender again."
                ) from err
            raise
        if model.get_input_embeddings().num_embeddings < len(item_tokenizer):
            raise ValueError(
                f"The model in {path_or_repo_id} has {model.get_input_embeddings().num_embeddings} token embeddings "
                f"but the tokenizer has {len(item_tokenizer)} tokens: the model and the item map come from different "
                "runs."
            )
        quantizer = load_quantizer(folder / QUANTIZER_DIR) if (folder / QUANTIZER_DIR).is_dir() else None
        if device is not None:
            model.to(device)
        return cls(model, item_tokenizer, config, quantizer=quantizer)
