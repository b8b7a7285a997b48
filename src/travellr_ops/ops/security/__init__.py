"""`security`: dependency audit, log review, posture checks."""
