"""`travellr-ops maintenance`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "maintenance",
    "Maintenance mode the backend honours: on, off, status.\n\n[dim]Arrives with issue 3.[/]",
)
