"""The Hub side: the Frozen-folder check, model cards (data and rendering), publishing, and LM verification."""
