"""Build the service's container from the packaged bento, run it, and check it answers as the model does.

    make container-test          # after make run: podman here, from a locally built base image
    python deploy/container_test.py --engine docker --base-image python:3.11-slim-bookworm --image NAME:TAG

The release workflow runs this same script before it pushes anything, so what is checked here is what
ships. Steps:
1. export the bento that reports/package.json names (service code, params.yaml, the model) into
   build/container/ beside its lock file, the build context of ./Containerfile;
2. build the image with the base image as a build argument;
3. run it (as the image's non-root user) on a free port and wait for /readyz;
4. classify test digits and require the model's own answers (computed here from the same model file)
   and at least --min-accuracy;
5. send bytes that are not an image and require a 400 that says so; check /readyz again;
6. list the installed packages: ONNX Runtime, and no TensorFlow, Keras or h5py;
7. stop it. The image size and the seconds to ready (from the run command, and from the moment the engine
   has the container running) go to stdout and build/container/report.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import httpx
import numpy as np

from digitops.config import load_params
from digitops.infer.classifier import load_classifier
from digitops.infer.inputs import png_bytes
from digitops.io import load_npz
from digitops.preprocess import normalize_digits

REPO_ROOT = Path(__file__).resolve().parents[1]
CONTEXT = REPO_ROOT / "build" / "container"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--engine", default="docker", help='container CLI, e.g. "podman --storage-driver vfs"'
    )
    parser.add_argument("--build-opts", default="", help="extra options for the build, e.g. --network host")
    parser.add_argument("--base-image", default="python:3.11-slim-bookworm")
    parser.add_argument("--image", default="digits:test", help="the tag to build")
    parser.add_argument("--bento", help="bento tag (default: the one reports/package.json names)")
    parser.add_argument(
        "--digits", type=int, default=200, help="test digits to classify through the container"
    )
    parser.add_argument("--min-accuracy", type=float, default=0.95)
    parser.add_argument("--ready-timeout", type=float, default=180)
    args = parser.parse_args(argv)
    engine = shlex.split(args.engine)

    package = json.loads((REPO_ROOT / "reports" / "package.json").read_text())
    bento = args.bento or package["bento"]
    bento_name = bento.split(":")[0]
    _prepare_context(bento)
    started = time.perf_counter()
    _run(
        [
            *engine,
            "build",
            *shlex.split(args.build_opts),
            "--build-arg",
            f"BASE_IMAGE={args.base_image}",
            "--build-arg",
            f"BENTO_NAME={bento_name}",
            "-f",
            str(REPO_ROOT / "Containerfile"),
            "-t",
            args.image,
            str(CONTEXT),
        ]
    )
    report = {
        "image": args.image,
        "bento": bento,
        "base_image": args.base_image,
        "build_seconds": round(time.perf_counter() - started, 1),
        "image_bytes": _image_size(engine, args.image),
    }
    print(
        f"built {args.image} ({report['image_bytes'] / 1e9:.2f} GB) in {report['build_seconds']} s",
        flush=True,
    )

    port = _free_port()
    container = f"digits-check-{port}"
    started = time.perf_counter()
    _run(
        [*engine, "run", "--detach", "--rm", "--name", container, "-p", f"127.0.0.1:{port}:3000", args.image]
    )
    running = time.perf_counter()  # the engine has created and started the container
    try:
        url = f"http://127.0.0.1:{port}"
        report["seconds_to_ready"] = round(
            _wait_ready(url, engine, container, args.ready_timeout, started), 1
        )
        # The service's own share: without the engine's container creation (copying the image's layers
        # with podman's vfs driver, where overlay storage is not available).
        report["seconds_to_ready_once_running"] = round(time.perf_counter() - running, 1)
        report["user"] = _run([*engine, "exec", container, "id", "-un"]).stdout.strip()
        if report["user"] == "root":
            raise SystemExit("the container runs as root")
        report.update(_check_answers(url, package["bento_model"], args.digits, args.min_accuracy))
        _check_bad_input(url)
        report["packages"] = _check_packages(engine, container)
    except BaseException:
        print(_run([*engine, "logs", container], check=False).stdout[-5000:], file=sys.stderr)
        raise
    finally:
        _run([*engine, "stop", "--time", "10", container], check=False)
    (CONTEXT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def _prepare_context(bento: str) -> None:
    """build/container/: bento.bento (with its model) and bento/env/python/requirements.txt from it."""
    CONTEXT.mkdir(parents=True, exist_ok=True)
    archive = CONTEXT / "bento.bento"
    archive.unlink(missing_ok=True)
    _run([str(Path(sys.executable).with_name("bentoml")), "export", bento, str(archive)])
    lock = CONTEXT / "bento" / "env" / "python" / "requirements.txt"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive) as bundle:
        lock.write_bytes(bundle.extractfile("./env/python/requirements.txt").read())


def _image_size(engine: list[str], image: str) -> int:
    return int(_run([*engine, "image", "inspect", "--format", "{{.Size}}", image]).stdout.strip())


def _wait_ready(url: str, engine: list[str], container: str, timeout: float, started: float) -> float:
    while time.perf_counter() - started < timeout:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        state = _run([*engine, "inspect", "--format", "{{.State.Running}}", container], check=False).stdout
        if "true" not in state:
            raise SystemExit(f"the container stopped before it was ready ({state.strip()})")
        time.sleep(0.5)
    raise SystemExit(f"not ready after {timeout} s")


def _check_answers(url: str, bento_model: str, count: int, min_accuracy: float) -> dict:
    """The container's digits must be the model's own (computed here from the same model file)."""
    test = load_npz(load_params(REPO_ROOT / "params.yaml").base.paths.prepared / "test.npz")
    chosen = np.linspace(0, len(test["labels"]) - 1, count).astype(int)  # spread over every source
    images, labels = test["images"][chosen], test["labels"][chosen]
    name, version = bento_model.split(":")
    bentoml_home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml"))
    expected = load_classifier(bentoml_home / "models" / name / version)(normalize_digits(images)).argmax(1)
    answered = []
    for start in range(0, count, 50):
        files = [
            ("images", (f"{i}.png", png_bytes(image), "image/png"))
            for i, image in enumerate(images[start : start + 50])
        ]
        response = httpx.post(f"{url}/classify", files=files, timeout=60)
        response.raise_for_status()
        answered += [result["digit"] for result in response.json()]
    answered = np.array(answered)
    if not np.array_equal(answered, expected):
        raise SystemExit(f"{int((answered != expected).sum())} of {count} answers differ from the model's")
    accuracy = float((answered == labels).mean())
    if accuracy < min_accuracy:
        raise SystemExit(f"accuracy {accuracy:.3f} on {count} test digits is under {min_accuracy}")
    return {"digits_checked": count, "accuracy": round(accuracy, 4)}


def _check_bad_input(url: str) -> None:
    response = httpx.post(
        f"{url}/classify", files=[("images", ("x.png", b"not an image", "image/png"))], timeout=30
    )
    if response.status_code != 400 or "not an image" not in response.text:
        raise SystemExit(f"bad input got {response.status_code}: {response.text[:300]}")
    if httpx.get(f"{url}/readyz", timeout=5).status_code != 200:
        raise SystemExit("the service is not ready after a bad input")


SERVING_RUNTIME = "onnxruntime"
TRAINING_ONLY = ("tensorflow", "tensorflow-cpu", "keras", "h5py", "tf2onnx", "onnx")


def _check_packages(engine: list[str], container: str) -> int:
    """The image's Python packages: ONNX Runtime serves, the training stack is absent. Returns their count."""
    listing = (
        "import importlib.metadata as m; print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"
    )
    installed = {
        name.strip().lower().replace("_", "-")
        for name in _run([*engine, "exec", container, "python3", "-c", listing]).stdout.split()
    }
    if SERVING_RUNTIME not in installed and f"{SERVING_RUNTIME}-gpu" not in installed:
        raise SystemExit(f"{SERVING_RUNTIME} is not installed in the image")
    present = sorted(installed & set(TRAINING_ONLY))
    if present:
        raise SystemExit(f"the image holds training packages it never needs: {present}")
    return len(installed)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(command: list[str], check: bool = True) -> subprocess.CompletedProcess:
    print("+", shlex.join(command), flush=True)
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise SystemExit(f"{shlex.join(command)} failed ({result.returncode}):\n{output}")
    return result


if __name__ == "__main__":
    sys.exit(main())
