"""`monitor`: the runbook's key metrics against their thresholds (sample, history, report)."""
