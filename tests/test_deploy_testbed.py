"""The testbed's releases for `deploy`: `v2-errors` is healthy but answers a share of its API
requests with 500, on the compose stack (a real image) and in the node simulator's pod logs."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from fixtures_docker import ComposeStack
from fixtures_k8s import k8s_node_sim


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.docker
def test_v2_errors_image_is_healthy_but_fails_a_fifth_of_api_requests_and_logs_them(
    stack: ComposeStack,
) -> None:
    stack.compose("up", "-d", "backend", env={"TRAVELLR_BACKEND_TAG": "v2-errors"})
    stack.wait_healthy()

    assert _status(stack.backend_url + "/api/health") == 200
    statuses = [_status(stack.backend_url + "/api/trips/popular") for _ in range(20)]

    assert statuses.count(500) == 4
    assert statuses.count(200) == 16
    container = stack.container("backend")
    assert container.attrs["Config"]["Image"] == "travellr-backend:v2-errors"
    log = container.exec_run(["cat", "/var/log/travellr/access.log"]).output.decode()
    assert log.count('"GET /api/trips/popular HTTP/1.1" 500 ') == 4


def test_node_simulator_errors_tag_logs_a_share_of_api_requests_as_500() -> None:
    def share(image: str) -> float:
        lines = [k8s_node_sim.log_line("pod", image, i) for i in range(1, 101)]
        return sum(" 500 " in line for line in lines) / len(lines)

    assert k8s_node_sim.becomes_ready("travellr-backend:v2-errors")
    assert share("travellr-backend:v2-errors") == 0.2
    assert share("travellr-backend:v2-errors50") == 0.5
    assert share("travellr-backend:v2") == 0.0
