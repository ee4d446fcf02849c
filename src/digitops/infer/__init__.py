"""Inference shared by every consumer of a trained model (the service, promote, `digitops predict`).

`classifier` loads the model as the service runs it, `inputs` checks and decodes what a user sends, and
`segment` finds the digits of a number in a photo or scan.
"""
