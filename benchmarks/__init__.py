"""Speed and memory benchmarks of frozen-hf, measured as ratios side by side in one run.

Run everything with ``python -m benchmarks.run`` (see ``BENCHMARKS.md``).
"""
