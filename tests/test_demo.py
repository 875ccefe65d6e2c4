"""The demo page's parts without a browser: the item titles a bundle carries, the explanation of each recommended
item, what the page's button computes (bad input included), the HTML it shows, and ``hf-genrec demo --space-dir``
(whose app.py builds the page from a loopback Hub)."""

from __future__ import annotations

import json
import runpy
import sys

import numpy as np
import pytest

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.bundle.io import titles_of_items
from hf_genrec.bundle.layout import read_manifest
from hf_genrec.cli.main import main
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.serving.demo import (
    Explanation,
    build_demo,
    catalogue_choices,
    explain,
    parse_history,
    recommend_for_page,
    render_history,
    render_recommendations,
    semantic_id_of,
)
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5

N_ITEMS = 40


def tiny_recommender(titled: int = N_ITEMS) -> GenerativeRecommender:
    """An untrained tiny T5 over 40 items ``i0``..``i39``, the first ``titled`` of them with a title ``Film n``."""
    features = np.random.default_rng(0).normal(size=(N_ITEMS, 8)).astype("float32")
    quantizer = RQKMeans(n_levels=2, codebook_size=4, pca_dim=None)
    ids = quantizer.fit(features, [f"i{n}" for n in range(N_ITEMS)])
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), ids, history_eos=False)
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    titles = {f"i{n}": f"Film {n}" for n in range(titled)} or None
    config = GenRecConfig(num_beams=10, top_k=5, max_history=4, dataset="tiny")
    return GenerativeRecommender(model, item_tokenizer, config, quantizer=quantizer, item_titles=titles)


@pytest.fixture(scope="module")
def recommender() -> GenerativeRecommender:
    return tiny_recommender()


def test_explain_finds_the_longest_shared_prefix_and_the_most_recent_item():
    history = [("a", (3, 2, 0)), ("b", (3, 1, 4)), ("c", (5, 1, 0)), ("d", (3, 1, 7))]
    assert explain((3, 1, 0), history) == Explanation((3, 1), "d")  # b and d share as much: d is more recent
    assert explain((3, 2, 5), history) == Explanation((3, 2), "a")
    assert explain((5, 1, 0), history) == Explanation((5, 1, 0), "c")  # the item itself is in the history
    assert explain((9, 1, 0), history) == Explanation((), None)  # the first code differs from every item's
    assert explain((3, 1), []) == Explanation((), None)


def test_parse_history_keeps_the_order_and_drops_repeats():
    assert parse_history(["i3", "i1"], "i7, i3\ni9  i2") == ["i3", "i1", "i7", "i9", "i2"]
    assert parse_history(None, None) == [] and parse_history([], " , \n") == []


def test_the_button_shows_recommend_with_titles_semantic_ids_and_the_why(recommender):
    history = ["i4", "i11", "i20", "i7", "i30"]
    result = recommend_for_page(recommender, history[:3], "i7 i30", 6.0)  # the slider's value is a float
    assert result.message is None
    (expected,) = recommender.recommend([history], k=6)
    assert [(row["item_id"], row["score"]) for row in result.recommendations] == expected
    assert [row["rank"] for row in result.recommendations] == [1, 2, 3, 4, 5, 6]
    assert [row["item_id"] for row in result.history] == history
    assert result.history[0]["title"] == "Film 4" and result.recommendations[0]["title"].startswith("Film ")
    codes = recommender.item_tokenizer.semantic_ids.codes
    read = history[-recommender.config.max_history :]  # the model reads the last 4: the why names one of those
    for row in result.recommendations:
        sid = row["semantic_id"]
        assert sid == tuple(c for c in codes[recommender.item_tokenizer.item_to_index[row["item_id"]]] if c >= 0)
        shared = [sum(1 for _ in _common(sid, semantic_id_of(recommender, item))) for item in read]
        why = row["explanation"]
        assert len(why.shared_prefix) == max(shared) and why.shared_prefix == sid[: max(shared)]
        if max(shared):
            assert why.history_item == max(reversed(read), key=lambda item: shared[read.index(item)])
    page = render_recommendations(result, recommender.item_titles)
    assert page.count('<td class="genrec-title">Film ') == 6 and "Film 4 (i4)" not in page.split("<tbody>")[0]
    assert render_history(result, recommender.config.max_history).count("<tr>") == 6  # header + 5 items
    assert "reads the last 4 of these 5 items" in render_history(result, recommender.config.max_history)


def _common(a, b):
    for x, y in zip(a, b):
        if x != y:
            return
        yield x


