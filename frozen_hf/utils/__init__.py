"""Small helpers that several parts of frozen-hf share; see `io` for crash-safe file writes."""
