"""`build_demo`: a Gradio page where a person tries a recommender (``hf-genrec demo``, or a Hugging Face Space).

A person picks a history from the catalogue (shown as "title (item id)" where the bundle has ``item_titles.json``)
or pastes item ids, chooses K, and sees the history with each item's semantic ID, and the top K with their scores,
semantic IDs and why each came up: the longest semantic-ID prefix it shares with an item of the history (`explain`).

The page is a thin shell over plain functions, so they are tested without a browser: `explain` (the why),
`recommend_for_page` (what the button computes, bad input included) and `render_history` / `render_recommendations`
(the HTML the page shows). Gradio is an optional extra (``pip install "hf_genrec[demo]"``), imported only by
`build_demo` and `launch_demo`.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .recommender import GenerativeRecommender

INSTALL_HINT = 'pip install "hf_genrec[demo]"'
#: the most items a person can ask for: the search runs ``max(k, num_beams)`` beams
MAX_K = 50
#: system fonts: the default theme fetches Google fonts, which a page on a machine without internet waits for
_FONTS = (["ui-sans-serif", "system-ui", "sans-serif"], ["ui-monospace", "monospace"])
CSS = """
.genrec-table { border-collapse: collapse; width: 100%; font-size: 0.95em; }
.genrec-table th, .genrec-table td { padding: 4px 8px; border-bottom: 1px solid var(--border-color-primary); }
.genrec-table th { text-align: left; }
.genrec-sid, .genrec-prefix { font-family: ui-monospace, monospace; white-space: nowrap; }
.genrec-prefix { color: var(--color-accent); }
.genrec-message { padding: 8px 12px; border-left: 4px solid var(--color-accent); }
"""


@dataclass(frozen=True)
class Explanation:
    """Why an item was recommended: the longest semantic-ID prefix it shares with an item of the history.

    Args:
        shared_prefix (`tuple[int, ...]`): the codes the item shares, from the first level, with ``history_item``
            (empty: it shares no code with any history item).
        history_item (`str`, *optional*): the most recent history item sharing that prefix (`None` when none does).
    """

    shared_prefix: tuple[int, ...]
    history_item: str | None


def explain(semantic_id: Sequence[int], history: Sequence[tuple[str, Sequence[int]]]) -> Explanation:
    """The longest prefix of ``semantic_id`` that an item of ``history`` (``(item id, semantic ID)`` pairs, oldest
    first) shares, and which item that is: the most recent one when several share as long a prefix, as the model
    weighs the recent history most.

    Example:
    ```python
    >>> explain((3, 1, 0), [("a", (3, 2, 0)), ("b", (3, 1, 4)), ("c", (5, 1, 0))])
    Explanation(shared_prefix=(3, 1), history_item='b')
    ```
    """
    best, best_item = 0, None
    for item, codes in reversed(history):
        shared = 0
        for mine, theirs in zip(semantic_id, codes):
            if mine != theirs:
                break
            shared += 1
        if shared > best:
            best, best_item = shared, item
    return Explanation(tuple(int(c) for c in semantic_id[:best]), best_item)


@dataclass
class PageResult:
    """What the page shows after the button: the history, the top K, or a message saying what was wrong.

    ``history`` rows have ``item_id``, ``title``, ``semantic_id``; ``recommendations`` rows have ``rank``,
    ``item_id``, ``title``, ``score``, ``semantic_id`` and ``explanation`` (an `Explanation`).
    """

    history: list[dict[str, Any]] = field(default_factory=list)
    recommendations: list[dict[str, Any]] = field(default_factory=list)
    message: str | None = None


def semantic_id_of(recommender: GenerativeRecommender, item_id: str) -> tuple[int, ...]:
    """The codes of ``item_id``'s semantic ID, first level first (the collision code last, where it has one)."""
    row = recommender.item_tokenizer.item_to_index[item_id]
    return tuple(int(code) for code in recommender.item_tokenizer.semantic_ids.codes[row] if code >= 0)


def title_of(recommender: GenerativeRecommender, item_id: str) -> str | None:
    return (recommender.item_titles or {}).get(item_id)


def item_label(item_id: str, title: str | None) -> str:
    """How the page names an item: ``"title (item id)"``, or the id alone when the item has no title."""
    return f"{title} ({item_id})" if title else item_id


