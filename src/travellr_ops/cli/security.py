"""`travellr-ops security`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "security",
    "Security audit: dependencies, access and application logs.\n\n[dim]No commands yet: no open issue schedules them.[/]",
)
