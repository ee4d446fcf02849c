"""Stage validate: check the ingested sources against the data contract -> <reports>/data_validation.json.

On a violation the stage fails, lists every violation, and leaves the previous report in place. The report
also lists, under `set_aside`, the digits of local sources that ingest left out because the contract refuses
them (<interim>/set_aside.json; empty when no local source is in the mix).
"""

from __future__ import annotations

import json
from pathlib import Path

from digitops.config import load_params
from digitops.data.ingest import SET_ASIDE_NAME
from digitops.data.sources import expected_counts, get_source
from digitops.errors import DataContractError, run_stage
from digitops.io import load_npz, write_text
from digitops.validate import check_sources


def main() -> None:
    params = load_params()
    paths = params.base.paths
    sources = params.ingest.sources
    interim = {name: load_npz(paths.interim / f"{name}.npz") for name in sources}
    expected = {name: expected_counts(get_source(name), params.ingest.max_per_split) for name in sources}
    report = check_sources(interim, expected, params.validate_)
    if not report.passed:
        raise DataContractError("the data violates the contract:\n  - " + "\n  - ".join(report.violations))
    document = {**report.to_dict(), "set_aside": _set_aside(paths.interim / SET_ASIDE_NAME)}
    write_text(paths.reports / "data_validation.json", json.dumps(document, indent=2) + "\n")
    print(f"data contract holds for {', '.join(sources)}")


def _set_aside(path: Path) -> dict:
    """What ingest left out, by source ({} when no local source is in the mix)."""
    return json.loads(path.read_text()) if path.is_file() else {}


if __name__ == "__main__":
    run_stage(main)
