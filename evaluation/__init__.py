"""The few-shot evaluation program (`python -m evaluation.run`) and its reports (`python -m evaluation.report`)."""
