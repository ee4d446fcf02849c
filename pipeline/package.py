"""Stage package: models:/<registered_model>@champion (and @challenger, when one passed validation) -> the
BentoML model store -> a bento built from bentofile.yaml; <reports>/package.json names them (they live
under BENTOML_HOME, not in the repo)."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow

from digitops.config import load_params
from digitops.errors import run_stage
from digitops.io import write_json
from digitops.package import build_bento, import_challenger, import_champion


def main() -> None:
    params = load_params()
    paths = params.base.paths
    run = json.loads((paths.models / "run.json").read_text())
    mlflow.set_tracking_uri(run["tracking_uri"])
    model_tag, version = import_champion(
        params.promote.registered_model, params.promote.registered_model, params.reader.registered_model
    )
    challenger_tag, challenger = import_challenger(params.promote.registered_model, model_tag) or (None, None)
    bento_tag = build_bento(Path("bentofile.yaml"), model_tag)
    report = {
        "registered_model": params.promote.registered_model,
        "champion": version,
        "bento_model": model_tag,
        "challenger": challenger,  # null: none shipped (the stage's output says why)
        "challenger_model": challenger_tag,
        "bento": bento_tag,
    }
    write_json(paths.reports / "package.json", report)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_stage(main)
