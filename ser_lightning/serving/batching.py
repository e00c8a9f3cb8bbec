"""Dynamic batching: windows of concurrent requests scored together in one model call.

Each request hands its windows `(n, samples)` to `DynamicBatcher.scores` and awaits their scores
(the rows of what `score` returns: `inference.window_scores.WindowScores` in the service, class
probabilities and dimensions from one pass). One task takes requests off a queue: after the
first, it waits at most `max_wait_ms` for more, until `max_batch_windows` windows are gathered,
then runs the model once (on its own thread, so the event loop keeps accepting requests) and
hands each request its rows. Requests that arrive while the model is busy queue up and form the
next batch without waiting, so batches grow with load. `model_threads` batches (2 by default)
are scored at once, each on its own thread: a single caller of the network was the service's
bottleneck on a 2-core CPU, busy ~98 % of the time while part of a core stayed free, and two
served 9-53 % more requests/s on every backend (experiments/benchmarks/results/onnx_backend.md). The wait is only spent while another
request is on its way (being received or decoded: `expect`/`arrived`), so a lone client pays
none of it. With batching off, each request is scored alone, in arrival order.

A model trained on whole clips hands lists of 1-D clips of their own lengths instead of one
`(n, samples)` array; the batcher joins the lists, and `score` pads them (see
`EmotionService`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ser_lightning.utils.errors import InvalidSetting

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchingSettings:
    """How the batcher groups requests: on or off, the most windows per model call, the longest wait.

    Raises:
        InvalidSetting: when `max_batch_windows` or `model_threads` is below 1, or `max_wait_ms` is negative.
    """

    enabled: bool = True
    max_batch_windows: int = 32  # windows per model call (one request's may exceed it: then it is alone)
    max_wait_ms: float = 5.0  # how long the first request of a batch waits for others
    model_threads: int = 2  # batches scored at once, each on its own thread (conf/serve.yaml)

    def __post_init__(self) -> None:
        if self.max_batch_windows < 1:
            raise InvalidSetting(f"batching.max_batch_windows={self.max_batch_windows} must be at least 1")
        if self.max_wait_ms < 0:
            raise InvalidSetting(f"batching.max_wait_ms={self.max_wait_ms} must be 0 or more milliseconds")
        if self.model_threads < 1:
            raise InvalidSetting(
                f"batching.model_threads={self.model_threads} must be at least 1 (batches scored at once)"
            )


@dataclass
class BatchStats:
    """Counts since start: model calls, requests and windows scored."""

    batches: int = 0
    requests: int = 0
    windows: int = 0

    def as_dict(self) -> dict:
        """Report the counts, as /health shows them.

        Returns:
            `batches`, `requests`, `windows` and `mean_requests_per_batch` (0.0 before the first batch).
        """
        return {
            "batches": self.batches,
            "requests": self.requests,
            "windows": self.windows,
            "mean_requests_per_batch": round(self.requests / self.batches, 3) if self.batches else 0.0,
        }


class DynamicBatcher:
    """Scores the windows of concurrent requests together with `score(windows) -> scores`.

    `windows` is an `(n, samples)` array, or a list of 1-D whole clips for a whole-clip model;
    the scores have a row per window (an array, or `WindowScores`), and each request gets its rows.
    """

    def __init__(self, score: Callable[[np.ndarray | list[np.ndarray]], Any], settings: BatchingSettings):
        self.score = score
        self.settings = settings
        self.stats = BatchStats()
        self.on_the_way = 0  # requests being received or decoded, whose windows will come
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        # `model_threads` threads call the model, one batch each; the slots say how many are free
        self._model_threads = ThreadPoolExecutor(
            max_workers=settings.model_threads, thread_name_prefix="ser-model"
        )
        self._free_slots: asyncio.Semaphore | None = None
        self._scoring: set[asyncio.Task] = set()  # batches being scored

    async def start(self) -> None:
        """Create the request queue and start the task that forms and scores batches."""
        self._queue = asyncio.Queue()
        self._free_slots = asyncio.Semaphore(self.settings.model_threads)
        self._task = asyncio.create_task(self._run(), name="ser-batcher")

    async def stop(self) -> None:
        """Cancel the batching task and shut the model threads down, waiting for running batches."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._scoring:  # batches already on a model thread finish and answer their requests
            await asyncio.gather(*self._scoring, return_exceptions=True)
        self._model_threads.shutdown(wait=True)

    def expect(self) -> None:
        """Count a request that started: its windows will follow, or `arrived` is called when it fails."""
        self.on_the_way += 1

    def arrived(self) -> None:
        """Count a request announced by `expect` as no longer on its way (decoded, or failed)."""
        self.on_the_way = max(0, self.on_the_way - 1)

    async def scores(self, windows: np.ndarray | list[np.ndarray]) -> Any:
        """Score one request's windows, batched with those of concurrent requests.

        Args:
            windows: the request's windows, `(n, samples)`, or its whole clips, a list of 1-D arrays.

        Returns:
            Their rows of the scores, in order (`WindowScores` in the service).

        Raises:
            RuntimeError: when the batcher was not started.
        """
        if self._queue is None:
            raise RuntimeError("the batcher is not started (start() runs at application start-up)")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((windows, future))
        return await future

    async def _gather(self, first: tuple) -> tuple[list[tuple], tuple | None]:
        """Form a batch that starts with `first`.

        Requests already queued join at once, and for at most `max_wait_ms` newcomers too, up to
        `max_batch_windows` windows. A request that would overflow the batch is returned to start
        the next one (so the order is kept).

        Returns:
            The batch's (windows, future) requests, and the request held for the next batch or None.
        """
        assert self._queue is not None
        batch, size = [first], len(first[0])
        if not self.settings.enabled:
            return batch, None
        deadline = time.monotonic() + self.settings.max_wait_ms / 1000
        while size < self.settings.max_batch_windows:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self.on_the_way == 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if size + len(item[0]) > self.settings.max_batch_windows:
                return batch, item
            batch.append(item)
            size += len(item[0])
        return batch, None

    async def _run(self) -> None:
        assert self._queue is not None and self._free_slots is not None
        held = None
        while True:
            # a batch is formed only once a model thread is free to take it, so that requests
            # arriving meanwhile still join it
            await self._free_slots.acquire()
            first = held if held is not None else await self._queue.get()
            batch, held = await self._gather(first)
            live = [(w, f) for w, f in batch if not f.done()]  # a client that went away is skipped
            if not live:
                self._free_slots.release()
                continue
            task = asyncio.create_task(self._score_batch(live), name="ser-batch")
            self._scoring.add(task)
            task.add_done_callback(self._scoring.discard)

    async def _score_batch(self, live: list[tuple]) -> None:
        """Score one batch on a model thread, hand each request its rows, and free the slot."""
        try:
            if len(live) == 1:
                stacked = live[0][0]
            elif isinstance(live[0][0], list):  # whole clips of their own lengths
                stacked = [clip for clips, _ in live for clip in clips]
            else:
                stacked = np.concatenate([w for w, _ in live])
            loop = asyncio.get_running_loop()
            try:
                scores = await loop.run_in_executor(self._model_threads, self.score, stacked)
            except Exception as err:  # noqa: BLE001 (each waiting request gets the error)
                log.exception("scoring a batch of %d windows failed", len(stacked))
                for _, future in live:
                    if not future.done():
                        future.set_exception(err)
                return
            self.stats.batches += 1
            self.stats.requests += len(live)
            self.stats.windows += len(stacked)
            offset = 0
            for windows, future in live:
                if not future.done():
                    future.set_result(scores[offset : offset + len(windows)])
                offset += len(windows)
        finally:
            self._free_slots.release()
