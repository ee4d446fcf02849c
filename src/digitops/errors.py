"""The errors a user can act on. Stages print them as one readable line instead of a traceback."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable


class DigitopsError(Exception):
    """Base class: something about the inputs or configuration is wrong, and the message says what."""


class ConfigError(DigitopsError):
    """params.yaml (or an override) has a missing, unknown or invalid key."""


class DataFileError(DigitopsError):
    """An original data file is missing, corrupt, truncated or malformed."""

    def __init__(self, path: str | os.PathLike, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class DataContractError(DigitopsError):
    """The data violates the data contract (see digitops.validate)."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); a DigitopsError ends it with its message on stderr and exit status 1."""
    try:
        main()
    except DigitopsError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
