#!/usr/bin/env python3
"""The stand-in Travellr backend API, for the sandbox and the tests.

Stdlib + pymongo + redis only, so that it runs under Debian's python3 with python3-pymongo
(3.11) and python3-redis (4.3) inside a container as well as in the project's venv.

Environment:
    HOST (127.0.0.1), PORT (5000), MONGO_URI (mongodb://127.0.0.1:27017/travellr),
    REDIS_URL (redis://127.0.0.1:6379/0), LOG_DIR (./logs), BACKEND_VERSION (v1),
    RATE_LIMIT_PER_MIN (600), BACKEND_HEALTH_FAIL=1 (health answers 500: a broken release),
    BACKEND_ERROR_PCT=N (a healthy release that answers N % of /api/* but /api/health with
    500, every (100/N)-th request, logged like any request: a metric gate must catch it)

Endpoints:
    GET  /api/health                      200 ok / 503 degraded / 503 maintenance (not rate limited)
    GET  /api/search?destination=X&page=N cached as search:<destination>:<page>, 300 s
    GET  /api/trips/popular               cached as trips:popular, 600 s
    GET  /api/trips/<id>                  cached as trip:<id>, 600 s
    GET  /api/bookings?tripId=..&status=  not cached; the seed leaves it without an index
    POST /api/auth/login {email,password} 200 / 401 (failures logged)
    GET  /api/debug/error                 logs an ERROR and answers 500
Cached endpoints answer with X-Cache: HIT or MISS.

Contracts with travellr-ops:
    Redis key `travellr:maintenance` (a JSON string {"message","by","reason","since","until"}):
    while it exists every endpoint answers 503 {"status":"maintenance","message":...}.
    Redis key `ratelimit:<ip>:<minute>` counts requests per client per minute; over the limit: 429.
    LOG_DIR/access.log is in combined log format; LOG_DIR/app.log (also stdout) has lines
    `2026-11-28T04:12:00.123Z LEVEL message key=value ...`, LEVEL one of INFO WARN ERROR.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import redis
from bson import ObjectId
from bson.errors import InvalidId
from pymongo import MongoClient
from pymongo.errors import PyMongoError

MAINTENANCE_KEY = "travellr:maintenance"
PAGE_SIZE = 20
SEARCH_TTL = 300
TRIP_TTL = 600


class Config:
    def __init__(self, env: dict[str, str]) -> None:
        self.host = env.get("HOST", "127.0.0.1")
        self.port = int(env.get("PORT", "5000"))
        self.mongo_uri = env.get("MONGO_URI", "mongodb://127.0.0.1:27017/travellr")
        self.redis_url = env.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        self.log_dir = env.get("LOG_DIR", "logs")
        self.version = env.get("BACKEND_VERSION", "v1")
        self.rate_limit = int(env.get("RATE_LIMIT_PER_MIN", "600"))
        self.health_fail = env.get("BACKEND_HEALTH_FAIL", "") == "1"
        self.error_pct = float(env.get("BACKEND_ERROR_PCT") or 0)


class Logs:
    """The access log (combined format) and the application log (file and stdout)."""

    def __init__(self, log_dir: str) -> None:
        os.makedirs(log_dir, exist_ok=True)
        self._lock = threading.Lock()
        # Open for the life of the process, as a server's logs are.
        self._access = open(os.path.join(log_dir, "access.log"), "a", encoding="utf-8")  # noqa: SIM115
        self._app = open(os.path.join(log_dir, "app.log"), "a", encoding="utf-8")  # noqa: SIM115

    def app(self, level: str, message: str, **fields: object) -> None:
        now = datetime.now(UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"
        parts = [stamp, level, message]
        for key, value in fields.items():
            text = str(value)
            if not text or any(c in text for c in ' "='):
                text = json.dumps(text)
            parts.append(f"{key}={text}")
        line = " ".join(parts) + "\n"
        with self._lock:
            self._app.write(line)
            self._app.flush()
            sys.stdout.write(line)
            sys.stdout.flush()

    def access(
        self, ip: str, request_line: str, status: int, size: int, referer: str, agent: str
    ) -> None:
        stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")

        def quoted(text: str) -> str:
            return text.replace('"', "%22")

        line = (
            f'{ip} - - [{stamp}] "{quoted(request_line)}" {status} {size or "-"} '
            f'"{quoted(referer)}" "{quoted(agent)}"\n'
        )
        with self._lock:
            self._access.write(line)
            self._access.flush()


def to_json(value: object) -> object:
    if isinstance(value, ObjectId):
        return str(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.isoformat().replace("+00:00", "Z")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: object) -> str:
    return json.dumps(value, default=to_json, separators=(",", ":"))


def check_password(password: str, stored: str) -> bool:
    try:
        _, iterations, salt, digest = stored.split("$")
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return got.hex() == digest


class App:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.logs = Logs(cfg.log_dir)
        self.mongo = MongoClient(
            cfg.mongo_uri,
            serverSelectionTimeoutMS=2000,
            connectTimeoutMS=2000,
            socketTimeoutMS=10000,
        )
        self.db = self.mongo.get_default_database()
        self.redis = redis.Redis.from_url(
            cfg.redis_url, socket_timeout=1, socket_connect_timeout=1, decode_responses=True
        )
        self._requests = 0
        self._requests_lock = threading.Lock()

    def injected_error(self) -> bool:
        """Whether this /api/* request is one of the BACKEND_ERROR_PCT share that fails:
        spread evenly (request n fails when n * pct crosses a multiple of 100)."""
        if self.cfg.error_pct <= 0:
            return False
        with self._requests_lock:
            n = self._requests
            self._requests += 1
        pct = self.cfg.error_pct
        return int((n + 1) * pct // 100) > int(n * pct // 100)

    # -------------------------------------------------------------------- shared checks
    def maintenance(self) -> dict | None:
        try:
            raw = self.redis.get(MAINTENANCE_KEY)
        except redis.RedisError:
            return None  # no Redis, no flag: the health check reports Redis itself
        if raw is None:
            return None
        try:
            flag = json.loads(raw)
        except ValueError:
            flag = {}
        if not isinstance(flag, dict):
            flag = {}
        return flag

    def over_rate_limit(self, ip: str) -> bool:
        key = f"ratelimit:{ip}:{int(time.time() // 60)}"
        try:
            pipe = self.redis.pipeline()
            pipe.incr(key)
            pipe.expire(key, 120)
            count = pipe.execute()[0]
        except redis.RedisError:
            return False  # fail open: a Redis outage must not take the API down
        return int(count) > self.cfg.rate_limit

    def cached(self, key: str, ttl: int, compute) -> tuple[int, str, str]:
        """(status, body, 'HIT'|'MISS'); a Redis failure degrades to MISS, never to an error."""
        try:
            hit = self.redis.get(key)
        except redis.RedisError as exc:
            self.logs.app("WARN", "cache unavailable", key=key, error=type(exc).__name__)
            hit = None
        if hit is not None:
            return 200, hit, "HIT"
        status, body = compute()
        if status == 200:
            with contextlib.suppress(redis.RedisError):
                self.redis.set(key, body, ex=ttl)
        return status, body, "MISS"

    # ---------------------------------------------------------------------- endpoints
    def health(self) -> tuple[int, dict]:
        checks = {}
        started = time.perf_counter()
        try:
            self.mongo.admin.command("ping")
            checks["mongodb"] = {"ok": True}
        except PyMongoError as exc:
            checks["mongodb"] = {"ok": False, "error": str(exc).split(",")[0][:200]}
        checks["mongodb"]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        started = time.perf_counter()
        try:
            self.redis.ping()
            checks["redis"] = {"ok": True}
        except redis.RedisError as exc:
            checks["redis"] = {"ok": False, "error": str(exc)[:200]}
        checks["redis"]["latency_ms"] = round((time.perf_counter() - started) * 1000, 2)
        ok = all(c["ok"] for c in checks.values())
        body = {"status": "ok" if ok else "degraded", "version": self.cfg.version, "checks": checks}
        if self.cfg.health_fail:
            body["status"] = "error"
            body["error"] = "BACKEND_HEALTH_FAIL is set"
            return 500, body
        if not ok:
            self.logs.app(
                "WARN",
                "health degraded",
                failing=",".join(k for k, c in checks.items() if not c["ok"]),
            )
        return (200 if ok else 503), body

    def search(self, destination: str, page: int) -> tuple[int, str]:
        cursor = (
            self.db.trips.find({"destination": destination})
            .sort("startDate", 1)
            .skip(page * PAGE_SIZE)
            .limit(PAGE_SIZE)
        )
        trips = list(cursor)
        return 200, dumps({"destination": destination, "page": page, "results": trips})

    def trip(self, trip_id: ObjectId) -> tuple[int, str]:
        doc = self.db.trips.find_one({"_id": trip_id})
        if doc is None:
            return 404, dumps({"error": "trip not found"})
        return 200, dumps(doc)

    def popular(self) -> tuple[int, str]:
        trips = list(self.db.trips.find().sort([("rating", -1), ("_id", 1)]).limit(10))
        return 200, dumps({"results": trips})

    def bookings(self, trip_id: ObjectId, status: str | None) -> tuple[int, str]:
        query: dict = {"tripId": trip_id}
        if status:
            query["status"] = status
        docs = list(self.db.bookings.find(query).limit(100))
        return 200, dumps({"tripId": trip_id, "status": status, "results": docs})

    def login(self, email: str, password: str, ip: str) -> tuple[int, dict]:
        user = self.db.users.find_one({"email": email})
        if user is None or not check_password(password, user.get("passwordHash", "")):
            self.logs.app(
                "WARN",
                "login failed",
                email=email,
                ip=ip,
                reason="unknown user" if user is None else "bad password",
            )
            return 401, {"error": "invalid email or password"}
        self.logs.app("INFO", "login ok", email=email, ip=ip)
        token = hashlib.sha256(f"{user['_id']}:{time.time()}".encode()).hexdigest()
        return 200, {
            "token": token,
            "user": {"id": str(user["_id"]), "email": email, "name": user.get("name")},
        }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "travellr-backend"
    app: App  # set on the class before serving

    # BaseHTTPRequestHandler's own stderr logging is replaced by the two logs.
    def log_message(self, format: str, *args: object) -> None:
        pass

    def client_ip(self) -> str:
        # The API sits behind a proxy in production; trust its X-Forwarded-For.
        forwarded = self.headers.get("X-Forwarded-For", "")
        return forwarded.split(",")[0].strip() or self.client_address[0]

    def reply(self, status: int, body: object, cache: str | None = None) -> None:
        data = (body if isinstance(body, str) else dumps(body)).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if cache:
            self.send_header("X-Cache", cache)
        if status == 429:
            self.send_header("Retry-After", "60")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.app.logs.access(
            self.client_ip(),
            self.requestline,
            status,
            len(data),
            self.headers.get("Referer", "-"),
            self.headers.get("User-Agent", "-"),
        )

    def do_GET(self) -> None:
        self.handle_request()

    def do_POST(self) -> None:
        self.handle_request()

    def handle_request(self) -> None:
        app, ip = self.app, self.client_ip()
        try:
            flag = app.maintenance()
            if flag is not None:
                self.reply(
                    503,
                    {
                        "status": "maintenance",
                        "message": flag.get("message") or "down for maintenance",
                        "until": flag.get("until"),
                    },
                )
                return
            # Health is exempt: a monitor polling it must never be told 429.
            if self.path.split("?")[0] != "/api/health" and app.over_rate_limit(ip):
                app.logs.app(
                    "WARN", "rate limit exceeded", ip=ip, path=self.path, limit=app.cfg.rate_limit
                )
                self.reply(429, {"error": "rate limit exceeded"})
                return
            if (
                self.path.startswith("/api/")
                and self.path.split("?")[0] != "/api/health"
                and app.injected_error()
            ):
                app.logs.app("ERROR", "injected failure", path=self.path, version=app.cfg.version)
                self.reply(500, {"error": "internal server error"})
                return
            self.route(ip)
        except PyMongoError as exc:
            app.logs.app("ERROR", "database error", path=self.path, error=str(exc)[:200])
            self.reply(503, {"error": "database unavailable"})
        except Exception as exc:  # the API answers 500 and logs, as a real one would
            app.logs.app(
                "ERROR", "unhandled exception", path=self.path, error=f"{type(exc).__name__}: {exc}"
            )
            traceback.print_exc()
            self.reply(500, {"error": "internal server error"})

    def route(self, ip: str) -> None:
        app = self.app
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/") or "/"
        if self.command == "POST" and path == "/api/auth/login":
            length = int(self.headers.get("Content-Length") or 0)
            try:
                payload = json.loads(self.rfile.read(length) or b"{}")
                email, password = str(payload["email"]), str(payload["password"])
            except (ValueError, KeyError, TypeError):
                self.reply(400, {"error": "expected JSON {email, password}"})
                return
            status, body = app.login(email, password, ip)
            self.reply(status, body)
            return
        if self.command != "GET":
            self.reply(405, {"error": "method not allowed"})
            return
        if path == "/api/health":
            status, body = app.health()
            self.reply(status, body)
        elif path == "/api/search":
            destination = query.get("destination", "")
            if not destination:
                self.reply(400, {"error": "destination is required"})
                return
            try:
                page = max(0, int(query.get("page", "0")))
            except ValueError:
                self.reply(400, {"error": "page must be a number"})
                return
            status, body, cache = app.cached(
                f"search:{destination}:{page}", SEARCH_TTL, lambda: app.search(destination, page)
            )
            self.reply(status, body, cache)
        elif path == "/api/trips/popular":
            status, body, cache = app.cached("trips:popular", TRIP_TTL, app.popular)
            self.reply(status, body, cache)
        elif path.startswith("/api/trips/") and path.count("/") == 3:
            raw_id = path.rsplit("/", 1)[1]
            try:
                trip_id = ObjectId(raw_id)
            except (InvalidId, TypeError):
                self.reply(404, {"error": "trip not found"})
                return
            status, body, cache = app.cached(f"trip:{raw_id}", TRIP_TTL, lambda: app.trip(trip_id))
            self.reply(status, body, cache)
        elif path == "/api/bookings":
            try:
                trip_id = ObjectId(query.get("tripId", ""))
            except (InvalidId, TypeError):
                self.reply(400, {"error": "tripId must be an ObjectId"})
                return
            status, body = app.bookings(trip_id, query.get("status"))
            self.reply(status, body)
        elif path == "/api/debug/error":
            app.logs.app("ERROR", "debug error requested", ip=ip, path=path)
            self.reply(500, {"error": "internal server error (debug)"})
        else:
            self.reply(404, {"error": "not found"})


def main() -> int:
    cfg = Config(dict(os.environ))
    Handler.app = App(cfg)
    server = ThreadingHTTPServer((cfg.host, cfg.port), Handler)
    server.daemon_threads = True

    def stop(signum: int, _frame: object) -> None:
        Handler.app.logs.app("INFO", "backend stopping", signal=signal.Signals(signum).name)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    Handler.app.logs.app(
        "INFO",
        "backend started",
        host=cfg.host,
        port=cfg.port,
        version=cfg.version,
        pid=os.getpid(),
    )
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
