"""Kept so that ``python -m evaluation.run ...`` keeps working from a checkout; the program is
``frozen_hf.programs.evaluate`` (console script ``frozen-eval``)."""

from frozen_hf.programs.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
