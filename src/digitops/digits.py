"""What every source of the pipeline holds: digits of ten classes in the official splits below."""

NUM_CLASSES = 10
OFFICIAL_SPLITS = ("train", "test")  # as published; split.py carves "val" out of "train"
