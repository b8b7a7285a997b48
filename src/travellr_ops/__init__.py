"""travellr-ops: the Travellr operations runbook as one command."""

__version__ = "0.1.0"