@pytest.mark.parametrize(
    ("selected", "typed", "k", "says"),
    [
        ([], "", 5, "Pick at least one item"),
        (["i1"], "i2, nope, <b>x</b>", 5, "2 of the history's items are not in the catalogue: 'nope', '<b>x</b>'"),
        (["i1"], "", 41, "k=41 is larger than the catalogue (40 items)"),
        (["i1"], "", "many", "No recommendations: invalid literal"),
    ],
)
def test_bad_input_shows_a_message_not_a_traceback(recommender, selected, typed, k, says):
    result = recommend_for_page(recommender, selected, typed, k)
    assert result.message is not None and says in result.message and result.recommendations == []
    page = render_recommendations(result)
    assert 'class="genrec-message"' in page and "<b>" not in page  # ids a person typed are shown escaped


def test_titles_round_trip_an_absent_part_and_items_added_later(recommender, tmp_path):
    recommender.save_pretrained(tmp_path / "titled")
    assert "item_titles" in read_manifest(tmp_path / "titled")
    loaded = GenerativeRecommender.from_pretrained(tmp_path / "titled")
    assert loaded.item_titles == recommender.item_titles
    choices = catalogue_choices(loaded)
    assert choices[:2] == [("Film 0 (i0)", "i0"), ("Film 1 (i1)", "i1")] and len(choices) == N_ITEMS

    untitled = tiny_recommender(titled=0)
    untitled.save_pretrained(tmp_path / "untitled")
    assert not (tmp_path / "untitled" / "item_titles.json").exists()
    assert "item_titles" not in read_manifest(tmp_path / "untitled")
    reloaded = GenerativeRecommender.from_pretrained(tmp_path / "untitled")
    assert reloaded.item_titles is None and ("i5", "i5") in catalogue_choices(reloaded)
    # untitled ids in the order a person counts (i2 before i10), and no promise of titles in the message
    assert [item for _, item in catalogue_choices(reloaded)][:12] == [f"i{n}" for n in range(12)]
    assert "brackets" not in recommend_for_page(reloaded, ["nope"], "", 3).message
    assert "brackets" in recommend_for_page(loaded, ["nope"], "", 3).message
    assert recommend_for_page(reloaded, ["i5"], "", 3).history[0]["title"] is None

    codes = loaded.item_tokenizer.semantic_ids.codes[:2, :2]
    loaded.add_items(["new0", "new1"], codes=codes, titles={"new0": "A new film"})
    assert loaded.item_titles["new0"] == "A new film" and "new1" not in loaded.item_titles
    loaded.save_pretrained(tmp_path / "grown")
    assert GenerativeRecommender.from_pretrained(tmp_path / "grown").item_titles["new0"] == "A new film"

    (tmp_path / "titled" / "item_titles.json").write_text('["not", "a", "mapping"]')
    with pytest.raises(ValueError, match="item_titles.json must hold one JSON object"):
        GenerativeRecommender.from_pretrained(tmp_path / "titled")


def test_titles_of_an_items_table_skip_the_untitled():
    items = {"item_id": [1, 2, 3, 4], "title": ["Heat (1995)", None, "  ", " Up "]}
    assert titles_of_items(items) == {"1": "Heat (1995)", "4": "Up"}
    assert titles_of_items({"item_id": [1]}) == {}


def test_build_demo_without_gradio_names_the_extra(recommender, monkeypatch):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what `import gradio` meets when it is not installed
    with pytest.raises(ImportError, match=r'pip install "hf_genrec\[demo\]"'):
        build_demo(recommender)


def test_space_dir_writes_a_space_whose_app_builds_from_the_hub(recommender, monkeypatch, tmp_path, capsys):
    import gradio

    from .hub_server import use_loopback_hub

    with use_loopback_hub(monkeypatch, cache_dir=str(tmp_path / "hub-cache")) as hub:
        recommender.push_to_hub("someone/tiny-films")
        assert "item_titles.json" in hub.files("someone/tiny-films")
        space = tmp_path / "space"
        assert main(["demo", "someone/tiny-films", "--space-dir", str(space)]) == 0
        assert sorted(p.name for p in space.iterdir()) == ["README.md", "app.py", "requirements.txt"]
        front = space.joinpath("README.md").read_text().split("---\n")[1]
        assert "sdk: gradio\n" in front and "app_file: app.py\n" in front and "- someone/tiny-films\n" in front
        requirement = [line for line in space.joinpath("requirements.txt").read_text().splitlines() if line[:1] != "#"]
        assert requirement == ["hf_genrec[demo] @ git+https://github.com/hf-genrec/hf_genrec"]  # not on PyPI yet
        app = runpy.run_path(str(space / "app.py"), run_name="space_app")  # not "__main__": build, do not launch
    demo = app["demo"]
    assert isinstance(demo, gradio.Blocks)
    labels = json.dumps(demo.config)
    assert "Film 0 (i0)" in labels and "tiny-films" in labels

    folder = tmp_path / "bundle"
    recommender.save_pretrained(folder)
    assert main(["demo", str(folder), "--space-dir", str(tmp_path / "nope")]) == 1
    assert "needs the bundle's Hub repo id" in capsys.readouterr().err