def _natural(item_id: str) -> tuple:
    """Sort key putting ``"2"`` before ``"10"`` (ids are often numbers written as text)."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", item_id) if part
    )


def catalogue_choices(recommender: GenerativeRecommender) -> list[tuple[str, str]]:
    """``(label, item id)`` of every item of the catalogue, titled ones first in title order, for the picker."""
    titles = recommender.item_titles or {}
    items = sorted(
        recommender.item_ids, key=lambda item: (item not in titles, titles.get(item, "").lower(), _natural(item))
    )
    return [(item_label(item, titles.get(item)), item) for item in items]


def parse_history(selected: Sequence[str] | None, typed: str | None) -> list[str]:
    """The history the page was given, oldest first: the picked items, then the pasted ids (separated by commas,
    spaces or new lines); an item given twice counts once, where it first came."""
    pasted = [item for item in re.split(r"[,\s]+", typed or "") if item]
    return list(dict.fromkeys([*(str(item) for item in selected or []), *pasted]))


def recommend_for_page(
    recommender: GenerativeRecommender, selected: Sequence[str] | None, typed: str | None, k: float | int | None
) -> PageResult:
    """What the page's button computes: the top ``k`` for the picked and pasted history, each with its explanation.

    Bad input (no history, ids not in the catalogue, a bad K) gives a `PageResult` whose ``message`` says what was
    wrong and how to fix it, never an exception: the page shows it in place of the results.
    """
    history = parse_history(selected, typed)
    if not history:
        return PageResult(
            message="Pick at least one item from the catalogue, or paste item ids, then press the button."
        )
    lookup = recommender.item_tokenizer.item_to_index
    unknown = [item for item in history if item not in lookup]
    if unknown:
        shown = ", ".join(repr(item) for item in unknown[:10]) + (" ..." if len(unknown) > 10 else "")
        return PageResult(
            message=f"{len(unknown)} of the history's items are not in the catalogue: {shown}. Pick items from the "
            "list, or paste the ids of catalogue items"
            + (" (the list shows each item's id in brackets after its title)." if recommender.item_titles else ".")
        )
    rows = [
        {"item_id": item, "title": title_of(recommender, item), "semantic_id": semantic_id_of(recommender, item)}
        for item in history
    ]
    try:
        k = int(k if k is not None else recommender.config.top_k)
        (ranked,) = recommender.recommend([history], k=k)
    except (TypeError, ValueError) as err:
        return PageResult(history=rows, message=f"No recommendations: {err}")
    # the model reads the last max_history items: explain with what it read
    read = [(row["item_id"], row["semantic_id"]) for row in rows[-recommender.config.max_history :]]
    recommendations = []
    for rank, (item, score) in enumerate(ranked, 1):
        codes = semantic_id_of(recommender, item)
        recommendations.append(
            {
                "rank": rank,
                "item_id": item,
                "title": title_of(recommender, item),
                "score": score,
                "semantic_id": codes,
                "explanation": explain(codes, read),
            }
        )
    return PageResult(history=rows, recommendations=recommendations)


def _codes(codes: Sequence[int]) -> str:
    return "-".join(str(code) for code in codes)


def _table(css_class: str, header: Sequence[str], rows: Sequence[Sequence[tuple[str, str]]]) -> str:
    """An HTML table; each cell is ``(its class, its already escaped text)``."""
    head = "".join(f"<th>{html.escape(name)}</th>" for name in header)
    body = "".join("<tr>" + "".join(f'<td class="{c}">{text}</td>' for c, text in row) + "</tr>" for row in rows)
    return f'<table class="genrec-table {css_class}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_message(message: str) -> str:
    return f'<div class="genrec-message">{html.escape(message)}</div>'


def render_history(result: PageResult, max_history: int | None = None) -> str:
    """The history as an HTML table (item id, title, semantic ID); a note when the model reads only its last part."""
    if not result.history:
        return ""
    rows = [
        [
            ("genrec-item", html.escape(row["item_id"])),
            ("genrec-title", html.escape(row["title"] or "")),
            ("genrec-sid", _codes(row["semantic_id"])),
        ]
        for row in result.history
    ]
    note = ""
    if max_history is not None and len(result.history) > max_history:
        note = f"<p>The model reads the last {max_history} of these {len(result.history)} items.</p>"
    return _table("genrec-history", ["item id", "title", "semantic ID"], rows) + note


def _why(row: dict[str, Any], titles: Mapping[str, str]) -> str:
    explanation: Explanation = row["explanation"]
    if explanation.history_item is None:
        return "shares no code with the history"
    level = len(explanation.shared_prefix)
    total = len(row["semantic_id"])
    source = html.escape(item_label(explanation.history_item, titles.get(explanation.history_item)))
    prefix = f'<span class="genrec-prefix">{_codes(explanation.shared_prefix)}</span>'
    if level == total:
        return f"is {source} of the history"
    return f"shares {prefix} ({level} of {total} codes) with {source}"


def render_recommendations(result: PageResult, titles: Mapping[str, str] | None = None) -> str:
    """The top K as an HTML table (rank, item id, title, score, semantic ID, why), or the page's message."""
    if result.message is not None:
        return render_message(result.message)
    rows = [
        [
            ("genrec-rank", str(row["rank"])),
            ("genrec-item", html.escape(row["item_id"])),
            ("genrec-title", html.escape(row["title"] or "")),
            ("genrec-score", "–" if math.isnan(row["score"]) else f"{row['score']:.3f}"),
            ("genrec-sid", _codes(row["semantic_id"])),
            ("genrec-why", _why(row, titles or {})),
        ]
        for row in result.recommendations
    ]
    header = ["rank", "item id", "title", "score", "semantic ID", "why: the longest prefix shared with the history"]
    return _table("genrec-recommendations", header, rows)


