"""The model card of a registered version: Markdown rendered from what the pipeline measured.

Promote renders it for every version it registers and validates (champion, challenger or no alias),
writes it to reports/model_card.md and logs it beside the version's model files (`model_card.md`, in
digitops.promote), so that `models:/<name>/<version>` brings it along; package copies it into the BentoML
model and the service answers it at `GET /model`.

Every figure comes from a file or a registry tag: metrics/eval.json (per source and digit, confusions,
robustness, calibration), metrics/train.json (the temperature), reports/split_counts.csv (the data),
the prepared files (their SHA-256), the promote report and the version's tags (the decision), and the
serving benchmark file when there is one. Nothing in it is written about a particular model: the known
limitations are derived from the evaluation with the thresholds below. Figures are written by the
formatters `percent`, `points`, `count` and `decimal` only, so that a test can read them back.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from digitops.data.sources import get_source
from digitops.evaluate import CALIBRATION, OVERALL, REAL_WORLD, ROBUSTNESS
from digitops.fingerprint import file_sha256

PREPARED_FILES = ("train.npz", "val.npz", "test.npz")
SPLITS = ("train", "val", "test")
DRAWINGS = "drawings"  # the contributed drawings' source (digitops.data.sources.DRAWINGS)
MISSING = "—"  # a figure that was not measured: never a made-up one

# Thresholds of the known limitations: what the evaluation must show for the card to say it in words.
ROBUSTNESS_DROP = 0.05  # a perturbation costing more accuracy than this is named
ECE_LIMIT = 0.01  # the calibration target: a source above it is named
SMALL_TEST_SET = 1000  # a source with fewer test digits: one digit moves its accuracy by 0.1 pp or more
CONFUSIONS_NAMED = 3  # the most frequent confusions named in words (the table lists them all)


def percent(value: float) -> str:
    """A share as a percentage with two decimals: 0.99346 -> '99.35%'."""
    return f"{100 * value:.2f}%"


def points(change: float) -> str:
    """A change of a share in percentage points, signed: -0.0321 -> '-3.21 pp'."""
    return f"{100 * change:+.2f} pp"


def count(value: int) -> str:
    """A count with thousands separators: 15303 -> '15,303'."""
    return f"{int(value):,}"


def decimal(value: float, digits: int = 4) -> str:
    """A plain number (the temperature) with `digits` decimals."""
    return f"{value:.{digits}f}"


@dataclass(frozen=True)
class CardInputs:
    """What the pipeline measured, as read from its files (`read_card_inputs`)."""

    evaluation: Mapping[str, Any]  # metrics/eval.json
    training: Mapping[str, Any]  # metrics/train.json
    split_counts: Sequence[Mapping[str, Any]]  # reports/split_counts.csv rows: source, split, label, count
    prepared_sha256: Mapping[str, str]  # prepared file name -> SHA-256
    benchmark: Mapping[str, Any] | None  # the serving benchmark, None when there is none
    benchmark_file: str  # where the benchmark was looked for, as the card names it


def read_card_inputs(
    metrics_dir: Path, reports_dir: Path, prepared_dir: Path, benchmark_file: Path
) -> CardInputs:
    """Read the pipeline's outputs the card is rendered from; a missing benchmark file is no error."""
    with (reports_dir / "split_counts.csv").open(newline="") as handle:
        rows = [{**row, "count": int(row["count"])} for row in csv.DictReader(handle)]
    return CardInputs(
        evaluation=json.loads((metrics_dir / "eval.json").read_text()),
        training=json.loads((metrics_dir / "train.json").read_text()),
        split_counts=rows,
        prepared_sha256={name: file_sha256(prepared_dir / name) for name in PREPARED_FILES},
        benchmark=json.loads(benchmark_file.read_text()) if benchmark_file.is_file() else None,
        benchmark_file=str(benchmark_file),
    )


def source_names(inputs: CardInputs) -> list[str]:
    """The sources of the data mix that eval.json has figures for, in its order. Its other entries
    (overall, the summaries, and any section added later) are never taken for a source."""
    mix = {row["source"] for row in inputs.split_counts}
    return [
        name
        for name, figures in inputs.evaluation.items()
        if name in mix and isinstance(figures, Mapping) and {"accuracy", "digits"} <= figures.keys()
    ]


