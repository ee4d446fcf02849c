"""The service's drift and quality gauges: each worker keeps a window of the digits it served and publishes,
in /metrics, how far that window is from the training data (digitops.monitoring; docs/operations.md).

    digitops_drift_psi{feature}       PSI of the window against the model's reference profile, per feature
    digitops_low_confidence_rate      share of the window's predictions below serve.low_confidence
    digitops_drift_window_digits      digits in the window (the figures above are noisy until it is full)

Each is one series per worker process (label `pid`): a worker's window holds only the digits it served.
The predicted-digit mix is the counter `digitops_predicted_digit_total` (service.py), and its drift the
feature `predicted_digit`.

Monitoring costs the request path an append: the digits and probabilities wait in a list, and every
`serve.drift_update_every` digits they are binned into the window together, and the gauges set, in a few
whole-array operations. It never fails a response: an error is logged once and monitoring stops.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import bentoml
import numpy as np

from digitops.config import ServeParams
from digitops.monitoring import PROFILE_FILE, DriftWindow, features

logger = logging.getLogger(__name__)

# "liveall": one series per live worker; a worker that exits drops its series.
PSI = bentoml.metrics.Gauge(
    name="digitops_drift_psi",
    documentation="Population-stability index of this worker's window of served digits against the "
    "training data, per feature",
    labelnames=["feature"],
    multiprocess_mode="liveall",
)
LOW_CONFIDENCE = bentoml.metrics.Gauge(
    name="digitops_low_confidence_rate",
    documentation="Share of this worker's window of predictions below serve.low_confidence",
    multiprocess_mode="liveall",
)
WINDOW_DIGITS = bentoml.metrics.Gauge(
    name="digitops_drift_window_digits",
    documentation="Digits in this worker's drift window (at most serve.drift_window)",
    multiprocess_mode="liveall",
)


class TrafficMonitor:
    """One worker's drift window, fed by `observe` with every prediction, published as gauges.

    Args:
        window: the worker's `DriftWindow`.
        update_every: digits to collect before binning them and updating the gauges.
    """

    def __init__(self, window: DriftWindow, update_every: int) -> None:
        self.window = window
        self.update_every = update_every
        self._digits: list[np.ndarray] = []  # (n, 28, 28) uint8 each, not yet in the window
        self._probabilities: list[np.ndarray] = []  # (n, 10) each
        self._pending = 0  # digits in the lists
        self.failed = False

    @classmethod
    def for_model(cls, model_dir: Path, serve: ServeParams) -> TrafficMonitor | None:
        """The monitor for the model in `model_dir`, or None (with one log line) when monitoring is off:
        `serve.monitoring` is false, or the model has no usable reference profile."""
        if not serve.monitoring:
            print("digitops: drift monitoring off (serve.monitoring: false)", flush=True)
            return None
        path = model_dir / PROFILE_FILE
        try:
            window = DriftWindow(json.loads(path.read_text()), serve.drift_window, serve.low_confidence)
        except FileNotFoundError:
            print(
                f"digitops: drift monitoring off: the model has no {PROFILE_FILE} (trained before the "
                "train stage made one: `dvc repro -f train` and promote a model that has it)",
                flush=True,
            )
            return None
        except (ValueError, KeyError, TypeError) as error:  # JSONDecodeError is a ValueError
            print(f"digitops: drift monitoring off: {path.name} is not usable: {error}", flush=True)
            return None
        return cls(window, serve.drift_update_every)

    def observe(self, digits: np.ndarray, probabilities: np.ndarray) -> None:
        """Note (B, 28, 28) uint8 digits and their (B, 10) probabilities; never raises."""
        if self.failed:
            return
        try:
            self._digits.append(digits)
            self._probabilities.append(probabilities)
            self._pending += len(digits)
            if self._pending >= self.update_every:
                self.update()
        except Exception:  # monitoring must never fail a response: log it once, then stay out of the way
            self.failed = True
            self._digits, self._probabilities = [], []
            logger.exception("digitops: drift monitoring failed and is off in this worker")

    def update(self) -> None:
        """Bin the digits noted since the last update into the window and set the gauges."""
        if self._pending:
            digits, probabilities = self._digits, self._probabilities
            self._digits, self._probabilities, self._pending = [], [], 0
            self.window.add(features(np.concatenate(digits), np.concatenate(probabilities)))
        for feature, value in self.window.psi().items():
            PSI.labels(feature=feature).set(value)
        LOW_CONFIDENCE.set(self.window.low_confidence_rate())
        WINDOW_DIGITS.set(self.window.count)
