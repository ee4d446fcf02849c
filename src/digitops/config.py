"""Typed, frozen configuration mirroring params.yaml, loaded once by each stage with `load_params()`.

A missing key, an unknown key or a value of the wrong type is an error that names the key. The library
itself never reads params.yaml: stages pass it the section it needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, ValidationError, field_validator

from digitops.data.sources import SOURCES
from digitops.errors import ConfigError

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PathsParams(_Section):
    """Where stages write, relative to the repository root."""

    raw: Path  # download cache for original files (unused when DIGITOPS_DATA_MIRROR is set)
    interim: Path  # ingest -> <interim>/<source>.npz
    prepared: Path  # split -> train/val/test.npz + manifest.parquet
    reports: Path  # validation report, split counts


class BaseParams(_Section):
    seed: NonNegativeInt
    paths: PathsParams


class IngestParams(_Section):
    sources: tuple[str, ...] = Field(min_length=1)
    # Cap per source and official split, stratified by label; under 10 a digit would go missing.
    max_per_split: Annotated[int, Field(ge=10)] | None

    @field_validator("sources")
    @classmethod
    def _known_and_unique(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [name for name in sources if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; known sources: {sorted(SOURCES)}")
        if len(set(sources)) != len(sources):
            raise ValueError(f"a source is listed twice: {list(sources)}")
        return sources


class ValidateParams(_Section):
    min_class_fraction: Fraction  # each digit's share of a source's split must lie in [min, max]
    max_class_fraction: Fraction
    min_peak_ink: int = Field(ge=0, le=255)  # an image whose brightest pixel is darker counts as blank
    max_border_mean: float = Field(ge=0, le=255)  # MNIST style: the 4-px border is (nearly) black
    max_centre_offset: float = Field(gt=0)  # pixels between an image's centre of mass and (14, 14)


class SplitParams(_Section):
    val_fraction: float = Field(gt=0.0, lt=1.0)


class Params(_Section):
    base: BaseParams
    ingest: IngestParams
    validate_: ValidateParams = Field(alias="validate")
    split: SplitParams


def load_params(path: str | os.PathLike = "params.yaml") -> Params:
    """Read and check params.yaml.

    Raises:
        ConfigError: the file is missing or not YAML, or a key is missing, unknown or invalid
            (the message names the key, e.g. `ingest.max_per_split`).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read {path}: {error}") from error
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or '(top level)'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
