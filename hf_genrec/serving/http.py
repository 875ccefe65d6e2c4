"""The HTTP service of ``hf-genrec serve``: a FastAPI app around one `GenerativeRecommender`.

``POST /recommend`` (one history or a batch), ``GET /health``, ``GET /info``, and the catalogue changes ``POST
/catalog/add`` and ``POST /catalog/remove``, which answer only to ``Authorization: Bearer <token>`` when a token is
configured and are off otherwise. Concurrent requests are gathered into one beam search by a `MicroBatcher`
(`hf_genrec.serving.batching`), whose one worker thread also applies the catalogue changes in order with the searches.
Every bad request gets a 4xx whose JSON ``detail`` says what was wrong and how to fix it; no request names a file.

FastAPI and uvicorn come with the ``serve`` extra: ``pip install "hf_genrec[serve]"``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hmac
import math
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

try:
    from fastapi import Depends, FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from pydantic import (
        BaseModel,
        BeforeValidator,
        ConfigDict,
        Field,
        StrictBool,
        StrictInt,
        StrictStr,
        model_validator,
    )
except ImportError as err:  # the module is only imported by `hf-genrec serve` and whoever builds the app
    raise ImportError(
        'The HTTP service needs FastAPI and uvicorn: `pip install "hf_genrec[serve]"` (or `pip install fastapi '
        f"uvicorn`). ({err})"
    ) from err

from ..version import __version__
from .batching import BatcherClosed, MicroBatcher, ModelError, RequestError
from .recommender import GenerativeRecommender

#: an example body of each endpoint, shown in the errors that say how to fix a request
EXAMPLES = {
    "/recommend": '{"history": ["50", "181", "100"], "k": 10} or {"histories": [["50", "181"], ["1"]], "k": 10}',
    "/catalog/add": '{"items": [{"item_id": "new-1", "codes": [3, 14, 2]}]} or {"items": [{"item_id": "new-1"}], '
    '"features": [[0.1, 0.2, ...]]}',
    "/catalog/remove": '{"item_ids": ["50", "181"]}',
}


def _item_id(value: Any) -> Any:
    # ids are strings ("50"); a client that sends the number 50 means the same item
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


ItemId = Annotated[StrictStr, BeforeValidator(_item_id)]


class RecommendRequest(BaseModel):
    """One history (``history``) or a batch (``histories``), item ids oldest first."""

    model_config = ConfigDict(extra="forbid")
    history: list[ItemId] | None = Field(None, description="One user's item ids, oldest first.")
    histories: list[list[ItemId]] | None = Field(None, description="Several users' histories, for one answer each.")
    k: StrictInt | None = Field(
        None, description="Items per history (default: the bundle's top_k; at most num_beams)."
    )
    exclude: StrictBool | None = Field(
        None, description="Keep each history's own items out of its results (default: the bundle's exclude_history)."
    )

    @model_validator(mode="after")
    def _one_kind(self) -> RecommendRequest:
        if (self.history is None) == (self.histories is None):
            raise ValueError(
                "send exactly one of `history` (one list of item ids) or `histories` (a list of such lists), "
                f"{'not both' if self.history is not None else 'none was given'}"
            )
        if self.history is not None and not self.history:
            raise ValueError("`history` is empty: send at least one item id, oldest first")
        if self.histories is not None:
            if not self.histories:
                raise ValueError("`histories` is empty: send at least one history")
            empty = [i for i, history in enumerate(self.histories) if not history]
            if empty:
                raise ValueError(f"histories {empty[:10]} are empty: each history needs at least one item id")
        if self.k is not None and self.k < 1:
            raise ValueError(f"k must be at least 1 (the number of items per history), got {self.k}")
        return self


class ScoredItem(BaseModel):
    item_id: str
    score: float | None = Field(description="The item's log-probability plus fused bonuses; null when not scored.")


class Recommendation(BaseModel):
    items: list[ScoredItem] = Field(description="Best first.")


class BatchRecommendation(BaseModel):
    results: list[Recommendation] = Field(description="One per history, in the order sent.")


class NewItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: ItemId
    codes: list[StrictInt] | None = Field(None, description="The quantiser's codes, without the collision level.")
    title: str | None = Field(None, description="A title to show for it (e.g. in `hf-genrec demo`).")


class AddItemsRequest(BaseModel):
    """New items with their codes, or with one row of ``features`` each (encoded by the bundle's quantiser)."""

    model_config = ConfigDict(extra="forbid")
    items: list[NewItem] = Field(min_length=1)
    features: list[list[float]] | None = None
    if_full: Literal["error", "skip"] = "error"

    @model_validator(mode="after")
    def _codes_or_features(self) -> AddItemsRequest:
        with_codes = [item.codes is not None for item in self.items]
        if self.features is None and not all(with_codes):
            raise ValueError("give every item its `codes`, or give `features` with one row per item")
        if self.features is not None and any(with_codes):
            raise ValueError("give either `codes` on the items or `features`, not both")
        if self.features is not None and len(self.features) != len(self.items):
            raise ValueError(
                f"`features` has {len(self.features)} rows for {len(self.items)} items; give one per item"
            )
        rows = [item.codes for item in self.items] if self.features is None else self.features
        if len({len(row) for row in rows}) > 1:
            raise ValueError("every item's codes (or features row) must have the same length")
        return self


class AddedItem(BaseModel):
    item_id: str
    semantic_id: list[int]


class AddItemsResponse(BaseModel):
    added: list[AddedItem]
    not_added: list[str] = Field(description="With if_full='skip': items whose prefix had no free ID left.")
    catalogue_size: int


class RemoveItemsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_ids: list[ItemId] = Field(min_length=1)


class RemoveItemsResponse(BaseModel):
    removed: list[str]
    catalogue_size: int


def create_app(
    recommender: GenerativeRecommender,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5.0,
    max_request_histories: int = 256,
    admin_token: str | None = None,
    bundle_name: str | None = None,
) -> FastAPI:
    """The FastAPI app serving ``recommender`` (run it with uvicorn; `hf-genrec serve` does).

    Args:
        recommender (`GenerativeRecommender`): what to serve; the app's worker thread owns it from the first request.
        max_batch (`int`, defaults to 64): the most histories gathered into one beam search (1: one per request).
        max_wait_ms (`float`, defaults to 5.0): how long the first waiting request waits for others to join it.
        max_request_histories (`int`, defaults to 256): the most histories one request may send (more: HTTP 413).
        admin_token (`str`, *optional*): the bearer token of the catalogue endpoints; `None` turns them off.
        bundle_name (`str`, *optional*): the bundle's folder or repo id, as ``GET /info`` reports it.

    Example:
    ```python
    >>> from fastapi.testclient import TestClient
    >>> app = create_app(GenerativeRecommender.from_pretrained("outputs/ml-100k"), bundle_name="outputs/ml-100k")
    >>> with TestClient(app) as client:
    ...     client.post("/recommend", json={"history": ["50", "181", "100"], "k": 2}).json()
    {'items': [{'item_id': '...', 'score': -...}, {'item_id': '...', 'score': -...}]}
    ```
    """
    if isinstance(max_request_histories, bool) or not isinstance(max_request_histories, int):
        raise ValueError(f"max_request_histories must be an int >= 1, got {max_request_histories!r}.")
    if max_request_histories < 1:
        raise ValueError(f"max_request_histories must be an int >= 1, got {max_request_histories!r}.")
    if admin_token is not None and not admin_token.strip():
        raise ValueError("admin_token is empty; give a secret token, or None to turn the catalogue endpoints off.")
    batcher = MicroBatcher(recommender, max_batch=max_batch, max_wait_ms=max_wait_ms)
    config = recommender.config

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await asyncio.to_thread(batcher.close)

    app = FastAPI(
        title="hf_genrec recommender",
        version=__version__,
        description="Top-K recommendations from a generative recommender (hf_genrec): item ids in, item ids out.",
        lifespan=lifespan,
    )
    app.state.batcher = batcher
    app.add_exception_handler(RequestValidationError, _invalid_request)
    bearer = HTTPBearer(auto_error=False, description="The token of `hf-genrec serve --admin-token-env VAR`.")

    # a default, not Annotated: the annotations are strings resolved in the module, where `bearer` does not exist
    def admin(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:  # noqa: B008
        if admin_token is None:
            raise HTTPException(
                403,
                "Catalogue changes are off on this server. Start it with `--admin-token-env VAR`, VAR an environment "
                "variable holding a secret token, and send `Authorization: Bearer <token>`.",
            )
        if credentials is None or not hmac.compare_digest(credentials.credentials.encode(), admin_token.encode()):
            raise HTTPException(
                401,
                "Missing or wrong token: send `Authorization: Bearer <token>` with the token of the server's "
                "--admin-token-env variable.",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @app.get("/health")
    async def health() -> dict[str, str]:
        """200 while the worker serves; 503 once it has stopped."""
        if not batcher.alive:
            raise HTTPException(503, "The recommender's worker has stopped; restart the server.")
        return {"status": "ok"}

    @app.get("/info")
    async def info() -> dict[str, Any]:
        """The bundle, its catalogue and the settings the service searches with."""
        model_config = recommender.model.config
        return {
            "bundle": bundle_name,
            "dataset": config.dataset,
            "catalogue_size": recommender.item_tokenizer.num_items,
            "new_items": len(recommender.catalog.new_items),
            "retired_items": len(recommender.catalog.retired),
            "model_type": model_config.model_type,
            "backbone": config.backbone,
            "id_scheme": config.id_scheme,
            "num_beams": config.num_beams,
            "top_k": config.top_k,
            "max_history": config.max_history,
            "new_item_slots": config.new_item_slots,
            "fusion": dataclasses.asdict(config.fusion),
            "recipe": recommender.card_data.hyperparameters,
            "batching": {
                "max_batch": max_batch,
                "max_wait_ms": max_wait_ms,
                "max_request_histories": max_request_histories,
            },
            "catalogue_changes": admin_token is not None,
            "library_version": __version__,
        }

    @app.post(
        "/recommend",
        response_model=Recommendation | BatchRecommendation,
        responses={400: {"description": "Malformed JSON"}, 413: {"description": "Too many histories"}},
    )
    async def recommend(body: RecommendRequest) -> dict[str, Any]:
        """Top-``k`` items with scores for one history (``{"items": [...]}``) or a batch (``{"results": [...]}``)."""
        histories = [body.history] if body.history is not None else body.histories
        if len(histories) > max_request_histories:
            raise HTTPException(
                413,
                f"{len(histories)} histories in one request; this server takes at most {max_request_histories} "
                "(--max-request-histories). Split them over several requests.",
            )
        k = config.top_k if body.k is None else body.k
        if k > config.num_beams:
            raise HTTPException(
                422,
                f"k={k} is above the bundle's num_beams={config.num_beams}: the beam search finds at most num_beams "
                f"items. Ask for k <= {config.num_beams}.",
            )
        exclude = config.fusion.exclude_history if body.exclude is None else body.exclude
        rows = await _outcome(lambda: batcher.submit_recommend(histories, k, exclude))
        results = [{"items": [{"item_id": item, "score": _finite(score)} for item, score in row]} for row in rows]
        return results[0] if body.history is not None else {"results": results}

    @app.post("/catalog/add", response_model=AddItemsResponse, dependencies=[Depends(admin)])
    async def catalog_add(body: AddItemsRequest) -> dict[str, Any]:
        """Add items (`GenerativeRecommender.add_items`): they can be recommended at once. Kept in memory only."""
        ids = [item.item_id for item in body.items]
        codes = None if body.features is not None else [item.codes for item in body.items]

        def add(rec: GenerativeRecommender):
            titles = {item.item_id: item.title for item in body.items if item.title is not None}
            added = rec.add_items(ids, body.features, codes=codes, if_full=body.if_full, titles=titles or None)
            return added, rec.item_tokenizer.num_items

        added, size = await _outcome(lambda: batcher.submit_call(add), bad_input=True)
        return {
            "added": [{"item_id": item, "semantic_id": list(codes)} for item, codes in added.items()],
            "not_added": [item for item in ids if item not in added],
            "catalogue_size": size,
        }

    @app.post("/catalog/remove", response_model=RemoveItemsResponse, dependencies=[Depends(admin)])
    async def catalog_remove(body: RemoveItemsRequest) -> dict[str, Any]:
        """Retire items (`GenerativeRecommender.remove_items`): never recommended again. Kept in memory only."""

        def remove(rec: GenerativeRecommender):
            rec.remove_items(body.item_ids)
            return rec.item_tokenizer.num_items

        size = await _outcome(lambda: batcher.submit_call(remove), bad_input=True)
        return {"removed": body.item_ids, "catalogue_size": size}

    return app


async def _outcome(submit, bad_input: bool = False):
    """Await the worker's answer to what ``submit()`` queued; its errors become HTTP errors. With ``bad_input``, a
    `ValueError` / `TypeError` (a catalogue method refusing the request's items) is the client's to fix (422)."""
    try:
        return await asyncio.wrap_future(submit())
    except RequestError as err:
        raise HTTPException(err.status_code, err.detail) from err
    except BatcherClosed as err:
        raise HTTPException(503, str(err)) from err
    except ModelError as err:
        raise HTTPException(500, str(err)) from err
    except (ValueError, TypeError) as err:
        if bad_input:
            raise HTTPException(422, str(err)) from err
        raise HTTPException(500, f"The server failed on this request ({type(err).__name__}: {err}).") from err
    except Exception as err:
        raise HTTPException(500, f"The server failed on this request ({type(err).__name__}: {err}).") from err


def _finite(score: float) -> float | None:
    # JSON has no NaN: an item the cold-start mode inserted without a score reads null
    return score if math.isfinite(score) else None


async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A body that is not JSON (400) or not the JSON an endpoint takes (422), said in one sentence with an example."""
    example = EXAMPLES.get(request.url.path)
    hint = f" Send a JSON object such as {example}." if example else ""
    errors = exc.errors()
    content_type = request.headers.get("content-type", "")
    if content_type and "json" not in content_type.lower():
        # curl's -d sends application/x-www-form-urlencoded unless told otherwise: the body then never parses as JSON
        return JSONResponse(
            status_code=415,
            content={"detail": f"The request body was sent as {content_type.split(';')[0]}, not JSON.{hint} Set "
                     "Content-Type: application/json (with curl: -H 'Content-Type: application/json')."},
        )  # fmt: skip
    if any(error.get("type") == "json_invalid" for error in errors):
        ctx = next(e for e in errors if e.get("type") == "json_invalid").get("ctx") or {}
        why = f" ({ctx['error']})" if ctx.get("error") else ""
        return JSONResponse(
            status_code=400,
            content={"detail": f"The request body is not valid JSON{why}.{hint} Set Content-Type: application/json."},
        )
    problems = []
    for error in errors:
        loc = [str(part) for part in error.get("loc", ()) if part != "body"]
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        if error.get("type") == "missing" and not loc:
            message = "the request has no JSON body"
        elif error.get("type") == "extra_forbidden":
            message = "is not a field of this request"
        elif error.get("type") not in ("value_error", "missing") and "input" in error:
            message += f" (got {error['input']!r})"[:200]
        problems.append(f"{'.'.join(loc)}: {message}" if loc else message)
    return JSONResponse(status_code=422, content={"detail": "; ".join(problems) + "." + hint})
