"""The runbook brain: deterministic, explainable diagnosis with no LLM."""
