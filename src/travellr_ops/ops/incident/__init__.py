"""`incident`: the runbook's incident response (Identify, Contain, Eradicate, Recover,
Document) as a record kept in the shared store, with the evidence captured at opening and the
changes made meanwhile linked from the audit log."""
