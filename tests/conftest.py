"""Shared fixtures. Server fixtures live in one plugin module per kind of server; `markers`
fails a test that needs a kind of server without carrying that kind's marker."""

pytest_plugins: list[str] = [
    "pytester",
    "markers",
    "fixtures_k8s",
    "fixtures_docker",
    "fixtures_servers",
]
