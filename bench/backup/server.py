"""Start/stop the benchmark's own SecantusDB on 127.0.0.1, data kept between runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SERVER = Path(sys.executable).parent / "secantusd-py"
DATA = Path(os.environ.get("BENCH_BACKUP_DIR", "/var/tmp/travellr-bench-backup"))
DB = "travellr"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/{DB}"

    def start(self) -> Server:
        from pymongo import MongoClient

        DATA.mkdir(parents=True, exist_ok=True)
        log = open(DATA / "mongo.log", "ab")  # noqa: SIM115 - the process owns it
        args = [str(SERVER), "--host", "127.0.0.1", "--port", str(self.port)]
        args += ["--storage-path", str(DATA / "data"), "--cache-size", "1G", "--standalone"]
        self.proc = subprocess.Popen(args, cwd=DATA, stdout=log, stderr=log)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"secantusd-py exited at start; see {DATA / 'mongo.log'}")
            client: Any = MongoClient(self.uri, serverSelectionTimeoutMS=300)
            try:
                client.admin.command("ping")
                return self
            except Exception:
                time.sleep(0.1)
            finally:
                client.close()
        self.stop()
        sys.exit("secantusd-py did not answer within 120 s")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def ensure_seeded(server: Server) -> dict[str, int]:
    """The seeded sizes; seeds the database first when the marker says it is not complete."""
    from pymongo import MongoClient

    sys.path.insert(0, str(Path(__file__).parent))
    from seed import TARGET_BYTES, seed

    marker = DATA / "seeded.json"
    if marker.exists():
        seeded = json.loads(marker.read_text())
        if seeded.get("target") == TARGET_BYTES:
            return dict(seeded["sizes"])

    client: Any = MongoClient(server.uri)
    started = time.monotonic()
    sizes = seed(client, DB)
    client.close()
    marker.write_text(json.dumps({"target": TARGET_BYTES, "sizes": sizes}))
    print(f"seeded {sum(sizes.values()) / 1e6:.0f} MB in {time.monotonic() - started:.0f} s")
    return sizes


if __name__ == "__main__":
    srv = Server().start()
    try:
        print(ensure_seeded(srv))
    finally:
        srv.stop()
