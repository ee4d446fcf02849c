"""digitops: a reference MLOps pipeline for handwritten-digit recognition.

Importing the package has no side effects: no configuration is read, no tracking is set up.
"""

__version__ = "0.1.0"
