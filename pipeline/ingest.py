"""Stage ingest: each source's original files, verified (or, for contributed drawings, the feedback folder)
-> <interim>/<source>.npz (MNIST-style digits); with a local source in the mix, also
<interim>/set_aside.json: its digits the data contract refuses, left out (source -> [{sha256, index, label,
reasons}]), which validate copies into its report."""

from __future__ import annotations

from functools import partial

from digitops.config import load_params
from digitops.data.fetch import fetch_source_files, mirror_from_env
from digitops.data.ingest import SET_ASIDE_NAME, ingest_local_source, ingest_source
from digitops.data.sources import LocalSource, get_source
from digitops.digits import OFFICIAL_SPLITS
from digitops.errors import run_stage
from digitops.io import atomic_dir, save_npz, write_json
from digitops.validate import digit_problems


def main() -> None:
    params = load_params()
    paths = params.base.paths
    mirror = mirror_from_env()
    print(f"original files from: {mirror if mirror else f'download cache {paths.raw}'}")
    set_aside = {}
    with atomic_dir(paths.interim) as out_dir:  # all sources or nothing
        for name in params.ingest.sources:
            source = get_source(name)
            if isinstance(source, LocalSource):
                arrays, left_out = ingest_local_source(
                    source,
                    paths.feedback,
                    params.ingest.drawings_test_fraction,
                    params.ingest.max_per_split,
                    params.base.seed,
                    contract=partial(digit_problems, policy=params.validate_),
                )
                set_aside[name] = [digit.to_dict() for digit in left_out]
                for digit in left_out:
                    print(f"{name}: set aside {digit.name} (label {digit.label}): {'; '.join(digit.reasons)}")
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
        if set_aside:
            write_json(out_dir / SET_ASIDE_NAME, set_aside)


if __name__ == "__main__":
    run_stage(main)
