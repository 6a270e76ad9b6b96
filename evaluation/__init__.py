"""Shims for `python -m evaluation.run` from a checkout (not installed); the package is `frozen_hf`."""
