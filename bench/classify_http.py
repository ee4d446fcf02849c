"""Classify the test split through a running service and compare with the evaluate stage; time it.

    make serve &                                  # after make run
    python bench/classify_http.py                 # http://localhost:3000, the data of the last dvc repro
    python bench/classify_http.py --url http://host:3000 --source mnist --json out.json

Three figures, from the test digits of `data/prepared/test.npz` sent as PNG files:
- accuracy per source through HTTP (requests of --per-request images) beside metrics/eval.json's;
- single-image latency: --latency-requests sequential requests of one image (p50, p95, p99);
- throughput: --requests single-image requests from --concurrency client threads at once.
The load generator runs on the same machine as the server and takes CPU from it: the throughput is what
this client and the server reach together.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from digitops.config import load_params
from digitops.infer.inputs import png_bytes
from digitops.io import load_npz


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", default="http://localhost:3000")
    parser.add_argument("--source", action="append", help="only these sources (default: all in test.npz)")
    parser.add_argument(
        "--per-request", type=int, default=64, help="images per request for the accuracy pass"
    )
    parser.add_argument("--latency-requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--requests", type=int, default=3000, help="single-image requests for the throughput")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)

    paths = load_params().base.paths
    test = load_npz(paths.prepared / "test.npz")
    evaluation = json.loads((paths.metrics / "eval.json").read_text())
    keep = np.isin(test["sources"], args.source) if args.source else np.ones(len(test["labels"]), bool)
    images, labels, sources = test["images"][keep], test["labels"][keep], test["sources"][keep]
    pngs = [png_bytes(image) for image in images]
    figures: dict = {"url": args.url, "digits": len(pngs)}

    with httpx.Client(base_url=args.url, timeout=120) as client:
        started = time.perf_counter()
        predicted = []
        for start in range(0, len(pngs), args.per_request):
            predicted += [
                result["digit"] for result in _classify(client, pngs[start : start + args.per_request])
            ]
        figures["accuracy_pass_seconds"] = round(time.perf_counter() - started, 1)
        model_versions = {result["model_version"] for result in _classify(client, pngs[:1])}
        figures["model_version"] = model_versions.pop()
        predicted = np.array(predicted)
        figures["accuracy"] = {}
        for source in [*np.unique(sources).tolist(), "overall"]:
            mask = sources == source if source != "overall" else np.ones(len(labels), bool)
            http = float(np.mean(predicted[mask] == labels[mask]))
            figures["accuracy"][source] = {
                "http": round(http, 5),
                "evaluate_stage": evaluation.get(source, {}).get("accuracy") if not args.source else None,
            }
        latencies = []
        for index in range(args.latency_requests):
            started = time.perf_counter()
            _classify(client, [pngs[index % len(pngs)]])
            latencies.append(time.perf_counter() - started)
        figures["single_image_latency_ms"] = _percentiles(latencies)

    figures["concurrent"] = _throughput(args.url, pngs, args.concurrency, args.requests)
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


def _classify(client: httpx.Client, pngs: list[bytes]) -> list[dict]:
    files = [("images", (f"{index}.png", data, "image/png")) for index, data in enumerate(pngs)]
    response = client.post("/classify", files=files)
    response.raise_for_status()
    return response.json()


def _percentiles(seconds: list[float]) -> dict[str, float]:
    values = np.array(seconds) * 1000
    return {
        name: round(float(np.percentile(values, q)), 1) for name, q in (("p50", 50), ("p95", 95), ("p99", 99))
    }


def _throughput(url: str, pngs: list[bytes], concurrency: int, requests: int) -> dict:
    """`requests` single-image requests, `concurrency` in flight at a time."""
    client = httpx.Client(base_url=url, timeout=120, limits=httpx.Limits(max_connections=concurrency))
    latencies: list[float] = []
    statuses: list[int] = []

    def one(index: int) -> None:
        started = time.perf_counter()
        files = [("images", ("digit.png", pngs[index % len(pngs)], "image/png"))]
        try:
            status = client.post("/classify", files=files).status_code
        except httpx.HTTPError:
            status = 0
        latencies.append(time.perf_counter() - started)
        statuses.append(status)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, range(concurrency)))  # warm-up: connections opened, threads started
        latencies.clear()
        statuses.clear()
        started = time.perf_counter()
        list(pool.map(one, range(requests)))
        seconds = time.perf_counter() - started
    client.close()
    return {
        "concurrency": concurrency,
        "requests": requests,
        "images_per_second": round(requests / seconds, 1),
        "latency_ms": _percentiles(latencies),
        "errors": sum(status != 200 for status in statuses),
        "status_503": statuses.count(503),
    }


if __name__ == "__main__":
    sys.exit(main())
