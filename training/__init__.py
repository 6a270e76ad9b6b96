"""Shims for `python -m training.train` from a checkout (not installed); the package is `frozen_hf`."""
