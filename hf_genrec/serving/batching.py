"""Micro-batching for the HTTP service (`hf_genrec.serving.http`): concurrent requests are gathered into one beam
search, on one worker thread that owns the recommender.

A beam search over 64 histories costs little more than over one, so a service that answers each request with its own
search wastes most of the model's time under load. `MicroBatcher` queues the requests; its worker takes the first
one waiting, gathers whatever else arrives until ``max_batch`` histories are waiting or ``max_wait_ms`` have passed
since that first one, runs one `GenerativeRecommender.recommend` per group of requests that share the history
exclusion, and hands each request its own rows. Catalogue changes go through the same worker, so a search never sees
a catalogue half-changed, and torch (not re-entrant here) only ever runs on that one thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from .recommender import GenerativeRecommender

logger = logging.getLogger(__name__)


class RequestError(Exception):
    """A request the recommender cannot serve as sent (an unknown item, ``k`` too large): the client's to fix.

    Args:
        status_code (`int`): the HTTP status to answer with (a 4xx).
        detail (`str`): what was wrong and how to fix it.
    """

    def __init__(self, status_code: int, detail: str):
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail


class ModelError(Exception):
    """The recommender raised while serving a batch: the server's fault, not the client's (an HTTP 500)."""


class BatcherClosed(Exception):
    """The batcher is shutting down (or its worker died) and takes no more work (an HTTP 503)."""


@dataclass
class _Recommend:
    histories: list[list[str]]
    k: int
    exclude: bool
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


@dataclass
class _Call:
    fn: Callable[[GenerativeRecommender], Any]
    future: Future = field(default_factory=Future)


_STOP = object()


class MicroBatcher:
    """Gathers concurrent recommendation requests into few `GenerativeRecommender.recommend` calls, on one thread.

    Requests with different ``k`` share a search: it runs with the largest ``k`` of the group and each request gets
    its first ``k`` rows. That is exact because the search keeps ``num_beams`` at the bundle's value for every ``k`` up
    to it (`recommend` uses ``max(num_beams, k)`` beams), and its results are the best finished beams in order, so a
    shorter list is a prefix of a longer one. With the cold-start mode on (``config.new_item_slots``) the places
    given to new items depend on ``k``, so there requests only share a search with requests of the same ``k``.

    Args:
        recommender (`GenerativeRecommender`): the recommender; only the worker thread touches it once started.
        max_batch (`int`, defaults to 64): the most histories gathered into one search (1: one search per request).
        max_wait_ms (`float`, defaults to 5.0): how long the first waiting request waits for company.

    Example:
    ```python
    >>> batcher = MicroBatcher(GenerativeRecommender.from_pretrained("outputs/ml-100k"), max_batch=32)
    >>> batcher.submit_recommend([["50", "181"]], k=3, exclude=False).result()  # a concurrent.futures.Future
    [[('...', -...), ('...', -...), ('...', -...)]]
    >>> batcher.close()
    ```
    """

    def __init__(self, recommender: GenerativeRecommender, max_batch: int = 64, max_wait_ms: float = 5.0):
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be an int >= 1 (histories per search), got {max_batch!r}.")
        if not isinstance(max_wait_ms, (int, float)) or max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be a number >= 0 (milliseconds), got {max_wait_ms!r}.")
        self.recommender = recommender
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def alive(self) -> bool:
        """Whether the worker runs (or will start on the first request)."""
        return not self._closed and (self._thread is None or self._thread.is_alive())

    def start(self) -> None:
        """Start the worker thread (done by the first request when not called; calling it twice does nothing)."""
        with self._lock:
            if self._closed:
                raise BatcherClosed("The batcher is closed; create a new one.")
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="hf-genrec-batcher", daemon=True)
                self._thread.start()

    def close(self, timeout: float = 30.0) -> None:
        """Finish the batch in hand, fail every request still queued with `BatcherClosed`, stop the worker."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        self._queue.put(_STOP)
        if thread is not None:
            thread.join(timeout)
        self._fail_queued()

    def submit_recommend(self, histories: list[list[str]], k: int, exclude: bool) -> Future:
        """Queue one request; its future gives ``recommend``'s rows for ``histories`` (``k`` items each), or raises
        `RequestError` (the request's fault), `ModelError` or `BatcherClosed`."""
        return self._submit(_Recommend([list(h) for h in histories], k, bool(exclude)))

    def submit_call(self, fn: Callable[[GenerativeRecommender], Any]) -> Future:
        """Queue ``fn(recommender)`` (a catalogue change) to run on the worker between two searches; its future gives
        what ``fn`` returns or raises what it raised."""
        return self._submit(_Call(fn))

    def _submit(self, job):
        if self._closed:
            raise BatcherClosed("The server is shutting down and takes no more requests.")
        self.start()
        if not self._thread.is_alive():
            raise BatcherClosed("The recommender's worker thread has stopped; restart the server.")
        self._queue.put(job)
        return job.future

    # ------------------------------------------------------------------------------------------------ the worker

    def _loop(self) -> None:
        carry = None  # a job taken from the queue that did not fit the batch in hand: it starts the next one
        while True:
            job = carry if carry is not None else self._queue.get()
            carry = None
            if job is _STOP:
                return
            if isinstance(job, _Call):
                self._call(job)
                continue
            batch, carry = self._gather(job)
            try:
                self._run(batch)
            except Exception as err:  # a bug here must not stop the worker: fail this batch, serve the next
                logger.exception("The batch failed outside the model.")
                for item in batch:
                    _fail(item.future, ModelError(f"The server failed on this batch ({type(err).__name__}: {err})."))

    def _gather(self, first: _Recommend) -> tuple[list[_Recommend], Any]:
        """``first`` and the requests that arrive before the batch is full or ``first``'s wait is over; a job that
        does not join (a catalogue change, a request too big to fit, the stop) comes back as the carry."""
        batch, size = [first], len(first.histories)
        deadline = first.enqueued + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                # past the deadline, still take what is already waiting: under load the queue fills while the model
                # runs, and those requests have waited long enough
                job = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(job, _Recommend) and size + len(job.histories) <= self.max_batch:
                batch.append(job)
                size += len(job.histories)
            else:
                return batch, job
        return batch, None

    def _run(self, batch: list[_Recommend]) -> None:
        recommender = self.recommender
        # cold-start slots depend on k, so with them on only requests of one k can share a search
        by_k = bool(recommender.config.new_item_slots)
        groups: dict[tuple, list[_Recommend]] = {}
        for job in batch:
            if not job.future.set_running_or_notify_cancel():  # the client went away
                continue
            try:
                self._check(job)
            except RequestError as err:
                job.future.set_exception(err)
                continue
            groups.setdefault((job.exclude, job.k if by_k else None), []).append(job)
        for (exclude, _), jobs in groups.items():
            histories = [history for job in jobs for history in job.histories]
            k = max(job.k for job in jobs)
            try:
                rows = recommender.recommend(histories, k=k, batch_size=self.max_batch, exclude_history=exclude)
            except Exception as err:
                logger.exception("recommend() failed on a batch of %d histories.", len(histories))
                for job in jobs:
                    job.future.set_exception(
                        ModelError(f"The recommender failed on this batch ({type(err).__name__}: {err}).")
                    )
                continue
            start = 0
            for job in jobs:
                job.future.set_result([row[: job.k] for row in rows[start : start + len(job.histories)]])
                start += len(job.histories)

    def _check(self, job: _Recommend) -> None:
        """Raise `RequestError` for what the recommender would refuse, against the catalogue as it is now (a
        catalogue change may have come between the request's arrival and its turn)."""
        tokenizer = self.recommender.item_tokenizer
        lookup = tokenizer.item_to_index
        n_items = tokenizer.num_items
        if job.k > n_items:
            raise RequestError(
                422, f"k={job.k} is larger than the catalogue ({n_items} items); ask for k <= {n_items}."
            )
        for i, history in enumerate(job.histories):
            unknown = [item for item in history if item not in lookup]
            if unknown:
                was = self.recommender.retired_among(unknown)
                where = "history" if len(job.histories) == 1 else f"histories[{i}]"
                raise RequestError(
                    422,
                    f"{where} names {len(unknown)} item id(s) that are not in the catalogue: "
                    f"{sorted(set(unknown))[:10]}" + (f" ({was[:10]} were removed)" if was else "") + ". Send only "
                    "ids of the catalogue's items (the ids of the training data, as strings), or drop those items.",
                )

    def _call(self, job: _Call) -> None:
        if not job.future.set_running_or_notify_cancel():
            return
        try:
            job.future.set_result(job.fn(self.recommender))
        except Exception as err:
            job.future.set_exception(err)

    def _fail_queued(self) -> None:
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                return
            if job is not _STOP:
                _fail(job.future, BatcherClosed("The server shut down before this request's turn."))


def _fail(future: Future, err: Exception) -> None:
    """Fail ``future`` unless it already has an outcome (or was cancelled)."""
    if future.done():
        return
    if future.running() or future.set_running_or_notify_cancel():
        future.set_exception(err)
