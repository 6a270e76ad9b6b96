"""The data a Frozen model trains and is evaluated on.

The collator, the caption data sets, the Shapes world and the paper benchmarks' loaders.
"""
