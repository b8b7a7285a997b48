"""`travellr-ops checklist`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "checklist",
    "The runbook's maintenance checklists.\n\n[dim]No commands yet: no open issue schedules them.[/]",
)
