"""The serving benchmark: the packaged service under single-image load, beside its ceiling and its baselines.

    make run                      # once: trains, promotes and packages the champion
    apt-get install -y wrk        # the load generator (a C program: its own cost stays out of the figures)
    python bench/serve.py         # about 10 minutes; --quick: concurrency 1 and 64, 5-s windows

In one run, on one machine, one service at a time on 127.0.0.1:
1. **Sweeps** of single-image requests (real PNGs of MNIST test digits) at concurrency 1, 4, 16, 64, 128,
   each a fixed window after a warm-up, with wrk; per point: throughput, p50/p95/p99 latency, errors,
   503s, and the mean batch size from the service's own /metrics. The variants:
   - `digits /digit`: our service, the image file as the request body (the lean path);
   - `digits /classify`: our service, a multipart upload (BentoML's API path);
   - `no-op /digit`, `no-op /classify`: the same paths with no decoding and no model (the ceiling);
   - `digits /digit, batching off`: our service with `serve.max_batch_size: 1`;
   - `digits /digit, monitoring off`, `digits /classify, monitoring off`: our service without its drift
     gauges (`serve.monitoring: false`), in an A/B only (`--variants`, below);
   - `digits /digit, tracing spans built`: our service with an exporter configured that keeps nothing, so
     that BentoML builds a span per request as it does by default;
   - `BentoML defaults /classify`: a `batchable=True` endpoint as BentoML's defaults have it, same model;
   - `TensorFlow digits /digit`, `TensorFlow digits /classify`: our service as it served before ONNX, the
     same code with the `.keras` file under TensorFlow (bench/serving/keras_service.py; `--keras`, default
     models/candidate.keras, which is the champion after `make run` promoted it).
2. **Many digits per request**: 256 PNGs in one multipart `/classify`, and 256 digits as one uint8 array
   to `/digits`, at concurrency 1 and 4.
3. **The raw model** in a fresh process at batch 1 and 256, with the runtime's default threads and with one
   thread: the served ONNX model under ONNX Runtime, and the `.keras` file under TensorFlow.
   (bench/onnx_runtime.py compares ONNX Runtime's settings, and int8, in more detail.)
4. **Cold start**: from `bentoml serve` to the first correct answer, three starts each with this
   virtualenv and, with `--serving-venv DIR`, with a virtualenv of the bento's own lock (what the
   container runs: no MLflow, DVC or plotting libraries, which Keras imports at start-up when present):

       python3.11 -m venv /tmp/serving && /tmp/serving/bin/pip install -r requirements-bootstrap.lock \
           && /tmp/serving/bin/uv pip install --python /tmp/serving/bin/python -r requirements-serve.lock \
           && /tmp/serving/bin/uv pip install --python /tmp/serving/bin/python --no-deps -e .

   and resident memory per worker.

An A/B: `--variants NAME ...` runs only those sweeps, alternated `--repeat` times, and prints each one's
images/s as a share of the first one's. The cost of the drift gauges at 64 clients (docs/operations.md):

    python bench/serve.py --variants "digits /digit, monitoring off" "digits /digit" \
        "digits /classify, monitoring off" "digits /classify" --concurrency 64 --repeat 3

Writes `<out>/serve.json`, `<out>/throughput.png` (throughput against concurrency),
`<out>/p99_vs_throughput.png` and `<out>/summary.md`, and prints the summary with the targets of
docs/benchmarks.md checked.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from digitops.infer.inputs import png_bytes  # noqa: E402
from digitops.io import load_npz  # noqa: E402

LUA = REPO / "bench/serving/post_bodies.lua"
OUR_SERVICE = "digitops.serve.service:DigitClassifier"
KERAS_SERVICE = "bench.serving.keras_service:DigitClassifier"
REFERENCE = "bench.serving.reference_services"
BOUNDARY = "digitopsbenchboundary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
# An exporter that keeps nothing (sample rate 0, no sampled callers): BentoML builds every span, as it
# does by default, while our service (digitops.serve.tracing) skips them when no exporter is configured.
SPANS_BUILT = {"tracing": {"exporter_type": "in_memory", "sample_rate": 0.0}}
# Variants only an A/B (--variants) runs: the full run's "digits" variants are already the other side.
A_B_ONLY = {"digits /digit, monitoring off", "digits /classify, monitoring off"}
NO_MONITORING = {"monitoring": False}


@dataclass(frozen=True)
class Variant:
    name: str
    target: str  # what `bentoml serve` serves
    route: str
    bodies: str  # "png" (one image file per body) or "multipart" (one image per multipart upload)
    params: dict = field(default_factory=dict)  # serve.* overrides for our service
    env: dict = field(default_factory=dict)  # extra environment for `bentoml serve`
    batch_metric: str = "digitops_batch_size"  # the histogram of model-call sizes in /metrics

    @property
    def content_type(self) -> str:
        return MULTIPART if self.bodies == "multipart" else "image/png"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=Path("bench-results/serve"))
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64, 128])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured window per point")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured load before each point")
    parser.add_argument("--quick", action="store_true", help="concurrency 1 and 64, 5-s windows")
    parser.add_argument("--model", default=os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest"))
    parser.add_argument("--keras", type=Path, default=REPO / "models/candidate.keras", help="for TensorFlow")
    parser.add_argument("--port", type=int, default=3900)
    parser.add_argument("--cold-starts", type=int, default=3, help="starts timed per virtualenv")
    parser.add_argument(
        "--serving-venv", type=Path, help="also time cold starts with this venv (of requirements-serve.lock)"
    )
    parser.add_argument(
        "--variants",
        nargs="+",
        metavar="NAME",
        help="only these sweeps, by name (e.g. 'digits /digit'), for an A/B: no cold start, many-per-request "
        "or raw model, and a table instead of the summary; --repeat alternates them",
    )
    parser.add_argument("--repeat", type=int, default=1, help="with --variants: run them this many times")
    args = parser.parse_args(argv)
    if args.quick:
        args.concurrency, args.seconds, args.warmup = [1, 64], 5.0, 2.0
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (Debian: apt-get install -y wrk)")
    os.chdir(REPO)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    scratch = Path(tempfile.mkdtemp(prefix="digitops-bench-"))
    digits = mnist_test_digits(params)
    bodies = {
        "png": write_bodies(scratch / "png", [png_bytes(image) for image in digits[:200]]),
        "multipart": write_bodies(scratch / "multipart", [_multipart([png_bytes(d)]) for d in digits[:200]]),
        "multipart256": write_bodies(
            scratch / "multipart256",
            [
                _multipart([png_bytes(d) for d in digits[start : start + 256]])
                for start in range(0, 2560, 256)
            ],
        ),
        "array256": write_bodies(
            scratch / "array256", [digits[start : start + 256].tobytes() for start in range(0, 2560, 256)]
        ),
    }
    figures: dict = {
        "machine": _machine(),
        "model": args.model,
        "serve_params": params["serve"],
        "sweeps": {},
    }

    keras_env = {"DIGITOPS_BENCH_KERAS_MODEL": str(args.keras.resolve()), "PYTHONPATH": str(REPO)}
    variants = [
        Variant("digits /digit", OUR_SERVICE, "/digit", "png"),
        Variant("no-op /digit", f"{REFERENCE}:NoOp", "/digit", "png"),
        Variant("digits /classify", OUR_SERVICE, "/classify", "multipart"),
        Variant(
            "no-op /classify",
            f"{REFERENCE}:NoOp",
            "/classify",
            "multipart",
            batch_metric="bentoml_service_adaptive_batch_size",
        ),
        Variant("digits /digit, batching off", OUR_SERVICE, "/digit", "png", params={"max_batch_size": 1}),
        # The drift gauges' cost (docs/operations.md): an A/B with --variants, not part of the full run.
        Variant("digits /digit, monitoring off", OUR_SERVICE, "/digit", "png", params=NO_MONITORING),
        Variant(
            "digits /classify, monitoring off", OUR_SERVICE, "/classify", "multipart", params=NO_MONITORING
        ),
        Variant(
            "digits /digit, tracing spans built",
            OUR_SERVICE,
            "/digit",
            "png",
            env={"BENTOML_CONFIG_OVERRIDES": json.dumps(SPANS_BUILT)},
        ),
        Variant(
            "BentoML defaults /classify",
            f"{REFERENCE}:BentoDefaults",
            "/classify",
            "multipart",
            batch_metric="bentoml_service_adaptive_batch_size",
        ),
        Variant("TensorFlow digits /digit", KERAS_SERVICE, "/digit", "png", env=keras_env),
        Variant("TensorFlow digits /classify", KERAS_SERVICE, "/classify", "multipart", env=keras_env),
    ]
    if args.variants:
        return _compare(args, params, scratch, bodies, variants)
    for variant in variants:
        if variant.name in A_B_ONLY:
            continue
        with ServedVariant(variant, params, args, scratch) as service:
            if variant.name == "digits /digit":
                figures["many_per_request"] = {
                    "256 PNGs, multipart /classify": _sweep(
                        service, "/classify", bodies["multipart256"], MULTIPART, [1, 4], args, images=256
                    ),
                    "256 digits, uint8 array /digits": _sweep(
                        service,
                        "/digits",
                        bodies["array256"],
                        "application/octet-stream",
                        [1, 4],
                        args,
                        images=256,
                    ),
                }
            figures["sweeps"][variant.name] = _sweep_variant(service, bodies, args)
            figures.setdefault("memory_mb_per_worker", {})[variant.name] = service.worker_rss_mb()
            print(f"{variant.name}: done", flush=True)
    figures["raw_model"] = _raw_model(args.model, args.keras, digits)
    figures["cold_start_s"] = _cold_starts(variants[0], params, args, scratch)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(figures, indent=2) + "\n")
    _plots(figures, args.out)
    summary = _summary(figures)
    (args.out / "summary.md").write_text(summary)
    print(summary)
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _compare(args, params: dict, scratch: Path, bodies: dict, variants: list[Variant]) -> int:
    """The sweeps of the named variants only, alternated `--repeat` times: an A/B in one sitting."""
    by_name = {variant.name: variant for variant in variants}
    unknown = sorted(set(args.variants) - set(by_name))
    if unknown:
        sys.exit(f"unknown variants {unknown}; the variants are {sorted(by_name)}")
    sweeps: dict[str, list[dict]] = {}
    for round_ in range(1, args.repeat + 1):
        for name in args.variants:
            with ServedVariant(by_name[name], params, args, scratch) as service:
                sweeps[f"{name} (round {round_})"] = _sweep_variant(service, bodies, args)
    args.out.mkdir(parents=True, exist_ok=True)
    ratios = _ratios(sweeps, args.variants, args.repeat)
    figures = {"machine": _machine(), "sweeps": sweeps, "ratios_to_first": ratios}
    (args.out / "compare.json").write_text(json.dumps(figures, indent=2) + "\n")
    print("\n".join(_table(SWEEP_HEADER, sweeps, SWEEP_KEYS)))
    print(f"\nimages/s as a share of {args.variants[0]!r}'s, mean over {args.repeat} round(s):")
    for name, by_concurrency in ratios.items():
        shares = ", ".join(f"c={c}: {ratio:.1%}" for c, ratio in by_concurrency.items())
        print(f"- {name}: {shares}")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _ratios(sweeps: dict[str, list[dict]], names: list[str], rounds: int) -> dict[str, dict[int, float]]:
    """Each variant's images/s (mean over the rounds) as a share of the first variant's, per concurrency."""

    def mean_rate(name: str) -> dict[int, float]:
        points = [p for r in range(1, rounds + 1) for p in sweeps[f"{name} (round {r})"]]
        return {
            c: float(np.mean([p["images_per_s"] for p in points if p["concurrency"] == c]))
            for c in sorted({p["concurrency"] for p in points})
        }

    first = mean_rate(names[0])
    return {
        name: {c: rate / first[c] if first[c] else float("nan") for c, rate in mean_rate(name).items()}
        for name in names[1:]
    }


def _cold_starts(variant: Variant, params: dict, args, scratch: Path) -> dict[str, list[float]]:
    """Seconds from `bentoml serve` to the first answer, `--cold-starts` times per virtualenv."""
    venvs = {"this virtualenv": Path(sys.executable).parent}
    if args.serving_venv:
        venvs["the bento's lock (--serving-venv)"] = args.serving_venv.resolve() / "bin"
    starts: dict[str, list[float]] = {}
    for name, bin_dir in venvs.items():
        for _ in range(args.cold_starts):
            with ServedVariant(variant, params, args, scratch, bentoml_cli=bin_dir / "bentoml") as service:
                starts.setdefault(name, []).append(service.ready_s)
    return starts


class ServedVariant:
    """`bentoml serve` of a variant on 127.0.0.1 (own process group); `ready_s`: start to first answer."""

    def __init__(
        self,
        variant: Variant,
        params: dict,
        args: argparse.Namespace,
        scratch: Path,
        bentoml_cli: Path | None = None,  # default: this virtualenv's
    ) -> None:
        self.variant, self.port = variant, args.port
        self.bentoml_cli = bentoml_cli or Path(sys.executable).with_name("bentoml")
        self.url = f"http://127.0.0.1:{args.port}"
        env = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "true",
            "TF_CPP_MIN_LOG_LEVEL": "2",
            "DIGITOPS_BENTO_MODEL": args.model,
        }
        env["DIGITOPS_BENCH_WORKERS"] = str(params["serve"]["workers"])  # the no-op: as many workers as ours
        env.update(variant.env)
        if variant.params:
            overridden = {**params, "serve": {**params["serve"], **variant.params}}
            path = scratch / f"params-{abs(hash(variant.name))}.yaml"
            path.write_text(yaml.safe_dump(overridden))
            env["DIGITOPS_PARAMS"] = str(path)
        self.log = scratch / f"serve-{abs(hash(variant.name))}.log"
        self._command = ["serve", variant.target, "--host", "127.0.0.1", "--port", str(args.port)]
        self._env = env

    def __enter__(self) -> ServedVariant:
        started = time.perf_counter()
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [str(self.bentoml_cli), *self._command],
                env=self._env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        probe, content_type = _png_probe(), self.variant.content_type
        if self.variant.bodies == "multipart":
            probe, route = _multipart([probe]), "/classify"
        else:
            route = "/digit"
        while True:
            if self.process.poll() is not None:
                sys.exit(f"{self.variant.name}: bentoml serve exited:\n{self.log.read_text()[-3000:]}")
            try:
                response = httpx.post(
                    f"{self.url}{route}", content=probe, timeout=5, headers={"Content-Type": content_type}
                )
                if response.status_code == 200 and self._is_right(response.json()):
                    break
            except httpx.HTTPError:
                pass
            if time.perf_counter() - started > 180:
                sys.exit(f"{self.variant.name}: not answering after 180 s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        self.ready_s = round(time.perf_counter() - started, 2)
        monitored = self.variant.target == OUR_SERVICE and self.variant.params.get("monitoring", True)
        if monitored and "drift monitoring off" in self.log.read_text():  # an A/B of nothing otherwise
            sys.exit(f"{self.variant.name}: {self.log.read_text()[-3000:]}\nmonitoring is off: see above")
        while httpx.get(f"{self.url}/readyz", timeout=5).status_code != 200:  # every worker up
            time.sleep(0.2)
        return self

    def _is_right(self, answer: dict | list) -> bool:
        """The probe is a '1': our service must say so (the reference services answer anything)."""
        prediction = answer[0] if isinstance(answer, list) else answer
        return self.variant.target != OUR_SERVICE or prediction["digit"] == 1

    def worker_rss_mb(self) -> list[float]:
        workers = [
            p
            for p in psutil.Process(self.process.pid).children(recursive=True)
            if "worker" in " ".join(p.cmdline())
        ]
        return [round(p.memory_info().rss / 2**20) for p in workers]

    def counters(self) -> tuple[float, float, float]:
        """From one read of /metrics, over all workers: the sum and count of the variant's batch-size
        histogram, and the 503 answers counted by BentoML's own request metric (every route)."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        total = count = 0.0
        for match in re.finditer(
            rf"^{self.variant.batch_metric}_(sum|count)\{{?[^\n]*?\}}? ([0-9.e+]+)$", text, re.M
        ):
            if match.group(1) == "sum":
                total += float(match.group(2))
            else:
                count += float(match.group(2))
        pattern = r'^bentoml_service_request_total\{[^}]*http_response_code="503"[^}]*\} ([0-9.e+]+)$'
        shed = sum(float(match.group(1)) for match in re.finditer(pattern, text, re.M))
        return total, count, shed

    def __exit__(self, *exc: object) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
        time.sleep(1)


