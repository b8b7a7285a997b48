"""`travellr-ops backup`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "backup",
    "MongoDB backups: create, list, verify, clean, restore, oplog archive.\n\n[dim]Arrives with issue 5.[/]",
)
