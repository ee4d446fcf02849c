"""The pipeline's stages, one thin module each: `python -m pipeline.<stage>` (dvc.yaml runs them).

A stage loads params.yaml, reads its inputs, calls the digitops library and writes its outputs
atomically; all logic lives in the library.
"""