def _sweep_variant(service: ServedVariant, bodies: dict[str, Path], args: argparse.Namespace) -> list[dict]:
    """The variant's own sweep: its route and bodies at every `--concurrency`."""
    variant = service.variant
    return _sweep(
        service, variant.route, bodies[variant.bodies], variant.content_type, args.concurrency, args
    )


def _sweep(
    service: ServedVariant,
    route: str,
    body_dir: Path,
    content_type: str,
    concurrencies: list[int],
    args: argparse.Namespace,
    images: int = 1,
) -> list[dict]:
    points = []
    for concurrency in concurrencies:
        run_wrk(service.url, route, body_dir, content_type, concurrency, args.warmup)
        sum_before, calls_before, shed_before = service.counters()
        point = run_wrk(service.url, route, body_dir, content_type, concurrency, args.seconds)
        sum_after, calls_after, shed_after = service.counters()
        ok = point["requests"] - point["status_errors"]
        calls = calls_after - calls_before
        points.append(
            {
                "concurrency": concurrency,
                "requests_per_s": round(point["requests"] / point["seconds"], 1),
                "images_per_s": round(ok * images / point["seconds"], 1),
                "p50_ms": round(point["p50_ms"], 2),
                "p95_ms": round(point["p95_ms"], 2),
                "p99_ms": round(point["p99_ms"], 2),
                "max_ms": round(point["max_ms"], 2),
                "errors": point["status_errors"] + point["socket_errors"],
                "status_503": round(shed_after - shed_before),  # of the errors: load shed
                "mean_batch": round((sum_after - sum_before) / calls, 1) if calls else None,
            }
        )
        print(f"  {service.variant.name} {route} c={concurrency}: {points[-1]}", flush=True)
    return points


