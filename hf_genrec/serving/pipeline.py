"""``pipeline("generative-recommendation", model=...)``: histories of item ids in, top-K items with scores out.

Importing ``hf_genrec`` registers the task with the transformers pipeline registry (a dictionary entry; nothing is
loaded). The pipeline wraps a :class:`GenerativeRecommender`, so it decodes with the fast constrained beam search
and batches histories.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from ..tokenization import ItemTokenizer
from .recommender import GenerativeRecommender

TASK = "generative-recommendation"


class GenerativeRecommendationPipeline(Pipeline):
    """Recommend the next items for histories of item ids (oldest first).

    Example:
    ```python
    >>> import hf_genrec
    >>> from transformers import pipeline
    >>> recommend = pipeline("generative-recommendation", model="outputs/ml-100k")
    >>> recommend(["50", "181", "100"], top_k=3)  # one history; scores: log-probabilities (+ fused bonuses)
    [{'item_id': '...', 'score': -...}, {'item_id': '...', 'score': -...}, {'item_id': '...', 'score': -...}]
    >>> batch = recommend([["50", "181"], ["1", "2"]], top_k=3)  # a batch: one list per history
    >>> len(batch), len(batch[0])
    (2, 3)
    ```

    Call arguments: ``top_k`` (default: the bundle's), ``num_beams``, ``batch_size`` (histories per beam search),
    ``method`` (``"auto"``, ``"fast"``, ``"vectorised"``, ``"reference"``).
    """

    _load_tokenizer = True

    def __init__(self, model, tokenizer=None, item_tokenizer: ItemTokenizer | None = None, **kwargs):
        genrec_config = kwargs.pop("genrec_config", None)
        super().__init__(model=model, tokenizer=tokenizer, **kwargs)
        if item_tokenizer is not None and genrec_config is not None:  # a model and catalogue built in memory
            self.recommender = GenerativeRecommender(self.model, item_tokenizer, genrec_config)
            return
        source = getattr(self.model, "name_or_path", None)
        if not source:
            raise ValueError(
                "This model was not loaded from an hf_genrec bundle, so the item catalogue is unknown. Pass "
                "`item_tokenizer=` and `genrec_config=`, or load the pipeline with model=<bundle folder or repo id>."
            )
        # the whole bundle (prior, scorer, catalogue log, quantiser, content map), with the model the pipeline loaded
        self.recommender = GenerativeRecommender.from_pretrained(source, model=self.model)

    def _sanitize_parameters(self, top_k=None, num_beams=None, method=None, genrec_config=None, **kwargs):
        forward = {key: value for key, value in (("k", top_k), ("num_beams", num_beams), ("method", method)) if value}
        return {}, forward, {}

    def __call__(self, histories: Sequence[str] | Sequence[Sequence[str]], batch_size: int = 64, **kwargs: Any):
        """One history (a list of item ids) → a list of ``{"item_id", "score"}``; a list of histories → one per history."""
        single = len(histories) > 0 and isinstance(histories[0], str)
        batch = [list(histories)] if single else [list(h) for h in histories]
        _, forward, _ = self._sanitize_parameters(**kwargs)
        ranked = self.recommender.recommend(batch, batch_size=batch_size, **forward)
        out = [[{"item_id": item, "score": score} for item, score in items] for items in ranked]
        return out[0] if single else out

    # The Pipeline interface, for code that drives the stages itself; __call__ batches through the recommender.
    def preprocess(self, history: Sequence[str]) -> dict:
        return {"history": list(history)}

    def _forward(self, model_inputs: dict, k=None, num_beams=None, method="auto") -> dict:
        return {
            "items": self.recommender.recommend([model_inputs["history"]], k=k, num_beams=num_beams, method=method)
        }

    def postprocess(self, model_outputs: dict) -> list[dict]:
        return [{"item_id": item, "score": score} for item, score in model_outputs["items"][0]]


# a bundle holds an encoder-decoder (T5) or a decoder-only causal LM (Llama, GPT-2, Qwen2, ...): the pipeline
# tries the Auto classes in this order and keeps the first that knows the bundle's config
PIPELINE_REGISTRY.register_pipeline(
    TASK, pipeline_class=GenerativeRecommendationPipeline, pt_model=(AutoModelForSeq2SeqLM, AutoModelForCausalLM)
)
