"""bench/health: `health` with 20 API endpoints against the slowest one and the sum, same run.

    .venv/bin/python bench/health/run.py [--rounds 5]

A local HTTP server (127.0.0.1, stdlib) answers /api/health?ms=N after N ms; 20 endpoints are
configured with delays from 10 to 200 ms. In the same run:

- slowest: one GET of the slowest endpoint alone (the floor for any concurrent check);
- sum: the 20 GETs one after another (what a shell loop of curl does);
- ours: `travellr-ops health` (in-process, the real ops code) with all 20 configured; MongoDB
  and Redis point at a closed port, so those checks answer at once ("down").

Targets: ours within 1.2x of the slowest endpoint (concurrent), far from the sum; and the API
latency `health` reports for a 0 ms endpoint within 1.2x + 1 ms of what curl measures for it
in the same run (the server's latency, not the tool's own overhead).
Medians are the tool's one percentile (nearest-rank p50).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from travellr_ops.runtime import Runtime
from travellr_ops.settings import Settings
from travellr_ops.vocab.stats import percentile
from travellr_ops.vocab.verdict import Verdict

DELAYS_MS = [10 + i * 10 for i in range(20)]  # 10 .. 200 ms


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        ms = int(parse_qs(urlsplit(self.path).query).get("ms", ["0"])[0])
        time.sleep(ms / 1000)
        body = b'{"status":"ok","version":"bench"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    request_queue_size = 128  # the default 5 drops SYNs of 20 concurrent connects (1 s retry)
    daemon_threads = True


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    urls = [f"{base}/api/health?ms={ms}" for ms in DELAYS_MS]
    dead = closed_port()
    settings = Settings(
        platform="none",
        api={"url": base, "health_path": "/api/health?ms=0", "extra_health_urls": urls},
        mongo={"uri": f"mongodb://127.0.0.1:{dead}/travellr", "timeout_s": 1},
        redis={"url": f"redis://127.0.0.1:{dead}/0", "timeout_s": 1},
        thresholds={"api_response_ms": 1000},  # a 200 ms endpoint is slow on purpose here
    )

    rt = Runtime(settings)
    slowest: list[float] = []
    total: list[float] = []
    ours: list[float] = []
    reported: list[float] = []
    with rt.http() as http:
        for _ in range(args.rounds):
            started = time.perf_counter()
            http.get(urls[-1])
            slowest.append(time.perf_counter() - started)
            started = time.perf_counter()
            for url in urls:
                http.get(url)
            total.append(time.perf_counter() - started)
            started = time.perf_counter()
            report = rt.health(fresh=True)  # its own clients, opened and closed, as `health`
            ours.append(time.perf_counter() - started)
            apis = [c for c in report.checks if c.name == "api"]
            assert len(apis) == 21 and all(c.verdict == Verdict.OK for c in apis), apis
            reported.append(apis[0].latency_ms or 0.0)

    curl = []
    if shutil.which("curl"):
        for _ in range(args.rounds):
            out = subprocess.run(
                ["curl", "-s", "-o", "/dev/null", "-w", "%{time_total}", f"{base}/api/health?ms=0"],
                capture_output=True,
                text=True,
                check=True,
            )
            curl.append(float(out.stdout) * 1000)
    server.shutdown()

    def med(values: list[float]) -> float:
        found = percentile(values, 50)
        assert found is not None, "no rounds"
        return found

    ratio = med(ours) / med(slowest)
    print(
        f"20 endpoints, delays {DELAYS_MS[0]}..{DELAYS_MS[-1]} ms, median of {args.rounds} rounds"
    )
    print(f"slowest endpoint alone     {med(slowest) * 1000:8.1f} ms")
    print(f"one after another (sum)    {med(total) * 1000:8.1f} ms")
    print(f"travellr-ops health        {med(ours) * 1000:8.1f} ms  ratio to slowest {ratio:4.2f}x")
    print(f"health's API latency (0 ms endpoint) {med(reported):6.1f} ms", end="")
    print(f"   curl: {med(curl):6.1f} ms" if curl else "   (curl not installed)")
    verdict = "PASS" if ratio <= 1.2 else "FAIL"
    print(f"{verdict}: health within {ratio:.2f}x of the slowest endpoint (target <= 1.2x)")
    ok = verdict == "PASS"
    if curl:
        # the latency reported is the server's, not the tool's: near what curl measures
        bound = med(curl) * 1.2 + 1.0
        close = med(reported) <= bound
        ok = ok and close
        print(
            f"{'PASS' if close else 'FAIL'}: health's API latency {med(reported):.1f} ms, "
            f"curl {med(curl):.1f} ms (target <= 1.2x curl + 1 ms = {bound:.1f} ms)"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
