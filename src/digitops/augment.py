"""Training-set augmentation with albumentations, built from params.yaml.

Pure and reproducible: the output depends only on the images, the parameters and the seed. The work is
cut into fixed chunks, each with its own seed derived from (seed, copy, chunk), and spread over worker
processes, so the result is byte-identical whatever the number of workers.

Besides the classic geometry and noise, real-world conditions each have their own probability: a
writer's slant and pen (thicker or thinner strokes), and what a camera or scanner does to the page (blur,
low resolution, binarisation, a faint paper texture). A transform whose p is 0 draws no random number,
so switching one off leaves every other digit's augmentation as it was.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import albumentations as A  # noqa: N812  (the library's own convention)
import cv2
import numpy as np

from digitops.config import AugmentParams

CHUNK = 2048  # digits per task: fixed, so that the seeds (and the output) do not depend on the workers


def build_pipeline(params: AugmentParams, seed: int) -> A.Compose:
    """The albumentations pipeline for (28, 28) uint8 white-on-black digits.

    In the order things happen to a real digit: the writer's slant and pen, the geometry and elastic
    variation, then the camera or scanner (blur, binarisation, low resolution, paper texture), then
    brightness, noise and inversion.
    """
    affine, elastic = params.affine, params.elastic
    return A.Compose(
        [
            A.Affine(
                shear={"x": tuple(params.slant.shear), "y": (0.0, 0.0)},
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=params.slant.p,
            ),
            A.Morphological(
                scale=(params.thicker.kernel, params.thicker.kernel), operation="dilation", p=params.thicker.p
            ),
            KeepInkErosion(params.thinner.kernel, params.thinner.min_ink, p=params.thinner.p),
            A.Affine(
                rotate=(-affine.rotate, affine.rotate),
                shear=(-affine.shear, affine.shear),
                scale=tuple(affine.scale),
                translate_px=(-affine.shift_px, affine.shift_px),
                interpolation=cv2.INTER_LINEAR,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=affine.p,
            ),
            A.ElasticTransform(
                alpha=elastic.alpha, sigma=elastic.sigma, border_mode=cv2.BORDER_CONSTANT, p=elastic.p
            ),
            A.CoarseDropout(
                num_holes_range=tuple(params.dropout.holes),
                hole_height_range=tuple(params.dropout.size_px),
                hole_width_range=tuple(params.dropout.size_px),
                fill=0,
                p=params.dropout.p,
            ),
            A.GaussianBlur(sigma_limit=tuple(params.gaussian_blur.sigma), p=params.gaussian_blur.p),
            # Unshifted: the streak stays centred on the stroke, so the digit keeps its MNIST framing.
            A.MotionBlur(
                blur_limit=tuple(params.motion_blur.kernel), allow_shifted=False, p=params.motion_blur.p
            ),
            Binarize(tuple(params.binarize.threshold), p=params.binarize.p),
            A.Downscale(
                scale_range=tuple(params.low_resolution.scale),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=params.low_resolution.p,
            ),
            PaperResidue(tuple(params.residue.level), p=params.residue.p),
            A.RandomBrightnessContrast(
                brightness_limit=params.brightness_contrast.limit,
                contrast_limit=params.brightness_contrast.limit,
                p=params.brightness_contrast.p,
            ),
            A.GaussNoise(std_range=tuple(params.noise.std), p=params.noise.p),
            A.InvertImg(p=params.invert_p),
        ],
        seed=seed,
    )


class KeepInkErosion(A.Morphological):
    """Erosion with an elliptic `kernel` x `kernel` element (thinner strokes) that never erases a digit.

    A digit that is already thin would lose most of its ink: it is then returned unchanged.
    """

    def __init__(self, kernel: int, min_ink: float, p: float):
        super().__init__(scale=(kernel, kernel), operation="erosion", p=p)
        self.min_ink = min_ink

    def apply(self, img: np.ndarray, kernel: np.ndarray, **params: Any) -> np.ndarray:
        eroded = super().apply(img, kernel, **params)
        # Sums as int64: a uint8 sum would wrap.
        if eroded.sum(dtype=np.int64) < self.min_ink * img.sum(dtype=np.int64):
            return img
        return eroded


class Binarize(A.ImageOnlyTransform):
    """A black-and-white scan: grey levels above a threshold drawn from `threshold` become 255, others 0."""

    def __init__(self, threshold: tuple[float, float], p: float):
        super().__init__(p=p)
        self.threshold = threshold

    def get_params(self) -> dict[str, Any]:
        # albumentations' own generator: seeded by the pipeline, so the output is reproducible.
        return {"level": self.py_random.uniform(*self.threshold)}

    def apply(self, img: np.ndarray, level: float, **params: Any) -> np.ndarray:
        return np.where(img > level, 255, 0).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("threshold",)


class PaperResidue(A.ImageOnlyTransform):
    """A faint paper texture in the background, as a photographed page leaves after thresholding.

    The texture is smooth blotches (a coarse random field, resized up) with a fine grain on top; its
    brightest grey is drawn from `level`. It is combined with the digit by maximum, so the ink (brighter
    than any residue) stays as it was.
    """

    CELLS = 5  # the blotches: a 5x5 random field resized to the image, so a blotch spans a few strokes

    def __init__(self, level: tuple[float, float], p: float):
        super().__init__(p=p)
        self.level = level

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        rng = self.random_generator  # albumentations' own generator, seeded by the pipeline
        blotches = cv2.resize(
            rng.random((self.CELLS, self.CELLS), dtype=np.float32),
            (width, height),
            interpolation=cv2.INTER_CUBIC,
        )
        texture = 0.7 * np.clip(blotches, 0, 1) + 0.3 * rng.random((height, width), dtype=np.float32)
        return {"texture": texture * self.py_random.uniform(*self.level)}  # (H, W) float32 in [0, level]

    def apply(self, img: np.ndarray, texture: np.ndarray, **params: Any) -> np.ndarray:
        return np.maximum(img, texture.reshape(img.shape).astype(np.uint8))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("level",)


def augment(images: np.ndarray, params: AugmentParams, seed: int, workers: int | None = None) -> np.ndarray:
    """`params.copies` augmented versions of every image.

    Args:
        images: (N, 28, 28) uint8.
        params: the `augment` section of params.yaml.
        seed: base seed.
        workers: processes to use; None means one per core.

    Returns:
        (copies * N, 28, 28) uint8: copy 0 of every image, then copy 1, ...
    """
    tasks = [
        (images[start : start + CHUNK], params.model_dump(), _chunk_seed(seed, copy, start // CHUNK))
        for copy in range(params.copies)
        for start in range(0, len(images), CHUNK)
    ]
    if not tasks:
        return np.zeros((0, *images.shape[1:]), np.uint8)
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) == 1:
        parts = [_augment_chunk(task) for task in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_augment_chunk, tasks))
    return np.concatenate(parts)


def preview_grid(
    originals: np.ndarray, augmented: np.ndarray, copies: int, count: int, per_row: int = 8
) -> np.ndarray:
    """An image of `count` originals, each followed by its augmented copies, `per_row` groups a row.

    Args:
        originals: (N, 28, 28); augmented: (copies * N, 28, 28) as `augment` returns it.

    Returns:
        uint8 image; cells of 28x28 with a 1-px grey frame, a wider gap between groups.
    """
    count = min(count, len(originals))
    cell, gap = 30, 6
    group_width = (1 + copies) * cell + gap
    rows = -(-count // per_row)
    grid = np.full((rows * cell, min(count, per_row) * group_width), 64, np.uint8)
    for index in range(count):
        top, left = (index // per_row) * cell, (index % per_row) * group_width
        variants = [originals[index]] + [augmented[copy * len(originals) + index] for copy in range(copies)]
        for position, image in enumerate(variants):
            grid[top + 1 : top + 29, left + position * cell + 1 : left + position * cell + 29] = image
    return grid


def _chunk_seed(seed: int, copy: int, chunk: int) -> int:
    return int(np.random.SeedSequence([seed, copy, chunk]).generate_state(1)[0])


def _augment_chunk(task: tuple[np.ndarray, dict[str, Any], int]) -> np.ndarray:
    images, params, seed = task
    pipeline = build_pipeline(AugmentParams.model_validate(params), seed)
    return np.stack([pipeline(image=image)["image"] for image in images]).astype(np.uint8)
