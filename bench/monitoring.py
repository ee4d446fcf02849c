"""What the drift gauges add to a request, in one process, beside what the request already costs.

    python bench/monitoring.py           # after make run (the packaged champion, with its reference profile)

The service's cost per request at 64 clients is mostly the HTTP path; the monitor adds one append per
request and, every `serve.drift_update_every` digits, a few whole-array operations. A load test cannot
resolve a difference that small on a shared machine (docs/benchmarks.md), so this measures the monitor's
work per single-digit request directly, alternated with the model call it sits beside, and prints both and
their ratio; the service's own CPU time per request (from the load test's throughput) puts it in scale.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import bentoml

from digitops.config import load_params
from digitops.infer.classifier import MODEL_FILE, load_classifier
from digitops.io import load_npz
from digitops.monitoring import PROFILE_FILE, DriftWindow
from digitops.serve.drift import TrafficMonitor


def per_call_us(function, calls: int) -> float:
    """Microseconds per call of `function(i)` over `calls` calls."""
    start = time.perf_counter()
    for index in range(calls):
        function(index)
    return (time.perf_counter() - start) / calls * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="digits:latest", help="a BentoML model with a reference profile")
    parser.add_argument("--requests", type=int, default=20_000, help="single-digit requests per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=3, help="digits per model call (the served mean batch)")
    args = parser.parse_args()

    serve = load_params().serve
    stored = Path(bentoml.models.get(args.model).path)
    profile = json.loads((stored / PROFILE_FILE).read_text())
    classifier = load_classifier(stored / MODEL_FILE, threads=1)
    digits = load_npz("data/prepared/test.npz")["images"][: args.requests]  # (N, 28, 28) uint8
    probabilities = classifier(digits)  # (N, 10)
    monitor = TrafficMonitor(
        DriftWindow(profile, serve.drift_window, serve.low_confidence), serve.drift_update_every
    )

    def observe(index: int) -> None:
        monitor.observe(digits[index : index + 1], probabilities[index : index + 1])

    def predict(index: int) -> None:
        start = index * args.batch % (len(digits) - args.batch)
        classifier(digits[start : start + args.batch])

    monitor_us, model_us = [], []
    for _ in range(args.rounds):  # alternated, so that a busy moment of the machine hits both
        monitor_us.append(per_call_us(observe, len(digits)))
        model_us.append(per_call_us(predict, len(digits) // args.batch) / args.batch)
    monitor_best, model_best = min(monitor_us), min(model_us)
    print(
        f"monitor per single-digit request: {monitor_best:.1f} us (best of {args.rounds}; all: "
        f"{', '.join(f'{value:.1f}' for value in monitor_us)})"
    )
    print(f"model per digit at batch {args.batch}: {model_best:.1f} us (best of {args.rounds})")
    print(f"monitor / model: {monitor_best / model_best:.1%}")


if __name__ == "__main__":
    main()
