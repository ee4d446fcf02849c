"""The `digitops` command. `digitops predict`: digits in image files, folders and Kaggle CSVs -> a CSV.
`digitops drawings`: review contributed drawings before they can train a model. `digitops rollback`: serve the
previous champion again.

    digitops predict scans/ seven.png --out predictions.csv      # path,digit,confidence,label
    digitops predict test.csv --out submission.csv               # Kaggle's ImageId,Label
    digitops predict scans/ --url http://localhost:3000          # ask a running service instead
    digitops drawings list                                       # what waits in quarantine
    digitops drawings sheet --out sheet.png                      # look at it
    digitops drawings accept 3f2a9c1d 77be0e21                   # into the training pool
    digitops drawings reject --client 203.0.113.7                # delete what one sender sent
    digitops rollback --reason "reads 7s as 1s on the page"      # @champion back to the previous one

Argparse, help and exit codes only: the work is `digitops.predict`'s. Subcommands live in `build_parser`;
each is one function that takes the parsed arguments and returns an exit code.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from digitops.config import load_params
from digitops.errors import DigitopsError
from digitops.infer.inputs import InputLimits
from digitops.predict import (
    ServiceModel,
    StrictError,
    UsageError,
    choose_format,
    find_inputs,
    iter_digits,
    local_model,
    open_output,
    predict,
)

EXIT_OK = 0  # every input predicted, or the bad ones reported and skipped
EXIT_ERROR = 1  # a bad input with --strict, a malformed CSV, no model, the service unreachable or failing
EXIT_USAGE = 2  # wrong arguments, or no inputs found
PARAMS_FILE = "params.yaml"  # in the working directory, as the service looks for it

EXIT_CODES_HELP = f"""exit codes:
  {EXIT_OK}  done (inputs that could not be read, or blank images, are reported on stderr and skipped)
  {EXIT_ERROR}  a bad input with --strict; a malformed Kaggle CSV; an invalid params file; the model cannot
     be loaded; the service is unreachable or answers an error
  {EXIT_USAGE}  wrong arguments, or no inputs found"""

PREDICT_HELP = f"""Predict the digit in every image of PATH... and write one CSV.

PATH may be an image file (PNG, JPEG, anything Pillow reads), a folder (searched recursively, in sorted
order; only files with an image extension are read, the rest are counted and ignored), or a Kaggle
digit-recognizer CSV (a header of pixel0..pixel783, 0-255 white ink on black, with or without a leading
label column; a CSV must be named explicitly, CSVs inside folders are ignored).

Output (--format auto):
  one Kaggle CSV alone    Kaggle's submission format: ImageId,Label (ImageId = 1-based row in the file)
  anything else           path,digit,confidence,label: one row per image; a CSV row is named file.csv#N
                          (N = its 1-based row, Kaggle's ImageId); label is the CSV's label, else empty

{EXIT_CODES_HELP}"""

PARAMS_HELP = f"""the params file whose serve section gives the service's limits (files over its byte or pixel
limit are skipped, as the service refuses them; --url sends at most max_images_per_request images per
request) (default: $DIGITOPS_PARAMS, else ./{PARAMS_FILE} if there is one, else the defaults that
digitops.config.ServeParams declares)"""


def run_predict(args: argparse.Namespace) -> int:
    """`digitops predict`: see PREDICT_HELP."""
    limits = _limits(args.params)
    inputs = find_inputs(args.paths)
    if not inputs.sources:
        missing = "; ".join(f"{problem.name}: {problem.reason}" for problem in inputs.missing)
        why = missing or f"{inputs.ignored_files} files, none with an image extension"
        print(f"error: no inputs found in {' '.join(args.paths)} ({why})", file=sys.stderr)
        return EXIT_USAGE
    output_format = choose_format(inputs.sources, args.format)
    if args.strict and inputs.missing:
        raise StrictError(f"{inputs.missing[0].name}: {inputs.missing[0].reason} (--strict)")
    for problem in inputs.missing:
        print(f"skipped {problem.name}: {problem.reason}", file=sys.stderr)

    model = (
        ServiceModel(args.url, limits.max_images) if args.url else local_model(args.model_file, args.model)
    )
    progress = not args.quiet and sys.stderr.isatty()
    warn = _progress_safe_print if progress else (lambda line: print(line, file=sys.stderr))
    digits = _with_progress(
        iter_digits(inputs.sources, limits, uploads=bool(args.url)), inputs.total, progress
    )
    try:
        with open_output(args.out) as output:
            summary = predict(digits, model, output_format, output, strict=args.strict, warn=warn)
    finally:
        model.close()
    summary.skipped += len(inputs.missing)
    summary.ignored_files = inputs.ignored_files
    if not args.quiet:
        written = "" if args.out in (None, "-") else f"; written to {args.out}"
        print(summary.line(model.description) + written, file=sys.stderr)
    return EXIT_OK


def _limits(params: str | None) -> InputLimits:
    """The service's limits: see PARAMS_HELP."""
    path = params or os.environ.get("DIGITOPS_PARAMS")
    if path is None:
        if not Path(PARAMS_FILE).exists():
            return InputLimits.from_serve(None)  # outside the repository
        path = PARAMS_FILE
    elif not Path(path).exists():
        raise UsageError(f"the params file {path} does not exist (--params, or $DIGITOPS_PARAMS)")
    return InputLimits.from_serve(load_params(path).serve)


