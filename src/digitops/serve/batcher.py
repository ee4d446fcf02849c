"""Adaptive batching for the service: concurrent requests' digits go through the model together.

Greedy (continuous) batching: while the model works on one batch, the digits of new requests queue up; as
soon as it is free, everything that waits (up to `max_batch_size` digits) becomes the next batch. Under
light load a request runs alone at once (no waiting for company); under heavy load batches grow by
themselves to what arrives during one model call. The model runs in one thread beside the event loop, so
requests keep being parsed while it computes (ONNX Runtime releases the GIL).

Why not BentoML's own `batchable=True` dispatcher: its polling loop on the event loop, its single batch in
flight and its latency model cost more than the model itself on a machine with few cores, and they made
the slowest requests under many concurrent clients far slower than this batcher does (measured side by
side: docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


class OverloadedError(RuntimeError):
    """A request waited longer than `max_wait_s` for the model: the service answers 503 (back-pressure)."""


@dataclass
class _Job:
    digits: np.ndarray  # (n, 28, 28) uint8
    future: asyncio.Future[np.ndarray]
    queued_at: float  # time.monotonic()


class Batcher:
    """`await batcher(digits)` -> their probabilities, computed in batches shared with concurrent callers.

    Args:
        predict: (B, 28, 28) uint8 -> (B, 10) float32; called in one worker thread, one batch at a time.
        max_batch_size: most digits per model call (a request with more is split across calls).
        max_wait_s: a request whose digits waited longer than this for the model is refused with
            OverloadedError instead of being computed (load shedding: under overload, fail fast).
        on_batch: called with each batch's size (for metrics).
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
    ) -> None:
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._queue: collections.deque[_Job] = collections.deque()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="digitops-model")
        self._wake: asyncio.Event | None = None
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, digits: np.ndarray) -> np.ndarray:
        """(n, 28, 28) uint8 -> (n, 10) float32, in the order given."""
        loop = asyncio.get_running_loop()
        if self._runner is None:
            self._wake = asyncio.Event()
            self._runner = loop.create_task(self._run())
        futures = []
        now = time.monotonic()
        for start in range(0, len(digits), self.max_batch_size):
            job = _Job(digits[start : start + self.max_batch_size], loop.create_future(), now)
            self._queue.append(job)
            futures.append(job.future)
        self._wake.set()
        parts = [await future for future in futures]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                self._shed_expired()
                if not self._queue:
                    break
                jobs = self._next_jobs()
                batch = jobs[0].digits if len(jobs) == 1 else np.concatenate([job.digits for job in jobs])
                self._on_batch(len(batch))
                try:
                    probabilities = await loop.run_in_executor(self._thread, self._predict, batch)
                except Exception as error:  # the model failed: every caller in this batch hears of it
                    for job in jobs:
                        if not job.future.done():
                            job.future.set_exception(error)
                    continue
                start = 0
                for job in jobs:
                    if not job.future.done():  # a caller that gave up (client gone) is skipped
                        job.future.set_result(probabilities[start : start + len(job.digits)])
                    start += len(job.digits)

    def _next_jobs(self) -> list[_Job]:
        """Whole jobs from the front of the queue, at most `max_batch_size` digits (at least one job)."""
        jobs = [self._queue.popleft()]
        size = len(jobs[0].digits)
        while self._queue and size + len(self._queue[0].digits) <= self.max_batch_size:
            jobs.append(self._queue.popleft())
            size += len(jobs[-1].digits)
        return jobs

    def _shed_expired(self) -> None:
        """Refuse the jobs at the front of the queue that have waited longer than `max_wait_s`."""
        deadline = time.monotonic() - self.max_wait_s
        while self._queue and self._queue[0].queued_at < deadline:
            job = self._queue.popleft()
            if not job.future.done():
                job.future.set_exception(
                    OverloadedError(f"the service is overloaded: no model time within {self.max_wait_s:g} s")
                )
