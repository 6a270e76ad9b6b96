"""The Frozen training program: ``python -m training.train <config.yaml> [--field value ...]``."""
