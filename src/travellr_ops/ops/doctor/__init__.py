"""`doctor`: from a symptom to its cause and the fix, as the runbook's Emergency Procedures
and Troubleshooting sections walk it.

checks.py takes the looks (each through an existing command's ops code), rules.py turns what
they saw into ranked causes (runbook section, next commands, escalation level), run.py runs the
checks at once under one deadline and applies the top cause's Level-1 remedy (``--fix``).
"""

from travellr_ops.ops.doctor.model import LEVELS, SYMPTOMS, Cause, Diagnosis, Observation
from travellr_ops.ops.doctor.run import FixReport, check_symptom, diagnose, document, fix, headline

__all__ = [
    "LEVELS",
    "SYMPTOMS",
    "Cause",
    "Diagnosis",
    "FixReport",
    "Observation",
    "check_symptom",
    "diagnose",
    "document",
    "fix",
    "headline",
]
