"""OpenTelemetry spans only when something collects them.

BentoML wraps every request in an OpenTelemetry span, exporter or not. With no exporter configured (its
default) the spans go nowhere, yet building them costs a noticeable share of the service's throughput on
single-image requests (docs/benchmarks.md). So the service asks BentoML to skip them, for every URL,
unless a trace exporter is configured: then BentoML's own behaviour (and the user's
`tracing.excluded_urls`) applies.

An exporter with `sample_rate: 0` still counts as collecting: BentoML's sampler follows the caller's
decision, so a request from a sampled upstream trace is recorded whatever the rate.
"""

from __future__ import annotations

from typing import Any

from bentoml._internal.configuration.containers import BentoMLContainer

EVERY_URL = [".*"]  # a regular expression searched in each request's URL


def tracing_config() -> dict[str, Any]:
    """The `tracing` setting for `@bentoml.service`: every URL excluded from spans when no exporter is set.

    Reads BentoML's configuration as loaded when the service module is imported (BENTOML_CONFIG,
    BENTOML_CONFIG_OVERRIDES), which BentoML does before importing it, in the server and in each worker.
    """
    if BentoMLContainer.config.tracing.exporter_type.get():
        return {}
    return {"excluded_urls": EVERY_URL}