def render_card(inputs: CardInputs, report: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    """The Markdown model card of the version that `report` (promote's) registered.

    Args:
        inputs: the pipeline's measurements (read_card_inputs).
        report: reports/promotion.json, the decision promote just made about the version.
        tags: the version's registry tags after that decision.
    """
    name, version = report["registered_model"], report["candidate"]["version"]
    sections = [
        _header(name, version, report, tags, inputs.training),
        _intended_use(),
        _data(inputs),
        _evaluation(inputs),
        _promotion(report, tags),
        _benchmark(inputs),
        _limitations(inputs),
    ]
    return "\n\n".join(section.strip("\n") for section in sections) + "\n"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _temperature(training: Mapping[str, Any]) -> float | None:
    calibration = training.get("calibration")
    return None if not calibration else calibration.get("temperature")


def _header(name, version, report, tags, training) -> str:
    temperature = _temperature(training)
    alias = report.get("alias")
    lines = [
        f"# Model card: {name} version {version}",
        "",
        f"- Registered model: `{name}`, version {version} (MLflow run `{report['candidate']['run_id']}`)",
        f"- Alias given by promote: {alias or 'none'}; the champion after it: version "
        f"{report.get('champion') or 'none'}",
        f"- Model file (`model.onnx`) SHA-256: `{tags.get('model_sha256', MISSING)}`",
        "- Calibration: "
        + (
            "none (metrics/train.json has no temperature)"
            if temperature is None
            else f"temperature {decimal(temperature)} applied in the model (fitted on the validation split)"
        ),
    ]
    return "\n".join(lines)


def _intended_use() -> str:
    return """## Intended use

Reading handwritten digits 0-9, one digit per image: a digit drawn on the service's page, a crop of a
written or scanned digit (`POST /classify`, `POST /digit`: PNG, JPEG and the other formats Pillow reads),
digits already in MNIST format (`POST /digits`: 28x28 uint8 arrays), or a photo of a few digits written on
plain paper (`POST /read`, which finds each digit's ink first). Every image goes through the normaliser the
training digits went through (grey, white ink on black, fitted into 20x20 pixels, centred by mass in
28x28). Each answer holds the ten probabilities; a low top probability is the cue to ask a person.

### Out of scope

- Letters, punctuation, symbols, and digits of other scripts (Eastern Arabic, Devanagari, Chinese...): the
  model has no "not a digit" answer and reads anything as one of 0-9.
- Whole forms, pages or tables: `POST /read` finds digits on plain paper, it does not understand a
  layout; a string of digits must be cut into single digits before `POST /classify`.
- Printed or typed digits, seven-segment displays, licence plates: every training source is handwritten.
- Decisions about a person (exams, cheques, ballots) without a human check of the uncertain answers."""


def _data(inputs: CardInputs) -> str:
    totals: dict[str, dict[str, int]] = {}
    for row in inputs.split_counts:
        per_split = totals.setdefault(row["source"], dict.fromkeys(SPLITS, 0))
        per_split[row["split"]] = per_split.get(row["split"], 0) + row["count"]
    rows = []
    for source, per_split in totals.items():
        try:
            licence = getattr(get_source(source), "license", "") or "none recorded"
        except KeyError:
            licence = "not in the source registry"
        rows.append([source, *(count(per_split.get(split, 0)) for split in SPLITS), licence])
    rows.append(["all", *(count(sum(t.get(split, 0) for t in totals.values())) for split in SPLITS), ""])
    drawings = totals.get(DRAWINGS)
    if drawings:
        contributed = (
            f"Contributed drawings (source `{DRAWINGS}`, reviewed and accepted with `digitops drawings "
            f"review`): {count(sum(drawings.values()))} in this mix."
        )
    else:
        contributed = "Contributed drawings: none in this mix."
    hashes = _table(
        ["prepared file", "SHA-256"], [[name, f"`{sha}`"] for name, sha in inputs.prepared_sha256.items()]
    )
    return "\n\n".join(
        [
            "## Data\n\nDigits per source and split (reports/split_counts.csv); official test sets stay "
            "in test.",
            _table(["source", *SPLITS, "licence"], rows),
            contributed,
            "### Prepared files",
            hashes,
        ]
    )


def _evaluation(inputs: CardInputs) -> str:
    evaluation, training = inputs.evaluation, inputs.training
    sources = source_names(inputs)
    calibration = evaluation.get(CALIBRATION) or {}
    temperature = _temperature(training)
    parts = ["## Evaluation on the test split"]
    if temperature is not None:
        fit = training["calibration"]
        parts.append(
            f"Temperature {decimal(temperature)}, fitted on the validation split: ECE there "
            f"{_figure(fit.get('val_ece_before'))} before, {_figure(fit.get('val_ece_after'))} after. "
            "ECE is the expected calibration error: how far the top probability is from the share "
            "read right, on average."
        )
    rows = []
    for name in [*sources, OVERALL]:
        figures = evaluation[name]
        rows.append(
            [
                name,
                count(figures["count"]),
                percent(figures["accuracy"]),
                percent(figures["macro_f1"]),
                percent(figures["ece"]),
                _figure((calibration.get(name) or {}).get("ece_before")),
            ]
        )
    parts.append(
        _table(["source", "test digits", "accuracy", "macro-F1", "ECE", "ECE before calibration"], rows)
    )
    real_world = evaluation.get(REAL_WORLD)
    if real_world:
        parts.append(
            f"Real-world sources ({', '.join(real_world['sources'])}) pooled: accuracy "
            f"{percent(real_world['accuracy'])} on {count(real_world['count'])} test digits; the weakest, "
            f"{real_world['worst_source']}: {percent(real_world['worst_accuracy'])}."
        )
    digit_rows = []
    overall_digits = evaluation[OVERALL]["digits"]
    for digit in sorted(overall_digits, key=int):
        cells = [
            (evaluation[name]["digits"].get(digit) or {}).get("accuracy") for name in [OVERALL, *sources]
        ]
        digit_rows.append([digit, count(overall_digits[digit]["count"]), *(_figure(cell) for cell in cells)])
    parts.append("### Accuracy per digit")
    parts.append(_table(["digit", "test digits", OVERALL, *sources], digit_rows))
    confusions = evaluation[OVERALL].get("confusions") or []
    parts.append("### Most frequent confusions (all sources)")
    if confusions:
        parts.append(
            _table(
                ["true digit", "read as", "times"],
                [[str(c["true"]), str(c["predicted"]), count(c["count"])] for c in confusions],
            )
        )
    else:
        parts.append("No test digit was read wrong.")
    robust = evaluation.get(ROBUSTNESS) or {}
    parts.append("### Robustness")
    if "clean" in robust:
        parts.append("Accuracy on a stratified subset of the test digits, as they are and perturbed.")
        parts.append(
            _table(
                ["perturbation", "accuracy", "change"],
                [[key, percent(value), points(value - robust["clean"])] for key, value in robust.items()],
            )
        )
    else:
        parts.append("Not measured.")
    return "\n\n".join(parts)


def _promotion(report: Mapping[str, Any], tags: Mapping[str, str]) -> str:
    before = report.get("champion_before")
    lines = [
        "## Promotion",
        "",
        f"- Decision: {_decision(report)}",
        f"- Champion before: {'version ' + before['version'] if before else 'none (the first candidate)'}",
    ]
    validation = report.get("infra_validation")
    if validation:
        if "error" in validation:
            lines.append(f"- Infra validation: failed: {validation['error']}")
        else:
            lines.append(
                f"- Infra validation ({validation.get('runtime', 'ONNX Runtime')}): "
                f"{'passed' if validation['passed'] else 'failed'}; "
                f"{count(validation['mismatched_digits'])} of {count(validation['digits'])} test digits "
                "answered differently from the Keras model, largest probability difference "
                f"{validation['max_probability_difference']:.2e} on the known-answer digits (tolerance "
                f"{validation['tolerance']:.0e})"
            )
    for key, text in (("promoted.at", "Promoted at"), ("promoted.reason", "Promoted because")):
        if key in tags:
            lines.append(f"- {text}: {tags[key]}")
    lines += ["", "The gate's checks:", ""]
    lines += [f"- {reason}" for reason in report.get("reasons", [])]
    return "\n".join(lines)


def _decision(report: Mapping[str, Any]) -> str:
    alias = report.get("alias")
    if report.get("promoted"):
        return f"promoted: alias `{alias}`"
    if alias:
        return f"not promoted: alias `{alias}`"
    return "not promoted: no alias"


def _benchmark(inputs: CardInputs) -> str:
    benchmark = inputs.benchmark or {}
    sweeps = {
        variant: rows
        for variant, rows in (benchmark.get("sweeps") or {}).items()
        if variant.startswith("digits /") and "," not in variant  # the service as it ships
    }
    if not sweeps:
        return "## Serving benchmark\n\nNot measured for this build."
    machine = benchmark.get("machine") or {}
    rows = [
        [
            variant.removeprefix("digits "),
            count(row["concurrency"]),
            f"{row['images_per_s']:,.1f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            count(row["errors"]),
        ]
        for variant, variant_rows in sweeps.items()
        for row in variant_rows
    ]
    return "\n\n".join(
        [
            "## Serving benchmark",
            f"From {inputs.benchmark_file}: the service of this build on {machine.get('cpus', '?')} CPUs, "
            f"serving the BentoML model `{benchmark.get('model', '?')}` (the benchmark does not record its "
            "version; the service's own cost does not depend on the weights).",
            _table(["route", "clients", "images/s", "p50 ms", "p99 ms", "errors"], rows),
        ]
    )


def _limitations(inputs: CardInputs) -> str:
    """Known limitations in words, each derived from the evaluation (or the data mix)."""
    evaluation, split_counts = inputs.evaluation, inputs.split_counts
    sources = source_names(inputs)
    overall = evaluation[OVERALL]
    items = []
    if len(sources) > 1:
        weakest = min(sources, key=lambda name: evaluation[name]["accuracy"])
        items.append(
            f"It is least accurate on {weakest}: {percent(evaluation[weakest]['accuracy'])}, against "
            f"{percent(overall['accuracy'])} overall."
        )
    digits = overall["digits"]
    if digits:
        worst = min(digits, key=lambda digit: digits[digit]["accuracy"])
        items.append(
            f"Of the ten digits it reads {worst} worst: {percent(digits[worst]['accuracy'])} of "
            f"{count(digits[worst]['count'])} test digits."
        )
    confusions = (overall.get("confusions") or [])[:CONFUSIONS_NAMED]
    if confusions:
        named = ", ".join(
            f"{c['true']} read as {c['predicted']} ({count(c['count'])} times)" for c in confusions
        )
        items.append(f"Its most frequent mistakes: {named}.")
    robust = evaluation.get(ROBUSTNESS) or {}
    clean = robust.get("clean")
    if clean is not None:
        drops = [(key, value) for key, value in robust.items() if clean - value > ROBUSTNESS_DROP]
        for key, value in sorted(drops, key=lambda item: item[1]):
            items.append(
                f"Digits {_perturbation(key)}: accuracy {percent(value)}, {points(value - clean)} from "
                f"{percent(clean)} as they are."
            )
        if not drops:
            items.append(
                f"Every perturbation tested ({', '.join(key for key in robust if key != 'clean')}) keeps "
                f"the change of accuracy above {points(-ROBUSTNESS_DROP)}."
            )
    off = [name for name in [*sources, OVERALL] if evaluation[name]["ece"] > ECE_LIMIT]
    if off:
        named = ", ".join(f"{name} {percent(evaluation[name]['ece'])}" for name in off)
        items.append(
            f"Its confidence is off by more than {percent(ECE_LIMIT)} on average (ECE) on: {named}; read "
            "its probabilities there with care."
        )
    for name in sources:
        if evaluation[name]["count"] < SMALL_TEST_SET:
            items.append(
                f"The figures on {name} rest on {count(evaluation[name]['count'])} test digits only: one "
                f"digit moves its accuracy by {points(1 / evaluation[name]['count'])}."
            )
    if not any(row["source"] == DRAWINGS and row["count"] for row in split_counts):
        items.append(
            "No contributed drawing was in its training or test data: how it reads digits drawn with a "
            "mouse or a finger on the page is not measured here."
        )
    return "## Known limitations\n\n" + "\n".join(f"- {item}" for item in items)


def _perturbation(key: str) -> str:
    """robustness key -> words: rotate_-15 -> 'rotated by -15 degrees'."""
    kind, _, amount = key.rpartition("_")
    words = {
        "rotate": f"rotated by {amount} degrees",
        "shift_x": f"shifted {amount} pixels sideways",
        "shift_y": f"shifted {amount} pixels up or down",
        "noise": f"with Gaussian noise of {amount} grey levels",
    }
    if key == "inverted":
        return "with inverted colours (dark ink on light)"
    return words.get(kind, f"perturbed ({key})")


def _figure(value: float | None) -> str:
    """A share as `percent`, or MISSING when it was not measured."""
    return MISSING if value is None else percent(value)