def run_wrk(
    url: str, route: str, body_dir: Path, content_type: str, concurrency: int, seconds: float
) -> dict:
    count = len(list(body_dir.glob("*.body")))
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "30s",
            "-s",
            str(LUA),
            url,
            "--",
            str(body_dir),
            str(count),
            route,
            content_type,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _raw_model(model_tag: str, keras_file: Path, digits: np.ndarray) -> dict:
    """images/s of the model called directly, batch 1 and 256, default threads and one thread: the served
    ONNX model under ONNX Runtime, and the `.keras` file under TensorFlow, each in a fresh process."""
    loaders = {
        "onnx": "from digitops.infer.classifier import load_classifier\n"
        f"model = load_classifier(bentoml.models.get({model_tag!r}).path, {{threads}})\n",
        "tensorflow": "from bench.serving.keras_classifier import KerasClassifier\n"
        f"model = KerasClassifier({str(keras_file)!r}, {{threads}})\n",
    }
    figures = {}
    for (runtime, loader), threads in itertools.product(loaders.items(), (None, 1)):
        code = (
            "import json, sys, time, numpy as np, bentoml\n"
            + loader.format(threads=threads)
            + "digits = np.load(sys.argv[1])\nout = {}\n"
            "for batch in (1, 256):\n"
            "    x = digits[:batch]; model(x); model(x)\n"
            "    calls = max(20, 3000 // batch); started = time.perf_counter()\n"
            "    for _ in range(calls): model(x)\n"
            "    out[f'batch_{batch}'] = round(batch * calls / (time.perf_counter() - started), 1)\n"
            "print(json.dumps(out))\n"
        )
        with tempfile.NamedTemporaryFile(suffix=".npy") as file:
            np.save(file.name, digits[:256])
            result = subprocess.run(
                [sys.executable, "-c", code, file.name],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)},
            )
        figures.setdefault(runtime, {})["default_threads" if threads is None else "one_thread"] = json.loads(
            result.stdout.splitlines()[-1]
        )
    return figures


