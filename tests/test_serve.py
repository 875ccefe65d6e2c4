"""`hf-genrec serve`: the HTTP service's endpoints and errors (FastAPI's test client on a tiny recommender), the
micro-batcher gathering concurrent requests into fewer searches with the same answers, the authenticated catalogue
endpoints, and the real server on a loopback port."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from hf_genrec.bundle.config import GenRecConfig
from hf_genrec.cli.main import main as cli_main
from hf_genrec.models.t5 import build_t5_model
from hf_genrec.semantic_ids import RQKMeans
from hf_genrec.serving.http import create_app
from hf_genrec.serving.recommender import GenerativeRecommender
from hf_genrec.tokenization import ItemTokenizer, minimal_t5_tokenizer

from .conftest import TINY_T5

ROOT = Path(__file__).resolve().parents[1]
N_ITEMS, BEAMS, TOP_K = 40, 10, 5
TOKEN = "correct horse battery staple"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A random tiny T5 over items "1".."40" with its RQ-KMeans quantiser (so features can place new items), saved."""
    features = np.random.default_rng(0).normal(size=(N_ITEMS, 8)).astype(np.float32)
    quantizer = RQKMeans(n_levels=3, codebook_size=4, pca_dim=None, seed=0)
    item_tokenizer = ItemTokenizer(minimal_t5_tokenizer(), quantizer.fit(features, [str(i) for i in range(1, 41)]))
    model = build_t5_model(item_tokenizer, seed=0, **TINY_T5)
    config = GenRecConfig(num_beams=BEAMS, top_k=TOP_K, dataset="tiny")
    path = tmp_path_factory.mktemp("serve") / "bundle"
    GenerativeRecommender(model, item_tokenizer, config=config, quantizer=quantizer).save_pretrained(path)
    return path


@pytest.fixture
def recommender(bundle) -> GenerativeRecommender:
    return GenerativeRecommender.from_pretrained(bundle)


@pytest.fixture
def client(recommender):
    with TestClient(create_app(recommender, bundle_name="tiny", max_request_histories=8)) as client:
        yield client


def _items(response) -> list[str]:
    return [row["item_id"] for row in response.json()["items"]]


# ---------------------------------------------------------------------------------------------------- endpoints


