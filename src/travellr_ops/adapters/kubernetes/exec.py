"""`kubectl exec` and `kubectl debug --copy-to` as this tool speaks them: the pod's exec
subresource over the client's websocket channel protocol (v5.channel.k8s.io where the server
has it, else v4), read without the client's generated API classes (see client.py).

Channels: 0 stdin, 1 stdout, 2 stderr, 3 the exec's end (a Status: Success, or Failure with
the exit code as an ``ExitCode`` cause), 4 terminal size. v4 has no way to say "end of
stdin" (v5 closes channel 0): there a command that reads stdin to its end waits for more.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from travellr_ops.adapters.exec_streams import CANNOT_EXECUTE, feed_stdin, following_size
from travellr_ops.adapters.kubernetes.client import KubeClient, first_line, sdk
from travellr_ops.adapters.platform_types import ExecIO, ExecTarget
from travellr_ops.errors import OperationFailed, Unreachable, UsageError

DEFAULT_CONTAINER = "kubectl.kubernetes.io/default-container"
#: on a --debug-copy pod: the pod it copies
DEBUG_COPY_ANNOTATION = "travellr.io/debug-copy-of"
SLEEP_FOREVER = ["/bin/sh", "-c", "while :; do sleep 3600; done"]
#: how long a debug copy may take to be scheduled and running
COPY_START_S = 60.0
STDIN, STDOUT, STDERR, ERROR, RESIZE = 0, 1, 2, 3, 4


def default_container(pod: Any) -> str:
    """The container `kubectl exec` picks: the one the pod's default-container annotation
    names, else the first."""
    names = [c.name for c in pod.spec.containers]
    wanted = (pod.metadata.annotations or {}).get(DEFAULT_CONTAINER)
    return str(wanted) if wanted in names else str(names[0])


def container_state(pod: Any, container: str) -> str:
    """Running, or why not (CrashLoopBackOff, Pending...)."""
    for status in (pod.status or {}).get("containerStatuses") or []:
        if status.name == container:
            state = status.state or {}
            if state.get("waiting"):
                return str(state["waiting"].get("reason") or "Waiting")
            if state.get("terminated"):
                return str(state["terminated"].get("reason") or "Terminated")
    return str((pod.status or {}).get("phase") or "Pending")


def choose(service: str, pods: list[Any], instance: int | None) -> ExecTarget:
    if not pods:
        raise OperationFailed(
            f"service {service!r} has no pod", hint=f"see `travellr-ops service status {service}`"
        )
    if instance is not None:
        if instance > len(pods):
            raise UsageError(
                f"service {service!r} has {len(pods)} pod(s), no instance {instance}",
                hint="--instance N takes the Nth pod by name (1 is the first)",
            )
        pod = pods[instance - 1]
    else:
        running = [p for p in pods if (p.status or {}).get("phase") == "Running"]
        pod = (running or pods)[0]
    container = default_container(pod)
    return ExecTarget(
        service=service,
        instance=pod.metadata.name,
        container=container,
        state=container_state(pod, container),
    )


def exec_query(target: ExecTarget, command: Sequence[str], io: ExecIO) -> list[tuple[str, str]]:
    """The exec subresource's query: one ``command`` parameter per argument."""
    query = [("command", arg) for arg in command]
    query += [("container", target.container or "")]
    query += [("stdin", str(io.stdin is not None).lower()), ("stdout", "true")]
    query += [("stderr", str(not io.tty).lower()), ("tty", str(io.tty).lower())]
    return query


def run(client: KubeClient, target: ExecTarget, command: Sequence[str], io: ExecIO) -> int:
    """Run ``command`` in the pod's container, streams attached; its exit code."""
    from kubernetes.client.exceptions import ApiException

    doing = f"running {' '.join(command)!r} in pod {target.instance}"
    path = client.core_path("pods", target.instance, "exec")
    with client.errors(doing):
        method, url, headers, _, _ = client.api.param_serialize(
            method="GET",
            resource_path=path,
            query_params=exec_query(target, command, io),
            header_params={},
            auth_settings=["BearerToken"],
        )
        try:
            ws = sdk("kubernetes.stream.ws_client").websocket_call(
                client.api.configuration,
                method,
                url,
                headers={k.lower(): v for k, v in headers.items()},
                _preload_content=False,
                binary=True,
            )
        except ApiException as exc:
            raise _handshake_error(exc, doing) from None
    try:
        feed_stdin(io.stdin, ws.write_stdin, lambda: ws.close_channel(STDIN))

        def resize(rows: int, columns: int) -> None:
            ws.write_channel(RESIZE, json.dumps({"Width": columns, "Height": rows}))

        with following_size(io, resize):
            end = _copy_output(ws, target, io, doing)
    finally:
        ws.close()
    return _exit_code(end, target, io, doing)


