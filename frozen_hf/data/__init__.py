"""The data a Frozen model trains and is evaluated on: the collator, caption data sets, the Shapes world, the paper benchmarks' loaders."""
