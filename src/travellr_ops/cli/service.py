"""`travellr-ops service`."""

from travellr_ops.cli.common import new_group

app = new_group(
    "service",
    "Service status, restart, logs and resource usage (the runbook's 'Service Down').\n\n[dim]Arrives with issues 6 (compose) and 7 (Kubernetes).[/]",
)
