"""Shared fixtures. Server fixtures live in one plugin module per kind of server."""

pytest_plugins: list[str] = ["fixtures_k8s", "fixtures_docker", "fixtures_servers"]
