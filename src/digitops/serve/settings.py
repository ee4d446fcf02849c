"""What the service needs before its class is defined: params.yaml's `serve` section, read once.

`@bentoml.service` takes its workers and logging at import time, and the request validators need the limits
then too, so they are module constants here rather than attributes of the service.

    DIGITOPS_PARAMS        another params file (default params.yaml, relative to the working directory)
    DIGITOPS_BENTO_MODEL   the BentoML model to serve (default `digits:latest`: what the package stage
                           imported last); the challenger packaged with it, if any, is found by its label
                           (digitops.serve.shadow.paired_challenger)
    DIGITOPS_FEEDBACK_DIR  the feedback folder (default params.yaml base.paths.feedback); `POST /feedback`
                           stores drawings in its `incoming/` quarantine
    DIGITOPS_FEEDBACK_TOKEN  the bearer token contributors send (serve.feedback: auto or token)
"""

from __future__ import annotations

import os

from digitops.config import load_params
from digitops.data.drawings import feedback_dir
from digitops.data.review import incoming_dir
from digitops.infer.inputs import InputLimits
from digitops.serve.contributors import ContributionPolicy
from digitops.serve.feedback import FeedbackQuota
from digitops.serve.shadow import paired_challenger

PARAMS = load_params(os.environ.get("DIGITOPS_PARAMS", "params.yaml"))
SERVE = PARAMS.serve
MODEL_TAG = os.environ.get("DIGITOPS_BENTO_MODEL", "digits:latest")
CHALLENGER_TAG = paired_challenger(MODEL_TAG)  # None when none was packaged with the champion
FEEDBACK_DIR = feedback_dir(default=PARAMS.base.paths.feedback)
QUARANTINE_DIR = incoming_dir(FEEDBACK_DIR)  # contributions wait here for `digitops drawings accept`
LIMITS = InputLimits.from_serve(SERVE)  # the digit routes': /classify, /digit, /digits, /feedback
PHOTO_LIMITS = InputLimits.photos_from_serve(SERVE)  # /read's
CONTRIBUTORS = ContributionPolicy.from_setting(SERVE.feedback)  # who may POST /feedback
FEEDBACK_QUOTA = FeedbackQuota(SERVE.feedback_per_client_per_day, SERVE.feedback_max_bytes)
