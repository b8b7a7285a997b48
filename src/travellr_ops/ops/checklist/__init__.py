"""`checklist`: the runbook's morning, weekly, monthly and maintenance routines."""
