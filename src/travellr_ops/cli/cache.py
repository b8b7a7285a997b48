"""`travellr-ops cache`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "cache",
    "Redis cache: stats, clear, warm, keys, bigkeys.\n\n[dim]Arrives with issue 3.[/]",
)
