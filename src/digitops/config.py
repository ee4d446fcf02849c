"""Typed, frozen configuration mirroring params.yaml, loaded once by each stage with `load_params()`.

A missing key, an unknown key or a value of the wrong type is an error that names the key. The library
itself never reads params.yaml: stages pass it the section it needs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeInt,
    PositiveInt,
    ValidationError,
    field_validator,
    model_validator,
)

from digitops.data.sources import SOURCES
from digitops.digits import NUM_CLASSES
from digitops.errors import ConfigError

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]


def _ordered(value: tuple[float, float]) -> tuple[float, float]:
    if value[0] > value[1]:
        raise ValueError(f"a range is written [low, high]; got {list(value)}")
    return value


def _range(ge: float, le: float) -> Any:
    """[low, high] within [ge, le]: each digit draws its value from it."""
    bound = Annotated[float, Field(ge=ge, le=le)]
    return Annotated[tuple[bound, bound], AfterValidator(_ordered)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _known_sources(names: tuple[str, ...]) -> tuple[str, ...]:
    """`names` unchanged if each is a source of the registry, listed once; else ValueError naming them."""
    unknown = [name for name in names if name not in SOURCES]
    if unknown:
        raise ValueError(f"unknown source(s) {unknown}; known sources: {sorted(SOURCES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"a source is listed twice: {list(names)}")
    return names


class PathsParams(_Section):
    """Where stages write, relative to the repository root."""

    raw: Path  # download cache for original files (unused when DIGITOPS_DATA_MIRROR is set)
    feedback: Path  # contributed drawings (the service's store; the `drawings` source reads it)
    interim: Path  # ingest -> <interim>/<source>.npz
    prepared: Path  # split -> train/val/test.npz + manifest.parquet
    augmented: Path  # augment -> train.npz
    reports: Path  # validation report, split counts
    models: Path  # candidate.keras, candidate.onnx, run.json
    metrics: Path  # train.json, eval.json
    plots: Path  # train/, eval/


class BaseParams(_Section):
    seed: NonNegativeInt
    paths: PathsParams


class IngestParams(_Section):
    sources: tuple[str, ...] = Field(min_length=1)
    # Cap per source and official split, stratified by label; under one per class a digit would go missing.
    max_per_split: Annotated[int, Field(ge=NUM_CLASSES)] | None
    drawings_test_fraction: Fraction  # share of contributed drawings held out as test, chosen by content hash
    hash_test_fraction: Fraction  # the same for published sources without an official test split (bhmsds)

    @field_validator("sources")
    @classmethod
    def _known_and_unique(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        _known_sources(sources)
        if all(SOURCES[name].contributed for name in sources):
            raise ValueError(
                f"{list(sources)} are all contributed sources, which the promotion gate does not compare: "
                "list a published one too"
            )
        return sources


class ValidateParams(_Section):
    min_class_fraction: Fraction  # each digit's share of a source's split must lie in [min, max]
    max_class_fraction: Fraction
    min_peak_ink: int = Field(ge=0, le=255)  # an image whose brightest pixel is darker counts as blank
    max_border_mean: float = Field(ge=0, le=255)  # MNIST style: the 4-px border is (nearly) black
    max_centre_offset: float = Field(gt=0)  # pixels between an image's centre of mass and (14, 14)


class SplitParams(_Section):
    val_fraction: float = Field(gt=0.0, lt=1.0)


class AffineParams(_Section):
    p: Fraction
    rotate: float = Field(ge=0)  # degrees, either way
    shear: float = Field(ge=0)  # degrees, either way
    scale: tuple[float, float]  # zoom range
    shift_px: int = Field(ge=0)  # pixels, either way


class ElasticParams(_Section):
    p: Fraction
    alpha: float = Field(ge=0)  # displacement strength
    sigma: float = Field(gt=0)  # smoothness of the displacement field


class NoiseParams(_Section):
    p: Fraction
    std: tuple[float, float]  # Gaussian noise std range, as a fraction of 255


class DropoutParams(_Section):
    p: Fraction
    holes: tuple[int, int]  # how many rectangles are blacked out
    size_px: tuple[int, int]  # their side, in pixels


class BrightnessContrastParams(_Section):
    p: Fraction
    limit: Fraction  # brightness and contrast change, either way


# Real-world conditions: how other writers, pens, scanners and cameras change a digit.


class SlantParams(_Section):
    p: Fraction
    shear: _range(-45, 45)  # degrees of horizontal shear (italic handwriting); the rows stay where they are


class ThickerParams(_Section):
    p: Fraction
    kernel: Annotated[int, Field(ge=2, le=5)]  # side of the dilation's elliptic kernel, in pixels


class ThinnerParams(_Section):
    p: Fraction
    kernel: Annotated[int, Field(ge=2, le=5)]  # side of the erosion's elliptic kernel, in pixels
    min_ink: Fraction  # keep the digit as it was if erosion would leave less than this share of its ink


class GaussianBlurParams(_Section):
    p: Fraction
    sigma: _range(0.1, 3)  # pixels


class MotionBlurParams(_Section):
    p: Fraction
    kernel: tuple[int, int]  # [shortest, longest] streak in pixels, odd numbers from 3

    @field_validator("kernel")
    @classmethod
    def _odd_from_three(cls, kernel: tuple[int, int]) -> tuple[int, int]:
        if kernel[0] > kernel[1] or any(side < 3 or side % 2 == 0 for side in kernel):
            raise ValueError(f"[shortest, longest] odd lengths from 3; got {list(kernel)}")
        return kernel


class LowResolutionParams(_Section):
    p: Fraction
    scale: _range(0.25, 1)  # the 28 px side is resized to this share and back (16/28 is USPS' 16x16)


class BinarizeParams(_Section):
    p: Fraction
    threshold: _range(0, 254)  # grey level (0-255): above it ink (255), at or below it background (0)


class ResidueParams(_Section):
    p: Fraction
    level: _range(0, 128)  # brightest grey (0-255) of the faint paper texture left in the background


class AugmentParams(_Section):
    copies: PositiveInt  # augmented copies per training digit; the originals are kept beside them
    workers: NonNegativeInt  # processes; 0 = one per core (the output does not depend on it)
    preview: PositiveInt  # digits shown in the preview grid
    affine: AffineParams
    elastic: ElasticParams
    noise: NoiseParams
    dropout: DropoutParams
    brightness_contrast: BrightnessContrastParams
    invert_p: Fraction  # probability of inverting a digit to black on white
    slant: SlantParams
    thicker: ThickerParams
    thinner: ThinnerParams
    gaussian_blur: GaussianBlurParams
    motion_blur: MotionBlurParams
    low_resolution: LowResolutionParams
    binarize: BinarizeParams
    residue: ResidueParams


# AugmentParams' real-world sections, in the order digitops.augment.build_pipeline applies them.
REAL_WORLD_AUGMENTATIONS = (
    "slant",
    "thicker",
    "thinner",
    "gaussian_blur",
    "motion_blur",
    "low_resolution",
    "binarize",
    "residue",
)


class SourceMixParams(_Section):
    """How many of one source's training rows (originals and augmented copies) each epoch draws.

    `share` scales the source (0.3: a random 30% each epoch; 2.5: every row twice, plus half of them once
    more), `max_per_epoch` caps it; with both, the smaller count wins.
    """

    share: float | None = Field(default=None, gt=0, le=100)
    max_per_epoch: PositiveInt | None = None

    @model_validator(mode="after")
    def _one_at_least(self) -> SourceMixParams:
        if self.share is None and self.max_per_epoch is None:
            raise ValueError("give share, max_per_epoch or both")
        return self


class TrainParams(_Section):
    model: str  # a name from digitops.models.list_models(); checked when the train stage builds it
    model_kwargs: dict[str, Any]  # passed to the model's factory, e.g. {width: 32}
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: float = Field(gt=0)
    clipnorm: float = Field(gt=0)  # Adam's gradient-norm clipping
    lr_schedule: Literal["cosine", "plateau"]  # cosine decay, or ReduceLROnPlateau on val accuracy
    early_stopping_patience: PositiveInt  # epochs without a better val accuracy before stopping
    label_smoothing: Fraction
    calibrate: bool  # fit a temperature on the validation split and apply it in the model (calibration.py)
    # tf.distribute: default (one device), mirrored (every GPU of this machine), multi_worker_mirrored
    # (several machines, described by TF_CONFIG). batch_size is the global batch, split across replicas.
    distribute: Literal["default", "mirrored", "multi_worker_mirrored"]
    # Per-source sampling, redrawn each epoch (digitops.train.epoch_indices), so that many digits from few
    # writers do not dominate and a small source can count more. Sources not listed are used whole; a
    # listed source absent from the data is skipped.
    source_mix: dict[str, SourceMixParams]

    @field_validator("source_mix")
    @classmethod
    def _known_sources(cls, mix: dict[str, SourceMixParams]) -> dict[str, SourceMixParams]:
        unknown = [name for name in mix if name not in SOURCES]
        if unknown:
            raise ValueError(f"unknown source(s) {unknown}; known sources: {sorted(SOURCES)}")
        return mix


class RobustnessParams(_Section):
    samples: PositiveInt  # test digits per perturbation (a stratified subset)
    rotations: tuple[float, ...]  # degrees
    shifts: tuple[int, ...]  # pixels, applied along x and along y
    noise_std: float = Field(ge=0)  # Gaussian noise, in grey levels (0-255)


class EvaluateParams(_Section):
    batch_size: PositiveInt
    calibration_bins: PositiveInt  # bins of the expected calibration error
    misclassified_grid: PositiveInt  # how many misclassified test digits the grid shows
    top_confusions: PositiveInt  # most frequent (true, predicted) mistakes listed per source
    # The benchmark sources; every other source in the test split is summarised as real-world handwriting.
    # The one place that sorts sources so: nothing else special-cases a source by name.
    lab_sources: tuple[str, ...]
    robustness: RobustnessParams

    @field_validator("lab_sources")
    @classmethod
    def _known_and_unique(cls, sources: tuple[str, ...]) -> tuple[str, ...]:
        return _known_sources(sources)


class TrackingParams(_Section):
    experiment: str = Field(min_length=1)  # MLflow experiment that every pipeline run logs to


class PromoteParams(_Section):
    """The promotion gate (digitops.promote.should_promote) and the registry it writes to."""

    registered_model: str = Field(min_length=1)  # MLflow registered model, e.g. "digits"
    metric: Literal["accuracy", "macro_f1"]  # compared per source and overall, higher is better
    min_improvement: float = Field(ge=0)  # overall gain over the champion needed to replace it
    max_source_regression: float = Field(ge=0)  # largest drop allowed on any source of the test split
    max_digit_regression: Fraction  # largest drop in one digit's accuracy on any source of the test split
    min_digit_support: PositiveInt  # test digits of that digit and source needed for the per-digit check
    floors: dict[str, Fraction]  # absolute minimum per source or "overall", e.g. {overall: 0.98}
    known_answers: PositiveInt  # test digits whose probabilities the served model must reproduce closely
    # largest probability difference allowed on them between the served (ONNX) model and the Keras one
    parity_tolerance: float = Field(gt=0, le=0.01)

    @field_validator("floors")
    @classmethod
    def _known_names(cls, floors: dict[str, float]) -> dict[str, float]:
        # "overall" is digitops.evaluate.OVERALL (not imported: the library imports this module).
        unknown = [name for name in floors if name != "overall" and name not in SOURCES]
        if unknown:
            raise ValueError(
                f"floor for unknown source(s) {unknown}; floors may name 'overall' or a source of the "
                f"registry: {sorted(SOURCES)}"
            )
        contributed = [name for name in floors if name in SOURCES and SOURCES[name].contributed]
        if contributed:
            raise ValueError(
                f"floor for contributed source(s) {contributed}: the gate does not compare them "
                "(metrics/eval.json reports them apart)"
            )
        return floors


class ServeParams(_Section):
    """The BentoML service: adaptive batching and the limits on each request."""

    max_batch_size: PositiveInt  # images per model call when requests are coalesced
    max_latency_ms: PositiveInt  # a request waiting longer than this for the model is refused (503)
    # The limits a client must keep to as well (InputLimits.from_serve). Their defaults are declared here
    # once, for a client run where there is no params.yaml (`digitops predict` outside the repository).
    max_images_per_request: PositiveInt = 256
    max_image_bytes: PositiveInt = 10_000_000  # per uploaded file
    # width x height decoded per digit image (/classify, /digit, /feedback), checked from the header before
    # decoding; a JPEG counts at the reduced size a digit needs (digitops.infer.inputs). A 1024x1024 drawing.
    max_image_pixels: PositiveInt = 1_048_576
    # ... per photo (/read): a 12.5-MP phone photo as PNG; a phone's JPEG, however large, is decoded at the
    # size the segmenter analyses. Each decode holds this many pixels at most, whatever the upload claims.
    max_photo_pixels: PositiveInt = 13_000_000
    max_request_bytes: PositiveInt  # a whole request body; larger ones get 413 before they are read
    workers: PositiveInt  # worker processes, each with its own model, event loop and batcher
    threads_per_worker: PositiveInt  # ONNX Runtime's intra-op threads in each worker
    # Digit uploads a worker decodes and normalises at once, in threads off its event loop: more wait their
    # turn holding only their bytes, so that memory stays bounded (digitops.serve.decoding).
    max_concurrent_decodes: PositiveInt = 2
    # ... photos it decodes and segments at once, apart from the digits (a digit never waits behind a
    # photo): each holds a decoded photo and the segmenter's working arrays, many times a digit's memory.
    max_concurrent_photos: PositiveInt = 1
    # ONNX Runtime's graph optimisation level (digitops.infer.classifier.OPTIMIZATION_LEVELS)
    graph_optimization: Literal["disabled", "basic", "extended", "all"] = "all"
    # Drift and quality gauges of served digits (digitops.serve.drift; docs/operations.md): each worker keeps
    # its last `drift_window` digits and updates the gauges every `drift_update_every` digits.
    monitoring: bool = True
    drift_window: PositiveInt = 1000
    drift_update_every: PositiveInt = 64
    low_confidence: float = Field(default=0.8, gt=0.0, le=1.0)  # a prediction below it counts as low
    access_log: bool  # BentoML's log line per request (it costs CPU per request; metrics count anyway)
    # Who may POST /feedback (digitops.serve.contributors): auto (a token when DIGITOPS_FEEDBACK_TOKEN is
    # set, else loopback clients only), token, open or off; and how much they may send.
    feedback: Literal["auto", "token", "open", "off"] = "auto"
    feedback_per_client_per_day: PositiveInt = 200  # drawings per client in 24 hours (429 beyond)
    feedback_max_bytes: PositiveInt = 500_000_000  # the feedback folder's cap (507 beyond)
    # Share of requests that the packaged challenger also reads, off the response path, for the shadow
    # metrics (digitops.serve.shadow); 0 leaves it unloaded.
    shadow_fraction: Fraction = 0.0


class ReaderParams(_Section):
    """The string reader /read uses (digitops.reader), trained on lines composed from the split's digits."""

    lines: PositiveInt  # composed training lines, from the train split's digits
    val_lines: PositiveInt  # ... from the validation split's: the line accuracy reported per epoch
    test_lines: PositiveInt  # ... from the test split's: the gate compares the candidate and champion on them
    filters: tuple[PositiveInt, ...] = Field(min_length=5, max_length=5)  # the five convolutions' channels
    context_filters: PositiveInt  # the 1-D convolutions' channels
    epochs: PositiveInt
    batch_size: PositiveInt
    learning_rate: float = Field(gt=0)
    registered_model: str = Field(min_length=1)  # MLflow registered model of readers, alias champion
    min_improvement: float = Field(ge=-1, le=1)  # test lines the candidate must read more of to replace it
    min_line_accuracy: Fraction  # the floor: a reader reading fewer test lines right never serves


class Params(_Section):
    base: BaseParams
    ingest: IngestParams
    validate_: ValidateParams = Field(alias="validate")
    split: SplitParams
    augment: AugmentParams
    train: TrainParams
    evaluate: EvaluateParams
    tracking: TrackingParams
    promote: PromoteParams
    reader: ReaderParams
    serve: ServeParams

    @model_validator(mode="after")
    def _contributions_capped(self) -> Params:
        # No cap by default behind the user's back: a contributed source in the mix must have its cap in
        # params.yaml, where the user sees it (whoever contributes must not decide how much it trains on).
        for name in self.ingest.sources:
            entry = self.train.source_mix.get(name)
            if SOURCES[name].contributed and (entry is None or entry.max_per_epoch is None):
                raise ValueError(
                    f"train.source_mix.{name}.max_per_epoch is required while ingest.sources lists "
                    f"{name}: it caps how many contributed digits an epoch draws, e.g. "
                    f"{name}: {{max_per_epoch: 2000}}"
                )
        return self


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
