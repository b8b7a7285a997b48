"""PING a Redis on 127.0.0.1:PORT about every millisecond until SIGTERM; write the round
trips (ms) as a JSON list to OUT. Its own process, so that the client under test does not
slow its clock. Usage: prober.py PORT OUT"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time


def main() -> None:
    port, out = int(sys.argv[1]), sys.argv[2]
    stop = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    rtts: list[float] = []
    print("ready", flush=True)
    while not stop:
        started = time.perf_counter()
        sock.sendall(b"PING\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            reply += sock.recv(64)
        rtts.append((time.perf_counter() - started) * 1000)
        time.sleep(0.001)
    sock.close()
    with open(out, "w") as f:
        json.dump(rtts, f)


if __name__ == "__main__":
    main()
