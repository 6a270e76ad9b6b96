"""Stand-in for transformers' `tests/generation/test_utils.py`, which the release's sdist does not ship.

`GenerationTesterMixin` is the only name `test_modeling_common.py` imports from it. The stand-in is an empty class:
the release's generate tests cannot run from the sdist, and the tester does not inherit it (the family's generate
behaviour is tested in `tests/test_modeling.py`).
"""


class GenerationTesterMixin:
    pass
