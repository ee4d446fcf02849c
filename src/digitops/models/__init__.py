"""Registered architectures: `build_model(name, **kwargs)`, `list_models()`, `resolve_model_name(name)`.

Importing this package registers every family module below.
"""

from digitops.models import digitnet, seeds  # noqa: F401  (registers the models)
from digitops.models.registry import build_model, list_models, register_model, resolve_model_name

__all__ = ["build_model", "list_models", "register_model", "resolve_model_name"]
