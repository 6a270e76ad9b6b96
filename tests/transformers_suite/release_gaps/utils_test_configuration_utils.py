"""Stand-in for transformers' `tests/utils/test_configuration_utils.py`, which the release's sdist does not ship.

`ConfigTester.check_config_arguments_init` is the one reader of `config_common_kwargs`, and it returns before reading
it for a composite config (one with `sub_configs`), which `FrozenConfig` is. An empty mapping is therefore what the
original gives this family.
"""

config_common_kwargs: dict = {}
