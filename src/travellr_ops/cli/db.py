"""`travellr-ops db`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "db",
    "MongoDB diagnosis: ping, status, stats, indexes, explain, profiling.\n\n[dim]Arrives with issue 4.[/]",
)