def mnist_test_digits(params: dict) -> np.ndarray:
    """MNIST test digits from the last `dvc repro` (data/prepared/test.npz), (N, 28, 28) uint8."""
    test = load_npz(REPO / params["base"]["paths"]["prepared"] / "test.npz")
    return test["images"][test["sources"] == "mnist"]


def _multipart(files: list[bytes]) -> bytes:
    parts = [
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="images"; filename="{i}.png"\r\n'
        f"Content-Type: image/png\r\n\r\n".encode()
        + data
        + b"\r\n"
        for i, data in enumerate(files)
    ]
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def write_bodies(folder: Path, bodies: list[bytes]) -> Path:
    folder.mkdir(parents=True)
    for index, body in enumerate(bodies):
        (folder / f"{index}.body").write_bytes(body)
    return folder


def _png_probe() -> bytes:
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 13:16] = 255  # a '1'
    return png_bytes(image)


def _machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": sys.version.split()[0],
    }


def _point(points: list[dict], concurrency: int) -> dict | None:
    return next((point for point in points if point["concurrency"] == concurrency), None)


SWEEP_HEADER = [
    *["variant", "concurrency", "images/s"],
    *["p50 ms", "p95 ms", "p99 ms", "errors", "503", "mean batch"],
]
SWEEP_KEYS = ["p50_ms", "p95_ms", "p99_ms", "errors", "status_503", "mean_batch"]


