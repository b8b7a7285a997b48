"""`travellr-ops deploy`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "deploy",
    "Deploy and roll back the backend.\n\n[dim]No commands yet: no open issue schedules them.[/]",
)
