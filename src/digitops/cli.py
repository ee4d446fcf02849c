"""The `digitops` command. `digitops predict`: digits in image files, folders and Kaggle CSVs -> a CSV.

    digitops predict scans/ seven.png --out predictions.csv      # path,digit,confidence,label
    digitops predict test.csv --out submission.csv               # Kaggle's ImageId,Label
    digitops predict scans/ --url http://localhost:3000          # ask a running service instead

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
    return parser


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