def _table(header: list[str], groups: dict[str, list[dict]], keys: list[str]) -> list[str]:
    """A Markdown table: one row per point, its name, concurrency, images/s, then `keys`."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, points in groups.items():
        for p in points:
            cells = [name, str(p["concurrency"]), f"{p['images_per_s']:,.0f}"]
            cells += [f"{p[key]:.1f}" if isinstance(p[key], float) else str(p[key]) for key in keys]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _summary(figures: dict) -> str:
    lines = _table(SWEEP_HEADER, figures["sweeps"], SWEEP_KEYS)
    many = _table(
        ["many digits per request", "concurrency", "images/s", "p50 ms", "p99 ms", "errors"],
        figures["many_per_request"],
        ["p50_ms", "p99_ms", "errors"],
    )
    lines += ["", *many]
    raw = figures["raw_model"]
    lines += [
        "",
        *(
            f"Raw model, {runtime} (images/s): default threads {rates['default_threads']}, "
            f"one thread {rates['one_thread']}."
            for runtime, rates in raw.items()
        ),
        "Cold start (bentoml serve to the first correct answer), seconds: "
        + "; ".join(f"{venv}: {starts}" for venv, starts in figures["cold_start_s"].items())
        + ". "
        f"Resident memory per worker (MB): {figures['memory_mb_per_worker']}.",
        "",
        "Targets:",
    ]
    sweeps = figures["sweeps"]
    ours, ceiling = _point(sweeps["digits /digit"], 64), _point(sweeps["no-op /digit"], 64)
    ours_mp, ceiling_mp = _point(sweeps["digits /classify"], 64), _point(sweeps["no-op /classify"], 64)
    defaults = _point(sweeps["BentoML defaults /classify"], 64)
    best_raw = max(raw["onnx"]["default_threads"]["batch_256"], raw["onnx"]["one_thread"]["batch_256"])
    tensorflow_mp = _point(sweeps.get("TensorFlow digits /classify", []), 64)
    best_many = max(p["images_per_s"] for points in figures["many_per_request"].values() for p in points)
    one = _point(sweeps["digits /digit"], 1)
    checks = []
    if ours and ceiling and defaults:
        checks += [
            (
                "c=64 /digit: zero errors and 503s",
                ours["errors"] == 0 and ours["status_503"] == 0,
                f"{ours['errors']} errors, {ours['status_503']} 503s",
            ),
            ("c=64 /digit: p99 <= 100 ms", ours["p99_ms"] <= 100, f"{ours['p99_ms']:.1f} ms"),
            (
                "c=64 /digit: >= 80% of the no-op /digit",
                ours["images_per_s"] >= 0.8 * ceiling["images_per_s"],
                f"{ours['images_per_s'] / ceiling['images_per_s']:.0%}",
            ),
            (
                "c=64 /digit: >= 4x BentoML defaults",
                ours["images_per_s"] >= 4 * defaults["images_per_s"],
                f"{ours['images_per_s'] / max(defaults['images_per_s'], 1e-9):.1f}x",
            ),
        ]
    if ours_mp and ceiling_mp and defaults:
        checks += [
            (
                "c=64 /classify: >= 80% of the no-op /classify",
                ours_mp["images_per_s"] >= 0.8 * ceiling_mp["images_per_s"],
                f"{ours_mp['images_per_s'] / ceiling_mp['images_per_s']:.0%}",
            ),
            (
                "c=64 /classify: >= 3.5x BentoML defaults",
                ours_mp["images_per_s"] >= 3.5 * defaults["images_per_s"],
                f"{ours_mp['images_per_s'] / max(defaults['images_per_s'], 1e-9):.1f}x",
            ),
            (
                "c=64 /classify: p99 <= 50 ms, no errors",
                ours_mp["p99_ms"] <= 50 and ours_mp["errors"] == 0,
                f"{ours_mp['p99_ms']:.1f} ms, {ours_mp['errors']} errors",
            ),
        ]
    if ours_mp and tensorflow_mp:
        checks.append(
            (
                "c=64 /classify: ONNX Runtime vs TensorFlow (no target)",
                True,
                f"{ours_mp['images_per_s'] / max(tensorflow_mp['images_per_s'], 1e-9):.2f}x",
            )
        )
    checks.append(
        (
            "many per request: >= 50% of the raw model at batch 256",
            best_many >= 0.5 * best_raw,
            f"{best_many:,.0f} / {best_raw:,.0f} = {best_many / best_raw:.0%}",
        )
    )
    if one:
        checks.append(("c=1 /digit: p50 <= 10 ms", one["p50_ms"] <= 10, f"{one['p50_ms']:.1f} ms"))
    venv, starts = list(figures["cold_start_s"].items())[-1]  # the bento's lock when measured
    cold = float(np.median(starts))
    checks.append(("cold start <= 8 s", cold <= 8, f"median {cold:.1f} s with {venv}"))
    lines += [f"- {'met' if ok else 'NOT met'}: {name} ({value})" for name, ok, value in checks]
    return "\n".join(lines) + "\n"


def _plots(figures: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for filename, x_key, y_key, xlabel, ylabel, logx in (
        ("throughput.png", "concurrency", "images_per_s", "concurrent clients", "images/s", True),
        ("p99_vs_throughput.png", "images_per_s", "p99_ms", "images/s", "p99 latency (ms)", False),
    ):
        figure, axes = plt.subplots(figsize=(7, 4.5))
        for name, points in figures["sweeps"].items():
            axes.plot([p[x_key] for p in points], [p[y_key] for p in points], marker="o", label=name)
        if logx:
            axes.set_xscale("log", base=2)
        else:
            axes.set_yscale("log")
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(out / filename, dpi=120)
        plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
