"""Stage split: the validated sources -> <prepared>/{train,val,test}.npz + manifest.parquet, and a
per-source/split/label count table <reports>/split_counts.csv (for `dvc plots`)."""

from __future__ import annotations

from digitops.config import load_params
from digitops.errors import run_stage
from digitops.io import atomic_dir, atomic_write, load_npz, save_npz
from digitops.split import count_table, split_dataset


def main() -> None:
    params = load_params()
    paths = params.base.paths
    interim = {name: load_npz(paths.interim / f"{name}.npz") for name in params.ingest.sources}
    arrays, manifest = split_dataset(interim, params.split.val_fraction, params.base.seed)
    with atomic_dir(paths.prepared) as out_dir:
        for split, split_arrays in arrays.items():
            save_npz(out_dir / f"{split}.npz", **split_arrays)
        manifest.to_parquet(out_dir / "manifest.parquet", index=False)
    with atomic_write(paths.reports / "split_counts.csv", "w") as handle:
        count_table(manifest).to_csv(handle, index=False)
    print(manifest.groupby(["source", "split"], observed=True).size().unstack().to_string())


if __name__ == "__main__":
    run_stage(main)
