"""The soak: single-image requests at concurrency 64 for 10 minutes, resident memory sampled every 10 s.

    python bench/soak.py                       # after make run; needs wrk (apt-get install -y wrk)
    python bench/soak.py --minutes 2 --out bench-results/soak

Pass: zero failed requests, and the workers' resident memory flat within 10% of its level after the
warm-up. Writes `<out>/soak.json` and `<out>/memory.png` (memory and throughput against time).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml
from serve import OUR_SERVICE, REPO, ServedVariant, Variant, mnist_test_digits, run_wrk, write_bodies

from digitops.infer.inputs import png_bytes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between memory samples")
    parser.add_argument("--model", default="digits:latest")
    parser.add_argument("--port", type=int, default=3901)
    parser.add_argument("--out", type=Path, default=Path("bench-results/soak"))
    args = parser.parse_args(argv)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="digitops-soak-"))
    bodies = write_bodies(scratch / "png", [png_bytes(d) for d in mnist_test_digits(params)[:200]])
    variant = Variant("digits /digit", OUR_SERVICE, "/digit", "png")
    samples: list[dict] = []
    with ServedVariant(variant, params, args, scratch) as service:
        run_wrk(service.url, "/digit", bodies, "image/png", args.concurrency, 30)  # warm-up
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(args.interval):
                samples.append(
                    {"seconds": round(time.monotonic() - started, 1), "rss_mb": sum(service.worker_rss_mb())}
                )

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        samples.append({"seconds": 0.0, "rss_mb": sum(service.worker_rss_mb())})
        load = run_wrk(service.url, "/digit", bodies, "image/png", args.concurrency, args.minutes * 60)
        stop.set()
        sampler.join()
    baseline = samples[0]["rss_mb"]
    failed = load["status_errors"] + load["socket_errors"]
    growth = max(s["rss_mb"] for s in samples) / baseline - 1
    figures = {
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "requests": load["requests"],
        "images_per_s": round(load["requests"] / load["seconds"], 1),
        "failed": failed,
        "status_errors": load["status_errors"],  # answers with a status >= 400
        "p50_ms": load["p50_ms"],
        "p99_ms": load["p99_ms"],
        "rss_mb_after_warmup": baseline,
        "rss_growth": round(growth, 4),
        "samples": samples,
        "pass": failed == 0 and growth < 0.10,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(figures, indent=2) + "\n")
    _plot(samples, args.out / "memory.png")
    print(json.dumps({key: value for key, value in figures.items() if key != "samples"}, indent=2))
    return 0 if figures["pass"] else 1


def _plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    axes.plot([s["seconds"] / 60 for s in samples], [s["rss_mb"] for s in samples], marker=".")
    axes.set_xlabel("minutes under load")
    axes.set_ylabel("workers' resident memory (MB)")
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
