"""The shadow challenger: the registry's `challenger` version reads a share of real traffic beside the
champion, off the response path, so that the two can be compared before anyone promotes it by hand.

Packaging: the package stage imports `models:/<name>@challenger` into the BentoML store as
`<champion name>-challenger`, labelled with the exact tag of the champion it was packaged with
(`paired_challenger` finds it by that label; an older challenger in the store, packaged with another
champion, is never picked up). The service declares it as a model of its own, so `bentoml build` ships it
in the bento; without one the bento is the champion alone.

Serving: with `serve.shadow_fraction` > 0, each worker loads the challenger (`start_shadow`). After the
champion's probabilities for a request are computed, `Shadow.offer` queues that request's digits for the
challenger with probability `shadow_fraction` and returns at once: a full queue drops the request (counted),
a failure is logged and counted, and neither ever reaches the response. One thread per worker runs the
challenger and records, per digit, whether it read the champion's digit and both models' confidences.

Prometheus (GET /metrics):
    digitops_shadow_agreement_total{result="agree"|"disagree"}   shadowed digits
    digitops_shadow_confidence{model="champion"|"challenger"}    histogram over the same shadowed digits
    digitops_shadow_errors_total{stage="load"|"predict"}         challenger failures
    digitops_shadow_dropped_total                                requests not shadowed: the queue was full
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import bentoml
import numpy as np
import prometheus_client

from digitops.infer.classifier import CPU, load_classifier

CHALLENGER_SUFFIX = "-challenger"  # the challenger's BentoML model name: the champion's name + this
CHAMPION_LABEL = "champion"  # the challenger's label naming the champion's BentoML tag it was packaged with
# The champion's histogram (digitops_prediction_confidence) uses the same buckets, so that they compare.
CONFIDENCE_BUCKETS = (0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.0)
# Requests waiting for the challenger (at most max_images_per_request digits each): bounds the memory the
# shadow holds when the challenger cannot keep up; beyond it requests are dropped, never waited for.
QUEUE_REQUESTS = 32
LOG_EVERY_S = 60.0  # a failing challenger logs once a minute at most; every failure is counted

logger = logging.getLogger(__name__)

# prometheus_client directly (bentoml.metrics is its deprecated alias): BentoML starts its workers with the
# multiprocess folder set, so these land in /metrics with the service's own.

AGREEMENT = prometheus_client.Counter(
    name="digitops_shadow_agreement",
    documentation="Shadowed digits: did the challenger read the champion's digit",
    labelnames=["result"],
)
SHADOW_CONFIDENCE = prometheus_client.Histogram(
    name="digitops_shadow_confidence",
    documentation="Probability of each model's digit, over the shadowed digits",
    labelnames=["model"],
    buckets=CONFIDENCE_BUCKETS,
)
ERRORS = prometheus_client.Counter(
    name="digitops_shadow_errors",
    documentation="Shadow challenger failures (responses are not affected)",
    labelnames=["stage"],
)
DROPPED = prometheus_client.Counter(
    name="digitops_shadow_dropped",
    documentation="Requests not shadowed because the challenger's queue was full",
)


def challenger_model_name(champion_model_name: str) -> str:
    """The BentoML model name the challenger is packaged under, beside the champion's."""
    return f"{champion_model_name}{CHALLENGER_SUFFIX}"


def paired_challenger(champion_tag: str) -> str | None:
    """The BentoML tag of the challenger packaged with the champion `champion_tag` names, or None.

    Read in the model store the service loads from: the global one, or the bento's own in a container.
    """
    from bentoml.exceptions import NotFound

    try:
        champion = bentoml.models.get(champion_tag)
        stored = bentoml.models.list(challenger_model_name(champion.tag.name))
    except NotFound:
        return None
    paired = [model for model in stored if model.info.labels.get(CHAMPION_LABEL) == str(champion.tag)]
    if not paired:
        return None
    return str(max(paired, key=lambda model: model.info.creation_time).tag)


