"""``python -m frozen_hf.data.shapes --grid PATH``: draw a grid of samples of every task."""

from .grid import main

if __name__ == "__main__":
    main()
