"""The service builds OpenTelemetry spans only when a trace exporter is configured."""

from __future__ import annotations

import pytest
from bentoml._internal.configuration.containers import BentoMLContainer

from digitops.serve.tracing import tracing_config


@pytest.fixture
def exporter_type():
    """Sets `tracing.exporter_type` in this process's BentoML configuration; restores it afterwards."""
    setting = BentoMLContainer.config.tracing.exporter_type
    before = setting.get()
    yield setting.set
    setting.set(before)


def test_without_an_exporter_no_url_is_traced(exporter_type):
    exporter_type(None)
    assert tracing_config() == {"excluded_urls": [".*"]}


@pytest.mark.parametrize("exporter", ["otlp", "zipkin", "in_memory"])
def test_with_an_exporter_bentomls_own_tracing_applies(exporter_type, exporter):
    exporter_type(exporter)
    assert tracing_config() == {}
