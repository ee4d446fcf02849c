"""Serving: the BentoML service, the model as it serves, and the checks on what clients send."""
