"""Stage augment: <prepared>/train.npz -> <augmented>/train.npz (the originals, then `copies` augmented
versions of each), <plots>/augment_preview.png, and <metrics>/augment.json (throughput)."""

from __future__ import annotations

import os
import time

import numpy as np
from PIL import Image

from digitops.augment import augment, preview_grid
from digitops.config import load_params
from digitops.errors import run_stage
from digitops.io import atomic_write, load_npz, save_npz, write_json


def main() -> None:
    params = load_params()
    paths, settings = params.base.paths, params.augment
    train = load_npz(paths.prepared / "train.npz")
    workers = settings.workers or os.cpu_count() or 1
    started = time.perf_counter()
    augmented = augment(train["images"], settings, params.base.seed, workers)
    seconds = time.perf_counter() - started
    copies = settings.copies
    save_npz(
        paths.augmented / "train.npz",
        images=np.concatenate([train["images"], augmented]),
        labels=np.tile(train["labels"], 1 + copies),
        sources=np.tile(train["sources"], 1 + copies),
        augmented=np.repeat(np.arange(1 + copies) > 0, len(train["labels"])),
    )
    with atomic_write(paths.plots / "augment_preview.png") as handle:
        Image.fromarray(preview_grid(train["images"], augmented, copies, settings.preview)).save(
            handle, "PNG"
        )
    throughput = {"images": len(augmented), "seconds": round(seconds, 2), "workers": workers}
    throughput["images_per_second"] = round(len(augmented) / seconds, 1)
    write_json(paths.metrics / "augment.json", throughput)
    print(f"augmented {len(augmented)} digits in {seconds:.1f} s with {workers} workers")


if __name__ == "__main__":
    run_stage(main)
