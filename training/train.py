"""Kept so that ``python -m training.train <config>`` keeps working from a checkout; the program is
``frozen_hf.programs.train`` (console script ``frozen-train``)."""

import sys

from frozen_hf.programs.train import main

if __name__ == "__main__":
    sys.exit(main())