class Shadow:
    """Runs `challenger` on a random `fraction` of the requests offered, in a thread of its own.

    Args:
        challenger: (B, 28, 28) uint8 digits -> (B, 10) probabilities.
        fraction: share of offered requests to shadow, in [0, 1].
        name: how log lines name the challenger.
        queue_requests: requests that may wait for the challenger; more are dropped.
        draw: uniform random numbers in [0, 1) (a seeded generator in tests).
    """

    def __init__(
        self,
        challenger: Callable[[np.ndarray], np.ndarray],
        fraction: float,
        name: str,
        queue_requests: int = QUEUE_REQUESTS,
        draw: Callable[[], float] = random.random,
    ) -> None:
        if not 0 <= fraction <= 1:
            raise ValueError(f"the shadow fraction is a share of requests in [0, 1], got {fraction}")
        self.fraction = fraction
        self.name = name
        self._challenger = challenger
        self._draw = draw
        self._queue: queue.Queue[tuple[np.ndarray, np.ndarray]] = queue.Queue(maxsize=queue_requests)
        self._quiet_until = 0.0  # time.monotonic() before which failures are counted but not logged
        self._thread = threading.Thread(target=self._run, name="digitops-shadow", daemon=True)
        self._thread.start()

    def offer(self, digits: np.ndarray, probabilities: np.ndarray) -> None:
        """Queue a request's digits and the champion's answers for the challenger, `fraction` of the time.

        Never blocks and never raises: a full queue drops the request, anything else is logged and counted.

        Args:
            digits: (B, 28, 28) uint8, the request's digits as the champion read them; not modified after.
            probabilities: (B, 10), the champion's answers for them.
        """
        try:
            if self._draw() < self.fraction:
                self._queue.put_nowait((digits, probabilities))
        except queue.Full:
            DROPPED.inc()
        except Exception as error:
            self._failed("offer", error)

    def _run(self) -> None:
        while True:
            digits, champion = self._queue.get()
            try:
                challenger = np.asarray(self._challenger(digits))  # (B, 10)
                if challenger.shape != champion.shape:
                    raise ValueError(f"it answered {challenger.shape} for {champion.shape} of the champion")
                _record(champion, challenger)
            except Exception as error:  # the thread must outlive any challenger failure
                self._failed("predict", error)

    def _failed(self, stage: str, error: Exception) -> None:
        ERRORS.labels(stage=stage).inc()
        now = time.monotonic()
        if now >= self._quiet_until:
            self._quiet_until = now + LOG_EVERY_S
            logger.warning(
                "shadow challenger %s failed to %s (%s: %s); responses are not affected. Failures are "
                "counted in digitops_shadow_errors_total, logged once a minute at most",
                self.name,
                stage,
                type(error).__name__,
                error,
            )


def _record(champion: np.ndarray, challenger: np.ndarray) -> None:
    """Agreement and both confidences for each shadowed digit ((B, 10) probabilities each)."""
    champion_digits, challenger_digits = champion.argmax(axis=1), challenger.argmax(axis=1)  # (B,)
    agree = int((champion_digits == challenger_digits).sum())
    AGREEMENT.labels(result="agree").inc(agree)
    AGREEMENT.labels(result="disagree").inc(len(champion_digits) - agree)
    rows = np.arange(len(champion_digits))
    for model, confidences in (
        ("champion", champion[rows, champion_digits]),
        ("challenger", challenger[rows, challenger_digits]),
    ):
        histogram = SHADOW_CONFIDENCE.labels(model=model)
        for confidence in confidences.tolist():
            histogram.observe(confidence)


def start_shadow(
    challenger_tag: str | None,
    fraction: float,
    providers: Sequence[str] = (CPU,),
    optimization: str = "all",
) -> Shadow | None:
    """Load the challenger that `challenger_tag` names from the model store and start shadowing with it.

    Returns None when there is nothing to shadow (no challenger or fraction 0), and when the challenger
    does not load: then a log line and `digitops_shadow_errors_total{stage="load"}` say so, and the service
    serves the champion as it would without one.
    """
    if challenger_tag is None or fraction == 0:
        return None
    try:
        stored = bentoml.models.get(challenger_tag)
        labels = stored.info.labels
        name = f"{labels.get('registered_model', stored.tag.name)}/{labels.get('mlflow_version', '?')}"
        # One intra-op thread: the challenger must not take the champion's cores.
        challenger = load_classifier(Path(stored.path), 1, providers=providers, optimization=optimization)
    except Exception as error:
        ERRORS.labels(stage="load").inc()
        logger.warning(
            "shadow challenger %s failed to load (%s: %s); serving the champion alone",
            challenger_tag,
            type(error).__name__,
            error,
        )
        return None
    print(f"digitops: shadowing {name} ({stored.tag}) on {fraction * 100:g}% of requests", flush=True)
    return Shadow(challenger, fraction, name)