def _copy_output(ws: Any, target: ExecTarget, io: ExecIO, doing: str) -> bytes:
    """Stdout and stderr to the user's until the server closes; the end channel's Status."""
    end: bytes = b""
    while True:
        try:
            ws.update(timeout=1)
        except Exception as exc:  # websocket-client raises its own and OSErrors
            raise Unreachable(
                f"lost the connection to pod {target.instance} while {doing}: {first_line(exc)}",
                hint="the command may still be running in the pod",
            ) from None
        channels = ws._channels
        for channel, out in ((STDOUT, io.stdout), (STDERR, io.stderr)):
            data = channels.pop(channel, b"")
            if data:
                out.write(data)
                out.flush()
        end += channels.pop(ERROR, b"")
        if not ws.is_open():
            return end


def _exit_code(end: bytes, target: ExecTarget, io: ExecIO, doing: str) -> int:
    if not end:
        raise Unreachable(
            f"the connection to pod {target.instance} ended before the command did ({doing})",
            hint="the command may still be running in the pod",
        )
    status = json.loads(end)
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause["message"])
    # the command never started (no such executable...): the message, and a shell's 126
    io.stderr.write((str(status.get("message") or status) + "\n").encode())
    io.stderr.flush()
    return CANNOT_EXECUTE


def _handshake_error(exc: Any, doing: str) -> OperationFailed | Unreachable:
    """The client reports a refused upgrade as status 0 with the server's answer in reason."""
    reason = str(exc.reason or "")
    if "Handshake status" not in reason:
        return Unreachable(f"could not open the exec stream while {doing}: {reason}")
    body = reason.split("-+-+-")[-1].strip()
    try:
        message = json.loads(body).get("message") or body
    except ValueError:
        message = body
    return OperationFailed(f"the Kubernetes API refused {doing}: {first_line(Exception(message))}")


@contextmanager
def debug_copy(client: KubeClient, target: ExecTarget) -> Iterator[ExecTarget]:
    """As `kubectl debug POD --copy-to=NAME`: the pod's spec (image, environment, volumes,
    node and network set-up) with the chosen container only sleeping, no probes, no labels
    (no Deployment adopts it, no Service sends it traffic), never restarted; deleted at once
    when the block ends, however it ends."""
    from kubernetes.client.exceptions import ApiException

    with client.errors(f"reading pod {target.instance!r}"):
        pod = client.request("GET", client.core_path("pods", target.instance))
    spec = json.loads(json.dumps(pod["spec"]))
    for key in ("nodeName", "hostname", "subdomain"):
        spec.pop(key, None)
    spec["restartPolicy"] = "Never"
    for container in spec["containers"]:
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            container.pop(probe, None)
        if container["name"] == target.container:
            container["command"] = SLEEP_FOREVER
            container.pop("args", None)
    name = f"{target.instance[:50]}-debug-{os.urandom(3).hex()}"
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "annotations": {DEBUG_COPY_ANNOTATION: target.instance},
        },
        "spec": spec,
    }
    with client.errors(f"creating the debug copy {name}"):
        client.request("POST", client.core_path("pods"), body=body)
    try:
        _wait_running(client, name, target.container or "")
        yield ExecTarget(
            service=target.service,
            instance=name,
            container=target.container,
            state="Running",
            copy_of=target.instance,
        )
    finally:
        try:
            with client.errors(f"deleting the debug copy {name}"):
                client.request(
                    "DELETE", client.core_path("pods", name), body={"gracePeriodSeconds": 0}
                )
        except ApiException:
            pass


def _wait_running(client: KubeClient, name: str, container: str) -> None:
    deadline = time.monotonic() + COPY_START_S
    while True:
        with client.errors(f"reading the debug copy {name}"):
            pod = client.request("GET", client.core_path("pods", name))
        state = container_state(pod, container)
        if state == "Running":
            return
        if time.monotonic() >= deadline:
            raise OperationFailed(
                f"the debug copy {name} was not running within {COPY_START_S:g} s ({state})",
                hint=f"see `travellr-ops service describe {name}`",
            )
        time.sleep(0.2)
