"""Console entry points: `frozen-train`, `frozen-eval`, `frozen-push`, `frozen-verify`. Each reads top to bottom."""
