"""`travellr-ops monitor`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "monitor",
    "Monitoring against the runbook's key metrics.\n\n[dim]No commands yet: no open issue schedules them.[/]",
)
