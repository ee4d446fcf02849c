from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes import shared_datasets
from tests.smoke import SmokeRepo, make_smoke_repo


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The original dataset files (../shared/datasets or DIGITOPS_DATA_MIRROR)."""
    path = shared_datasets()
    if path is None:
        pytest.skip("no folder of original datasets: set DIGITOPS_DATA_MIRROR or place ../shared/datasets")
    return path


@pytest.fixture(scope="session")
def smoke_repo(tmp_path_factory, mirror) -> SmokeRepo:
    """A copy of the project after one `dvc repro` of the smoke profile (see tests/smoke.py)."""
    return make_smoke_repo(tmp_path_factory.mktemp("smoke"), mirror)


class _Server:
    """A real HTTP server on 127.0.0.1 serving `root`, counting the files it sent."""

    def __init__(self, root: Path) -> None:
        import functools
        import http.server
        import threading

        self.root = root
        self.requests: list[str] = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args) -> None:
                pass

        self._httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root))
        )
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def http_server(tmp_path):
    """Serves tmp_path/'www' over HTTP on loopback (the download path, without the internet)."""
    root = tmp_path / "www"
    root.mkdir()
    server = _Server(root)
    yield server
    server.close()