def _with_progress(items: Iterable, total: int, enabled: bool) -> Iterator:
    """`items`, counted on a progress bar on stderr when `enabled`."""
    from tqdm import tqdm

    with tqdm(total=total, unit="digit", file=sys.stderr, disable=not enabled, leave=False) as bar:
        for item in items:
            yield item
            bar.update()


def _progress_safe_print(line: str) -> None:
    from tqdm import tqdm

    tqdm.write(line, file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitops",
        description="Handwritten-digit recognition from the command line.",
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    predict_parser = commands.add_parser(
        "predict",
        help="predict the digits in image files, folders and Kaggle CSVs",
        description=PREDICT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict_parser.add_argument("paths", nargs="+", metavar="PATH", help="image file, folder or Kaggle CSV")
    predict_parser.add_argument(
        "--out", "-o", metavar="FILE", help="the CSV to write, atomically (default, or '-': stdout)"
    )
    source = predict_parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model",
        default="digits:latest",
        metavar="TAG",
        help="a model in the BentoML store (BENTOML_HOME) (default: digits:latest, the packaged champion)",
    )
    source.add_argument(
        "--model-file", metavar="PATH", help="an .onnx model file instead (models/candidate.onnx)"
    )
    source.add_argument("--url", metavar="URL", help="a running service instead, e.g. http://localhost:3000")
    predict_parser.add_argument(
        "--format",
        choices=("auto", "table", "kaggle"),
        default="auto",
        help="auto (default): kaggle for one Kaggle CSV alone, else table (path,digit,confidence,label)",
    )
    predict_parser.add_argument("--params", metavar="FILE", help=PARAMS_HELP)
    predict_parser.add_argument(
        "--strict", action="store_true", help="stop with exit code 1 at the first unreadable or blank image"
    )
    predict_parser.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="no progress bar and no summary line (problems still shown)",
    )
    predict_parser.set_defaults(handler=run_predict)
    _add_drawings_commands(commands)
    _add_rollback_command(commands)
    return parser


DRAWINGS_HELP = """Review contributed drawings (POST /feedback). The service keeps them in quarantine
(<feedback folder>/incoming); only accepted drawings join the pool that the `drawings` source trains on.
The feedback folder is DIGITOPS_FEEDBACK_DIR, else params.yaml's base.paths.feedback, else data/feedback."""


