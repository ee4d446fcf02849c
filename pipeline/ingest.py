"""Stage ingest: each source's original files, verified (or, for contributed drawings, the feedback folder)
-> <interim>/<source>.npz (MNIST-style digits)."""

from __future__ import annotations

from digitops.config import load_params
from digitops.data.fetch import fetch_source_files, mirror_from_env
from digitops.data.ingest import ingest_local_source, ingest_source
from digitops.data.sources import LocalSource, get_source
from digitops.digits import OFFICIAL_SPLITS
from digitops.errors import run_stage
from digitops.io import atomic_dir, save_npz


def main() -> None:
    params = load_params()
    paths = params.base.paths
    mirror = mirror_from_env()
    print(f"original files from: {mirror if mirror else f'download cache {paths.raw}'}")
    with atomic_dir(paths.interim) as out_dir:  # all sources or nothing
        for name in params.ingest.sources:
            source = get_source(name)
            if isinstance(source, LocalSource):
                arrays = ingest_local_source(
                    source,
                    paths.feedback,
                    params.ingest.drawings_test_fraction,
                    params.ingest.max_per_split,
                    params.base.seed,
                )
            else:
                files = fetch_source_files(source, mirror, paths.raw)
                arrays = ingest_source(
                    source,
                    files,
                    params.ingest.max_per_split,
                    params.base.seed,
                    hash_test_fraction=params.ingest.hash_test_fraction,
                )
            save_npz(out_dir / f"{name}.npz", **arrays)
            counts = {split: int((arrays["split"] == split).sum()) for split in OFFICIAL_SPLITS}
            print(f"{name}: {counts['train']} train, {counts['test']} test")


if __name__ == "__main__":
    run_stage(main)
