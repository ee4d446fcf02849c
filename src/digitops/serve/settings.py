"""What the service needs before its class is defined: params.yaml's `serve` section, read once.

`@bentoml.service` takes its workers and logging at import time, and the request validators need the limits
then too, so they are module constants here rather than attributes of the service.

    DIGITOPS_PARAMS        another params file (default params.yaml, relative to the working directory)
    DIGITOPS_BENTO_MODEL   the BentoML model to serve (default `digits:latest`: what the package stage
                           imported last)
    DIGITOPS_FEEDBACK_DIR  where `POST /feedback` stores drawings (default params.yaml base.paths.feedback)
"""

from __future__ import annotations

import os

from digitops.config import load_params
from digitops.data.drawings import feedback_dir
from digitops.infer.inputs import InputLimits

PARAMS = load_params(os.environ.get("DIGITOPS_PARAMS", "params.yaml"))
SERVE = PARAMS.serve
MODEL_TAG = os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest")
FEEDBACK_DIR = feedback_dir(default=PARAMS.base.paths.feedback)
LIMITS = InputLimits.from_serve(SERVE)
