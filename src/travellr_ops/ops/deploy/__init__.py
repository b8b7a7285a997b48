"""`deploy`: the runbook's Deployment section (preflight, backup, rollout, health gate,
automatic rollback) on compose and Kubernetes, with its history in the shared store."""
