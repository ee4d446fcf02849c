"""Who may contribute, and how much, through a real `bentoml serve` of the smoke bento started with a
contribution token and a daily quota of two drawings; then the review that lets them into training."""

from __future__ import annotations

import json
import shutil

import httpx
import pytest
import yaml

from digitops.cli import EXIT_OK
from digitops.cli import main as digitops_cli
from digitops.data.drawings import read_manifest
from tests.fakes import SEVEN_STROKES, jittered_canvas_pngs, off_centre_blob_png
from tests.service.conftest import serve_bento

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

TOKEN = "contributor-token-for-tests"


@pytest.fixture(scope="module")
def guarded(smoke_repo, tmp_path_factory):
    params = yaml.safe_load((smoke_repo.path / "params.yaml").read_text())
    params["serve"]["feedback_per_client_per_day"] = 2
    params["serve"]["workers"] = 1
    path = tmp_path_factory.mktemp("params") / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    # Its own BentoML home: a second `bentoml serve` on one home empties the first one's Prometheus folder.
    home = tmp_path_factory.mktemp("guarded") / "bentoml"
    shutil.copytree(
        smoke_repo.env["BENTOML_HOME"], home, ignore=shutil.ignore_patterns("prometheus_multiproc_dir")
    )
    environment = {"DIGITOPS_FEEDBACK_TOKEN": TOKEN, "DIGITOPS_PARAMS": str(path), "BENTOML_HOME": str(home)}
    with serve_bento(smoke_repo.bento, smoke_repo.env, tmp_path_factory, environment) as running:
        yield running


def _send(url: str, drawings: list[bytes], labels: list[int], token: str | None = TOKEN) -> httpx.Response:
    files = [("images", (f"{index}.png", data, "image/png")) for index, data in enumerate(drawings)]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(
        f"{url}/feedback", files=files, data={"labels": json.dumps(labels)}, headers=headers, timeout=30
    )


def test_only_the_token_holder_contributes_within_its_quota_and_a_person_lets_them_in(guarded):
    drawings = jittered_canvas_pngs(SEVEN_STROKES, 3, seed=7)
    for token in (None, "wrong-token"):
        refused = _send(guarded.url, drawings[:1], [7], token)
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.text
    assert read_manifest(guarded.quarantine) == []

    taken = _send(guarded.url, drawings[:2], [7, 7])
    assert taken.status_code == 200, taken.text
    waiting = read_manifest(guarded.quarantine)
    assert [(record.label, record.client) for record in waiting] == [(7, "127.0.0.1"), (7, "127.0.0.1")]
    assert read_manifest(guarded.feedback_dir) == []  # nothing trains on them yet

    over = _send(guarded.url, drawings[2:], [7])
    assert over.status_code == 429 and "the limit is 2" in over.text
    assert len(read_manifest(guarded.quarantine)) == 2

    assert digitops_cli(["drawings", "accept", "--all", "--folder", str(guarded.feedback_dir)]) == EXIT_OK
    assert [record.sha256 for record in read_manifest(guarded.feedback_dir)] == [r.sha256 for r in waiting]


def test_a_drawing_the_data_contract_refuses_gets_a_400_that_says_why(guarded):
    response = _send(guarded.url, [off_centre_blob_png()], [0])
    assert response.status_code == 400 and "data contract" in response.text
