"""Tiny data the tests make themselves: IDX, USPS, bhmsds and Kaggle CSV files, canvas drawings, digits."""

from __future__ import annotations

import csv
import gzip
import io
import os
import socket
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from digitops.infer.inputs import png_bytes
from digitops.preprocess import normalize_digit

REPO_ROOT = Path(__file__).resolve().parents[1]

# A '7' drawn on a 256x256 canvas: the top bar, then the diagonal down to the bottom left.
SEVEN_STROKES = [[(60, 50), (200, 50), (110, 220)]]
# A '4': the left arm and bar, then the upright.
FOUR_STROKES = [[(150, 30), (60, 150), (200, 150)], [(160, 80), (160, 230)]]


def shared_datasets() -> Path | None:
    """The folder of original dataset files beside the checkout (or DIGITOPS_DATA_MIRROR), if present."""
    named = os.environ.get("DIGITOPS_DATA_MIRROR")
    candidates = [Path(named)] if named else []
    candidates.append(REPO_ROOT.parent / "shared" / "datasets")
    return next((path for path in candidates if (path / "mnist").is_dir()), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (right now)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` (uint8) as a gzip-compressed IDX file."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())
    return path


def write_usps(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Write (N, 16, 16) values in [-1, 1] and labels in the ESL text format, gzipped."""
    lines = [
        " ".join([f"{label:.4f}"] + [f"{value:.3f}" for value in image.ravel()])
        for image, label in zip(images, labels, strict=True)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(lines) + "\n")
    return path


def bhmsds_photo(strokes: list[list[tuple[int, int]]]) -> bytes:
    """A digit as bhmsds stores it: `strokes` (256x256 canvas coordinates) in dark ink on light grey paper,
    cropped to fill the frame, as a 28x28 grayscale PNG."""
    ink = draw_strokes(strokes, width=22)  # (256, 256), 255 = ink
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    crop = Image.fromarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]).resize((28, 28))
    paper = 235 - np.asarray(crop, dtype=np.float64) * (195 / 255)  # ink 40, paper 235
    buffer = io.BytesIO()
    Image.fromarray(np.round(paper).astype(np.uint8)).save(buffer, format="PNG")  # uint8 (H, W): mode L
    return buffer.getvalue()


def write_tar(path: Path, members: dict[str, bytes]) -> Path:
    """A tar holding `members` (path inside -> bytes) in this order, as `git archive` writes one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as bundle:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            bundle.addfile(info, io.BytesIO(data))
    return path


def jittered(
    strokes: list[list[tuple[int, int]]], rng: np.random.Generator, amount: int = 12
) -> list[list[tuple[int, int]]]:
    """The strokes with each point moved by up to `amount` pixels: the same digit by another hand."""
    return [
        [
            (x + int(rng.integers(-amount, amount + 1)), y + int(rng.integers(-amount, amount + 1)))
            for x, y in stroke
        ]
        for stroke in strokes
    ]


def draw_strokes(
    strokes: list[list[tuple[int, int]]], size: int = 256, width: int = 18, offset: tuple[int, int] = (0, 0)
) -> np.ndarray:
    """The ink of `strokes` drawn as polylines: (size, size) uint8, 255 = ink."""
    image = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(image)
    for stroke in strokes:
        points = [(x + offset[0], y + offset[1]) for x, y in stroke]
        draw.line(points, fill=255, width=width, joint="curve")
        for x, y in points:  # round caps, as a canvas with lineCap = "round" draws them
            draw.ellipse((x - width // 2, y - width // 2, x + width // 2, y + width // 2), fill=255)
    return np.asarray(image)


def jittered_canvas_pngs(strokes: list[list[tuple[int, int]]], count: int, seed: int) -> list[bytes]:
    """`count` distinct drawings of `strokes` as the page sends them (PNGs of an RGBA canvas, the ink in
    alpha), each by another hand (`jittered`): distinct once normalised, unlike a moved or recoloured copy."""
    rng = np.random.default_rng(seed)
    return [
        png_bytes(Image.fromarray(canvas_rgba(draw_strokes(jittered(strokes, rng))))) for _ in range(count)
    ]


def off_centre_blob_png() -> bytes:
    """A blob with a line off to one side: normalised, its centre of mass is off centre, so the data
    contract refuses it (the drawing that once stopped a whole pipeline at validate)."""
    blob = Image.new("L", (200, 200), 255)
    pen = ImageDraw.Draw(blob)
    pen.ellipse((20, 20, 90, 90), fill=0)
    pen.line((90, 55, 190, 190), fill=0, width=3)
    return png_bytes(blob)


def canvas_rgba(ink: np.ndarray, colour: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """A browser-canvas-style drawing: transparent background, strokes in `colour` with alpha = ink."""
    rgba = np.zeros((*ink.shape, 4), dtype=np.uint8)
    rgba[..., :3] = colour
    rgba[..., 3] = ink
    return rgba


def random_digits(count: int, seed: int = 0) -> np.ndarray:
    """(count, 28, 28) uint8 MNIST-style images of random strokes (distinct, never blank)."""
    rng = np.random.default_rng(seed)
    digits = []
    for _ in range(count):
        strokes = [[tuple(int(v) for v in rng.integers(20, 236, size=2)) for _ in range(rng.integers(2, 5))]]
        digits.append(normalize_digit(draw_strokes(strokes, width=int(rng.integers(10, 24)))))
    return np.stack(digits)


def interim_arrays(train_per_class: int, test_per_class: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays as the ingest stage writes them for one source, from random MNIST-style digits."""
    labels = np.concatenate(
        [np.repeat(np.arange(10), train_per_class), np.repeat(np.arange(10), test_per_class)]
    ).astype(np.int64)
    splits = np.array(["train"] * (10 * train_per_class) + ["test"] * (10 * test_per_class))
    index = np.concatenate([np.arange(10 * train_per_class), np.arange(10 * test_per_class)])
    return {"images": random_digits(len(labels), seed), "labels": labels, "split": splits, "index": index}


def write_kaggle_csv(path: Path, images: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """A Kaggle digit-recognizer CSV: a header, then one row of 784 pixels (after the label, if any)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            (["label"] if labels is not None else []) + [f"pixel{index}" for index in range(28 * 28)]
        )
        for index, image in enumerate(images):
            writer.writerow(([int(labels[index])] if labels is not None else []) + image.ravel().tolist())
    return path


def png_claiming_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def image_files(*contents: bytes) -> dict:
    """httpx.post arguments for a multipart upload of `contents` in the service's field `images`."""
    return {
        "files": [("images", (f"f{index}.png", data, "image/png")) for index, data in enumerate(contents)]
    }


def ingest_from_mirror(
    names, mirror: Path, cache: Path, max_per_split: int | None, hash_test_fraction: float
) -> dict[str, dict[str, np.ndarray]]:
    """Each named source fetched from `mirror` (verified, into `cache`) and ingested as the stage does."""
    from digitops.data.fetch import fetch_source_files
    from digitops.data.ingest import ingest_source
    from digitops.data.sources import get_source

    return {
        name: ingest_source(
            get_source(name),
            fetch_source_files(get_source(name), mirror, cache, progress=False),
            max_per_split,
            seed=1,
            hash_test_fraction=hash_test_fraction,
        )
        for name in names
    }


def locked_packages(lock_text: str) -> dict[str, str]:
    """Package name (lower-case, no extras) -> version, of a pip lock file (`name==version \\` lines)."""
    pins = (line.split("==") for line in lock_text.splitlines() if "==" in line and line[:1] not in " #")
    return {name.split("[")[0].strip().lower(): version.split()[0] for name, version in pins}


def single_digit_onnx(path: Path, digit: int) -> Path:
    """A valid digit model (uint8 (B, 28, 28) in, (B, 10) float out) that reads one digit at a time: it
    answers `digit` with probability 0.55 for a batch of one and raises in ONNX Runtime for any other batch
    (its Reshape to (1, 784) fails), like a model that breaks on some requests only."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    bias = np.full(10, 0.05, np.float32)
    bias[digit] = 0.55
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["digits", "flat_shape"], ["flat"]),
            helper.make_node("Cast", ["flat"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("MatMul", ["pixels", "weights"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["probabilities"]),
        ],
        "single-digit",
        [helper.make_tensor_value_info("digits", TensorProto.UINT8, [None, 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 10])],
        initializer=[
            numpy_helper.from_array(np.array([1, 784], np.int64), "flat_shape"),
            numpy_helper.from_array(np.zeros((784, 10), np.float32), "weights"),
            numpy_helper.from_array(bias, "bias"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def one_mark_reader_onnx(path: Path, mark: str = "-") -> Path:
    """A valid string reader (uint8 (B, 32, W) lines in, (B, W/4, classes) probabilities out) that reads every
    line as one `mark`, sure of it: every step says it, so greedy decoding gives it once, with no gap."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from digitops.infer.reader import WIDTH_STEP
    from digitops.strings import ALPHABET, READER_HEIGHT

    step = np.zeros(len(ALPHABET) + 1, np.float32)
    step[ALPHABET.index(mark) + 1] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["line"], ["pixels"], to=TensorProto.FLOAT),
            helper.make_node("ReduceSum", ["pixels", "height_axis"], ["columns"], keepdims=0),  # (B, W)
            helper.make_node("Reshape", ["columns", "step_shape"], ["steps"]),  # (B, W/4, 4)
            helper.make_node("ReduceSum", ["steps", "last_axis"], ["per_step"], keepdims=1),  # (B, W/4, 1)
            helper.make_node("Mul", ["per_step", "zero"], ["nothing"]),
            helper.make_node("Add", ["nothing", "step"], ["probabilities"]),  # (B, W/4, classes)
        ],
        "one-mark-reader",
        [helper.make_tensor_value_info("line", TensorProto.UINT8, [None, READER_HEIGHT, None])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, None, len(step)])],
        initializer=[
            numpy_helper.from_array(np.array([1], np.int64), "height_axis"),
            numpy_helper.from_array(np.array([2], np.int64), "last_axis"),
            numpy_helper.from_array(np.array([0, -1, WIDTH_STEP], np.int64), "step_shape"),
            numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
            numpy_helper.from_array(step, "step"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def float_input_onnx(path: Path) -> Path:
    """A valid ONNX graph of float images, not the normaliser's uint8 digits: load_classifier refuses it."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "not-digits",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 28, 28])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path