def _add_drawings_commands(commands) -> None:
    drawings = commands.add_parser(
        "drawings", help="review contributed drawings", description=DRAWINGS_HELP
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = drawings.add_parser("list", help="the drawings waiting in quarantine")
    listing.set_defaults(handler=run_drawings_list)
    sheet = drawings.add_parser("sheet", help="a PNG of the waiting drawings as the model sees them")
    sheet.add_argument("--out", "-o", required=True, metavar="FILE")
    sheet.set_defaults(handler=run_drawings_sheet)
    for action, text in (("accept", "move drawings into the training pool"), ("reject", "delete drawings")):
        parser = drawings.add_parser(action, help=text)
        parser.add_argument("sha256", nargs="*", help="drawings by their sha256 (8 characters or more)")
        parser.add_argument("--client", metavar="ADDRESS", help="every waiting drawing this client sent")
        parser.add_argument("--all", action="store_true", help="every waiting drawing")
        parser.set_defaults(handler=run_drawings_review, action=action)
    remove = drawings.add_parser("remove", help="withdraw everything one client sent, pooled or waiting")
    remove.add_argument("--client", required=True, metavar="ADDRESS")
    remove.set_defaults(handler=run_drawings_remove)
    for parser in (listing, sheet, remove, *(drawings.choices[name] for name in ("accept", "reject"))):
        parser.add_argument(
            "--folder", type=Path, help="the feedback folder (default: see `digitops drawings`)"
        )


def _feedback_folder(args: argparse.Namespace) -> Path:
    from digitops.data.drawings import DEFAULT_FEEDBACK_DIR, feedback_dir

    if args.folder:
        return args.folder
    default = (
        load_params(PARAMS_FILE).base.paths.feedback if Path(PARAMS_FILE).exists() else DEFAULT_FEEDBACK_DIR
    )
    return feedback_dir(default)


def run_drawings_list(args: argparse.Namespace) -> int:
    from digitops.data.review import waiting

    records = waiting(_feedback_folder(args))
    for record in records:
        print(f"{record.sha256[:12]}  label {record.label}  from {record.client or '?'}  {record.received}")
    print(f"{len(records)} drawings waiting", file=sys.stderr)
    return EXIT_OK


def run_drawings_sheet(args: argparse.Namespace) -> int:
    from digitops.data.review import contact_sheet, waiting

    folder = _feedback_folder(args)
    records = waiting(folder)
    contact_sheet(folder, records, Path(args.out))
    print(f"{len(records)} drawings in {args.out}", file=sys.stderr)
    return EXIT_OK


def run_drawings_review(args: argparse.Namespace) -> int:
    from digitops.data import review

    if not (args.sha256 or args.client or args.all):
        raise UsageError(f"name the drawings to {args.action}: sha256 prefixes, --client ADDRESS or --all")
    if args.all and (args.sha256 or args.client):
        raise UsageError("--all takes every waiting drawing: name no others")

    def chosen(records):
        return records if args.all else review.select(records, args.sha256, args.client)

    result = getattr(review, args.action)(_feedback_folder(args), chosen)
    for record, reason in result.refused:
        print(f"{record.sha256[:12]} not accepted: {reason}", file=sys.stderr)
    print(f"{len(result.moved)} drawings {args.action}ed", file=sys.stderr)
    return EXIT_ERROR if result.refused else EXIT_OK


def run_drawings_remove(args: argparse.Namespace) -> int:
    from digitops.data.review import remove_client

    result = remove_client(_feedback_folder(args), args.client)
    print(f"{len(result.moved)} drawings from {args.client} removed", file=sys.stderr)
    return EXIT_OK


ROLLBACK_HELP = """Move the registry's @champion back and package it, so that `make serve` serves it.

Without --to, back to the version the champion replaced (its previous_champion tag); run again, one
further back. The target's ONNX file must reproduce its own Keras model on the test split
(<prepared>/test.npz), as promote checks a candidate, before anything changes. Who (the login name) and
why are recorded as tags on both versions; the version rolled back from is barred from promotion until it is
chosen again with --to (docs/operations.md). Then the champion is packaged as the package stage does, and
<reports>/rollback.json says what was done. Run it in the repository (params.yaml, bentofile.yaml); MLflow's
store is $MLFLOW_TRACKING_URI, else the one <models>/run.json names."""


def _add_rollback_command(commands) -> None:
    rollback = commands.add_parser(
        "rollback",
        help="move @champion back to the previous (or a named) version and package it",
        description=ROLLBACK_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rollback.add_argument(
        "--to", metavar="VERSION", help="the registered version to serve (default: the previous champion)"
    )
    rollback.add_argument("--reason", required=True, metavar="TEXT", help="why: recorded in the registry")
    rollback.add_argument(
        "--skip-validation",
        action="store_true",
        help="do not re-run infra validation (when the test split is not at hand); recorded as skipped",
    )
    rollback.add_argument("--params", default=PARAMS_FILE, metavar="FILE", help="default: ./params.yaml")
    rollback.add_argument("--bentofile", type=Path, default=Path("bentofile.yaml"), metavar="FILE")
    rollback.set_defaults(handler=run_rollback)


def run_rollback(args: argparse.Namespace) -> int:
    """`digitops rollback`: see ROLLBACK_HELP."""
    import getpass
    import json

    import mlflow

    from digitops.io import load_npz, write_json
    from digitops.package import PackagingError
    from digitops.rollback import ParityDigits, RollbackError, repackage, rollback_champion

    if not Path(args.params).exists():
        raise UsageError(f"the params file {args.params} does not exist: run in the repository, or --params")
    params = load_params(args.params)
    paths = params.base.paths
    run_file = paths.models / "run.json"
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri is None and run_file.is_file():
        uri = json.loads(run_file.read_text())["tracking_uri"]
    if uri is None:
        raise RollbackError(f"no MLflow store: set MLFLOW_TRACKING_URI, or run where {run_file} names it")
    mlflow.set_tracking_uri(uri)

    test = None
    if not args.skip_validation:
        split = paths.prepared / "test.npz"
        if not split.is_file():
            raise RollbackError(
                f"no test split at {split} to re-run infra validation on: `dvc pull` or `dvc repro prepare` "
                "first, or --skip-validation"
            )
        arrays = load_npz(split)
        known = params.promote.known_answers
        test = ParityDigits(arrays["images"], arrays["labels"], known, params.base.seed)
    try:
        by = getpass.getuser()
    except OSError:  # no login name and none of LOGNAME, USER, LNAME, USERNAME set
        by = "unknown"
    name = params.promote.registered_model
    report = rollback_champion(
        name, to=args.to, reason=args.reason, by=by, test=test, tolerance=params.promote.parity_tolerance
    )
    print(f"{name}@champion: version {report['from']} -> version {report['to']}", file=sys.stderr)
    try:
        report["package"] = repackage(name, args.bentofile, params.reader.registered_model)
    except PackagingError as error:
        raise RollbackError(
            f"@champion is now version {report['to']}, but packaging it failed (`dvc repro -f package` "
            f"packages it): {error}"
        ) from None
    write_json(paths.reports / "rollback.json", report)
    print(json.dumps(report, indent=2))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    """The `digitops` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except DigitopsError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE if isinstance(error, UsageError) else EXIT_ERROR
    except BrokenPipeError:  # stdout was closed early (| head): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
