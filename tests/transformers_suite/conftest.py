"""Puts transformers' own common test files (fetched by scripts/setup_transformers_tests.sh for the installed release)
on the import path as the package `transformers_tests`."""

from __future__ import annotations

import sys
from pathlib import Path

import transformers

RELEASE_TESTS = Path(__file__).resolve().parents[2] / ".transformers-tests" / transformers.__version__

if not (RELEASE_TESTS / "ready").exists():
    raise RuntimeError(
        f"transformers {transformers.__version__}'s own test files are not in {RELEASE_TESTS}: run "
        "`bash scripts/setup_transformers_tests.sh` (the README's test command does)."
    )
sys.path.insert(0, str(RELEASE_TESTS))

# The markers that transformers' own conftest declares for these files.
RELEASE_MARKERS = (
    "accelerate_tests", "flash_attn_test", "flash_attn_3_test", "flash_attn_4_test", "is_agent_test",
    "is_expert_parallel_test", "is_fsdp_test", "is_pipeline_test", "is_staging_test", "is_tensor_parallel_test",
    "is_training_test", "order", "slow", "torch_compile_test",
)


def pytest_configure(config):
    for marker in RELEASE_MARKERS:
        config.addinivalue_line("markers", f"{marker}: a marker of transformers' own test suite")