def load_recommender(
    recommender_or_path_or_repo_id: GenerativeRecommender | str | os.PathLike, **from_pretrained_kwargs: Any
) -> GenerativeRecommender:
    if isinstance(recommender_or_path_or_repo_id, GenerativeRecommender):
        return recommender_or_path_or_repo_id
    return GenerativeRecommender.from_pretrained(recommender_or_path_or_repo_id, **from_pretrained_kwargs)


def _import_gradio():
    try:
        import gradio
    except ImportError as err:
        raise ImportError(f"The demo page needs Gradio, an optional extra: {INSTALL_HINT}") from err
    return gradio


def build_demo(
    recommender_or_path_or_repo_id: GenerativeRecommender | str | os.PathLike,
    *,
    title: str | None = None,
    **from_pretrained_kwargs: Any,
):
    """The demo page of a recommender, as a `gradio.Blocks` (start it with `launch_demo`, or ``.launch()``).

    Args:
        recommender_or_path_or_repo_id: a `GenerativeRecommender`, a bundle's folder, or its Hub repo id.
        title (`str`, *optional*): the page's heading (default: the bundle's name or data set).
        from_pretrained_kwargs: passed to `GenerativeRecommender.from_pretrained` (``device``, ``revision``, ...).
    """
    gr = _import_gradio()
    recommender = load_recommender(recommender_or_path_or_repo_id, **from_pretrained_kwargs)
    if title is None:
        source = recommender_or_path_or_repo_id
        name = None if isinstance(source, GenerativeRecommender) else os.path.basename(os.fspath(source).rstrip("/"))
        title = f"hf_genrec recommender: {name or recommender.config.dataset or 'demo'}"
    titles = recommender.item_titles or {}
    top_k = min(recommender.config.top_k, recommender.item_tokenizer.num_items)

    def on_recommend(selected, typed, k):
        result = recommend_for_page(recommender, selected, typed, k)
        return render_history(result, recommender.config.max_history), render_recommendations(result, titles)

    with gr.Blocks(title=title) as demo:
        gr.Markdown(
            f"# {html.escape(title)}\n{recommender.item_tokenizer.num_items:,} items. Pick a history (oldest first) "
            "or paste item ids, then ask for the top K. Each recommended item shows its semantic ID and the longest "
            "prefix of it that it shares with an item of the history: the codes the model generated along that item."
        )
        with gr.Row():
            selected = gr.Dropdown(
                choices=catalogue_choices(recommender),
                multiselect=True,
                label="History: pick items (oldest first)",
                elem_id="genrec-pick",
            )
            typed = gr.Textbox(label="...or paste item ids", placeholder="e.g. 1, 2, 3", elem_id="genrec-typed")
        with gr.Row():
            k = gr.Slider(1, min(MAX_K, recommender.item_tokenizer.num_items), value=top_k, step=1, label="K")
            button = gr.Button("Recommend", variant="primary", elem_id="genrec-recommend")
        gr.Markdown("### History")
        history = gr.HTML(elem_id="genrec-history")
        gr.Markdown("### Recommendations")
        recommendations = gr.HTML(elem_id="genrec-recommendations")
        button.click(on_recommend, inputs=[selected, typed, k], outputs=[history, recommendations])
    return demo


def launch_demo(demo, **launch_kwargs: Any):
    """Start a page of `build_demo` with its theme and style (system fonts, no font download); ``launch_kwargs``
    go to ``gradio.Blocks.launch`` (``server_name``, ``server_port``, ``share``, ``prevent_thread_lock``, ...)."""
    gr = _import_gradio()
    theme = gr.themes.Soft(font=_FONTS[0], font_mono=_FONTS[1])
    return demo.launch(**{"theme": theme, "css": CSS, **launch_kwargs})
