"""Training-set augmentation with albumentations, built from params.yaml.

Pure and reproducible: the output depends only on the images, the parameters and the seed. The work is
cut into fixed chunks, each with its own seed derived from (seed, copy, chunk), and spread over worker
processes, so the result is byte-identical whatever the number of workers.
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
    """The albumentations pipeline for (28, 28) uint8 white-on-black digits."""
    affine, elastic = params.affine, params.elastic
    return A.Compose(
        [
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
