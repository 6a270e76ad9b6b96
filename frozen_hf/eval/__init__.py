"""Few-shot evaluation: prompts, the answer engine and scoring, metrics, tasks, suites, typed records and the report."""