def test_health_info_and_openapi(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["bundle"] == "tiny" and info["dataset"] == "tiny" and info["catalogue_size"] == N_ITEMS
    assert (info["num_beams"], info["top_k"], info["max_history"]) == (BEAMS, TOP_K, 20)
    assert info["new_items"] == info["retired_items"] == 0 and info["model_type"] == "t5"
    assert info["fusion"]["exclude_history"] is False and info["catalogue_changes"] is False
    assert info["library_version"] == __import__("hf_genrec").__version__
    schema = client.get("/openapi.json").json()
    assert set(schema["paths"]) == {"/recommend", "/health", "/info", "/catalog/add", "/catalog/remove"}
    fields = schema["components"]["schemas"]["RecommendRequest"]["properties"]
    assert set(fields) == {"history", "histories", "k", "exclude"}


def test_recommend_one_history_and_a_batch_as_the_recommender_does(client, recommender):
    expected = recommender.recommend([["1", "2", "3"], ["7"]], k=4)
    one = client.post("/recommend", json={"history": ["1", "2", "3"], "k": 4})
    assert one.status_code == 200
    assert [(r["item_id"], pytest.approx(r["score"], abs=1e-5)) for r in one.json()["items"]] == expected[0]
    batch = client.post("/recommend", json={"histories": [["1", "2", "3"], [7]], "k": 4}).json()  # 7: an int id
    assert [[r["item_id"] for r in result["items"]] for result in batch["results"]] == [
        [item for item, _ in row] for row in expected
    ]
    # no k: the bundle's top_k
    assert len(_items(client.post("/recommend", json={"history": ["1"]}))) == TOP_K


def test_exclude_bans_the_history_as_exclude_history_does(client, recommender):
    history = [item for item, _ in recommender.recommend([["1"]], k=3)[0]]  # the items it would recommend
    expected = [item for item, _ in recommender.recommend([history], k=BEAMS, exclude_history=True)[0]]
    got = _items(client.post("/recommend", json={"history": history, "k": BEAMS, "exclude": True}))
    assert got == expected and not set(got) & set(history)
    kept = _items(client.post("/recommend", json={"history": history, "k": BEAMS, "exclude": False}))
    assert set(kept) & set(history)


BAD_REQUESTS = [
    ("unknown items", {"history": ["1", "nope", "999"]}, 422, "not in the catalogue: ['999', 'nope']"),
    ("empty history", {"history": []}, 422, "`history` is empty"),
    ("an empty history of a batch", {"histories": [["1"], []]}, 422, "histories [1] are empty"),
    ("no histories", {"histories": []}, 422, "`histories` is empty"),
    ("k below 1", {"history": ["1"], "k": 0}, 422, "k must be at least 1"),
    ("k above the beams", {"history": ["1"], "k": BEAMS + 1}, 422, f"Ask for k <= {BEAMS}"),
    ("k not an int", {"history": ["1"], "k": "ten"}, 422, "k: Input should be a valid integer"),
    ("k a bool", {"history": ["1"], "k": True}, 422, "k: Input should be a valid integer"),
    ("history a string", {"history": "1 2 3"}, 422, "history: Input should be a valid list"),
    ("exclude not a bool", {"history": ["1"], "exclude": "yes"}, 422, "exclude: Input should be a valid boolean"),
    ("an unknown field", {"history": ["1"], "user": 3}, 422, "user: is not a field"),
    ("history and histories", {"history": ["1"], "histories": [["1"]]}, 422, "not both"),
    ("neither", {"k": 3}, 422, "none was given"),
    ("too many histories", {"histories": [["1"]] * 9}, 413, "at most 8 (--max-request-histories)"),
]


@pytest.mark.parametrize(
    "body, status, message", [case[1:] for case in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
def test_bad_requests_say_what_was_wrong(client, body, status, message):
    response = client.post("/recommend", json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_malformed_json_and_no_body(client):
    response = client.post("/recommend", content=b'{"history": ["1",', headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"] and '{"history": ["50"' in response.json()["detail"]
    response = client.post("/recommend")
    assert response.status_code == 422 and "no JSON body" in response.json()["detail"]
    # what `curl -d '{...}'` sends without -H 'Content-Type: application/json'
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    response = client.post("/recommend", content=b'{"history": ["1"]}', headers=form)
    assert response.status_code == 415
    assert "application/x-www-form-urlencoded" in response.json()["detail"]
    assert "Content-Type: application/json" in response.json()["detail"]


def test_a_model_error_answers_500_and_the_worker_keeps_serving(client, recommender, monkeypatch):
    real = recommender.recommend
    failures = iter([RuntimeError("CUDA fell over")])

    def flaky(*args, **kwargs):
        error = next(failures, None)
        if error is not None:
            raise error
        return real(*args, **kwargs)

    monkeypatch.setattr(recommender, "recommend", flaky)
    response = client.post("/recommend", json={"history": ["1"]})
    assert response.status_code == 500 and "RuntimeError: CUDA fell over" in response.json()["detail"]
    assert client.get("/health").json() == {"status": "ok"}
    assert client.post("/recommend", json={"history": ["1"]}).status_code == 200


# ---------------------------------------------------------------------------------------------------- micro-batching


def _post_concurrently(app, bodies: list[dict]) -> list[httpx.Response]:
    async def send():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://serve") as client:
            return await asyncio.gather(*(client.post("/recommend", json=body) for body in bodies))

    try:
        return asyncio.run(send())
    finally:
        app.state.batcher.close()


def _counting(recommender, monkeypatch) -> list[int]:
    """Wrap ``recommender.recommend`` to record the number of histories of each call."""
    calls, real = [], recommender.recommend

    def counted(histories, *args, **kwargs):
        calls.append(len(histories))
        return real(histories, *args, **kwargs)

    monkeypatch.setattr(recommender, "recommend", counted)
    return calls


def test_concurrent_requests_share_searches_and_get_the_one_by_one_answers(recommender, monkeypatch):
    rng = np.random.default_rng(0)
    bodies = [
        {"history": [str(i) for i in rng.choice(np.arange(1, 41), size=int(rng.integers(1, 6)), replace=False)],
         "k": int(rng.integers(1, BEAMS + 1)), "exclude": bool(n % 2)}
        for n in range(16)
    ]  # fmt: skip
    one_by_one = [
        recommender.recommend([body["history"]], k=body["k"], exclude_history=body["exclude"])[0] for body in bodies
    ]
    calls = _counting(recommender, monkeypatch)
    # the batch fills at 16 histories, so it runs without waiting out max_wait_ms
    app = create_app(recommender, max_batch=16, max_wait_ms=10_000)
    responses = _post_concurrently(app, bodies)
    # one search per exclude setting, each with the largest k of its requests, truncated per request
    assert sorted(calls) == [8, 8]
    for response, expected in zip(responses, one_by_one):
        assert response.status_code == 200
        got = [(row["item_id"], row["score"]) for row in response.json()["items"]]
        assert [item for item, _ in got] == [item for item, _ in expected]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-4)


def test_max_batch_one_runs_one_search_per_request(recommender, monkeypatch):
    calls = _counting(recommender, monkeypatch)
    app = create_app(recommender, max_batch=1, max_wait_ms=50)
    responses = _post_concurrently(app, [{"history": [str(i)], "k": 3} for i in range(1, 7)])
    assert all(r.status_code == 200 for r in responses) and calls == [1] * 6


def test_a_bad_request_does_not_fail_the_batch_it_joins(recommender, monkeypatch):
    calls = _counting(recommender, monkeypatch)
    app = create_app(recommender, max_batch=3, max_wait_ms=10_000)
    bodies = [{"history": ["1"]}, {"history": ["2", "missing"]}, {"history": ["3"]}]
    good, bad, also_good = _post_concurrently(app, bodies)
    assert good.status_code == also_good.status_code == 200 and calls == [2]
    assert bad.status_code == 422 and "['missing']" in bad.json()["detail"]


# ---------------------------------------------------------------------------------------------------- catalogue


def _free_prefix(recommender) -> list[int]:
    """Codes (without the collision level) of a prefix no item has, so an item added there has a free ID."""
    ids = recommender.item_tokenizer.semantic_ids
    used = {tuple(row[:-1]) for row in ids.codes.tolist()}
    return next(
        [a, b, c] for a in range(4) for b in range(4) for c in range(4) if (a, b, c) not in used
    )  # fmt: skip


def test_catalogue_endpoints_are_off_without_a_token(client):
    for path, body in (("/catalog/add", {"items": [{"item_id": "x", "codes": [0, 0, 0]}]}),
                       ("/catalog/remove", {"item_ids": ["1"]})):  # fmt: skip
        for headers in ({}, AUTH):
            response = client.post(path, json=body, headers=headers)
            assert response.status_code == 403 and "--admin-token-env" in response.json()["detail"]
    assert client.get("/info").json()["catalogue_size"] == N_ITEMS


def test_catalogue_changes_need_the_token_and_serve_at_once(recommender):
    codes = _free_prefix(recommender)
    with TestClient(create_app(recommender, admin_token=TOKEN)) as client:
        body = {"items": [{"item_id": "new-1", "codes": codes, "title": "A new item"}]}
        assert client.post("/catalog/add", json=body).status_code == 401
        wrong = client.post("/catalog/add", json=body, headers={"Authorization": "Bearer guess"})
        assert wrong.status_code == 401 and wrong.headers["www-authenticate"] == "Bearer"
        added = client.post("/catalog/add", json=body, headers=AUTH)
        assert added.status_code == 200, added.text
        assert added.json() == {
            "added": [{"item_id": "new-1", "semantic_id": [*codes, 0]}],
            "not_added": [],
            "catalogue_size": N_ITEMS + 1,
        }
        assert client.post("/recommend", json={"history": ["new-1"]}).status_code == 200  # a known item now
        assert recommender.item_titles["new-1"] == "A new item"  # what the demo shows for it
        again = client.post("/catalog/add", json=body, headers=AUTH)
        assert again.status_code == 422 and "new-1" in again.json()["detail"]

        removed = client.post("/catalog/remove", json={"item_ids": ["1", "new-1"]}, headers=AUTH)
        assert removed.json() == {"removed": ["1", "new-1"], "catalogue_size": N_ITEMS - 1}
        info = client.get("/info").json()
        assert (info["catalogue_size"], info["new_items"], info["retired_items"]) == (N_ITEMS - 1, 0, 2)
        gone = client.post("/recommend", json={"history": ["1", "2"]})
        assert gone.status_code == 422 and "(['1'] were removed)" in gone.json()["detail"]
        everything = client.post("/recommend", json={"histories": [[str(i)] for i in range(2, 9)], "k": BEAMS})
        assert not {r["item_id"] for res in everything.json()["results"] for r in res["items"]} & {"1", "new-1"}
        unknown = client.post("/catalog/remove", json={"item_ids": ["nope"]}, headers=AUTH)
        assert unknown.status_code == 422 and "nope" in unknown.json()["detail"]


def test_catalogue_add_with_features_and_its_errors(recommender):
    with TestClient(create_app(recommender, admin_token=TOKEN)) as client:
        features = np.random.default_rng(1).normal(size=(1, 8)).round(3).tolist()
        body = {"items": [{"item_id": "by-features"}], "features": features, "if_full": "skip"}
        response = client.post("/catalog/add", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        assert len(response.json()["added"]) + len(response.json()["not_added"]) == 1
        bad = {
            "features of the wrong width": ({"items": [{"item_id": "w"}], "features": [[0.1, 0.2]]}, "width 2"),
            "codes and features": (
                {"items": [{"item_id": "b", "codes": [0, 0, 0]}], "features": [[0.0] * 8]},
                "not both",
            ),
            "neither": ({"items": [{"item_id": "n"}]}, "give every item its `codes`"),
            "rows per item": ({"items": [{"item_id": "r"}], "features": [[0.0] * 8] * 2}, "2 rows for 1 items"),
            "no items": ({"items": []}, "items: List should have at least 1 item"),
            "a file path": ({"items": [{"item_id": "p", "codes": [0, 0, 0]}], "path": "/etc/passwd"}, "path: is not"),
        }
        for name, (body, message) in bad.items():
            response = client.post("/catalog/add", json=body, headers=AUTH)
            assert response.status_code == 422 and message in response.json()["detail"], (name, response.text)


# ---------------------------------------------------------------------------------------------------- the command


def test_serve_without_fastapi_names_the_extra(monkeypatch, bundle, capsys):
    monkeypatch.delitem(sys.modules, "hf_genrec.serving.http")
    monkeypatch.setitem(sys.modules, "fastapi", None)  # None: `import fastapi` raises ImportError
    assert cli_main(["serve", str(bundle)]) == 1
    assert 'pip install "hf_genrec[serve]"' in capsys.readouterr().err


def test_serve_refuses_bad_options_before_loading(monkeypatch, bundle, capsys):
    monkeypatch.delenv("HF_GENREC_TEST_UNSET", raising=False)
    assert cli_main(["serve", str(bundle), "--admin-token-env", "HF_GENREC_TEST_UNSET"]) == 1
    assert "HF_GENREC_TEST_UNSET: that environment variable is unset" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["serve", str(bundle), "--max-batch", "0"])
    assert "--max-batch must be >= 1" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_real_server_on_a_loopback_port(bundle):
    port = _free_port()
    env = {**os.environ, "SERVE_TEST_TOKEN": TOKEN, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "hf_genrec.cli.main", "serve", str(bundle), "--port", str(port),
               "--max-wait-ms", "2", "--admin-token-env", "SERVE_TEST_TOKEN", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, f"the server exited: {server.stdout.read()}"
            try:
                if httpx.get(f"{base}/health", timeout=1).json() == {"status": "ok"}:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not answer /health within 90 s"
            time.sleep(0.2)
        response = httpx.post(f"{base}/recommend", json={"history": ["1", "2"], "k": 3}, timeout=30)
        assert response.status_code == 200 and len(response.json()["items"]) == 3
        assert httpx.post(f"{base}/catalog/remove", json={"item_ids": ["3"]}, headers=AUTH).json()["removed"] == ["3"]
    finally:
        server.terminate()
        server.wait(timeout=30)
    # the change lived in the server's memory only: the bundle on disk is as it was
    assert "3" in GenerativeRecommender.from_pretrained(bundle).item_ids


# ---------------------------------------------------------------------------------------------------- the load test


def test_load_test_record_makes_a_table():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import report  # benchmarks/report.py

    run = {"requests": 200, "errors": 0, "seconds": 2.0, "requests_per_second": 100.0, "p50_ms": 8.0, "p99_ms": 20.0}
    record = {
        "command": "python benchmarks/serve_load.py outputs/ml-100k",
        "machine": "AMD EPYC, 2 cores",
        "date": "2026-12-04",
        "bundle": "outputs/ml-100k",
        "runs": {
            "micro-batched": {"1": run, "8": {**run, "requests_per_second": 300.0}},
            "one search per request": {"1": run, "8": run},
        },  # fmt: skip
        "gain": {"1": 1.0, "8": 3.0},
    }
    assert report.question_of(record) == "serving"
    table = report.serving_section(["serve_load.json"], {"serve_load.json": record})
    assert "| micro-batched | 8 | 300.0 | 8.0 | 20.0 | 0 |" in table and "3.00x" in table
    assert json.dumps(record)  # the record is plain JSON
