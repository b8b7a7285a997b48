"""`security check`: the platform's security posture, each check a verdict with its fix.

Verdicts (``vocab.verdict``): pass, fail (with the fix), unknown (could not tell: a server is
down, a command is disabled) and skipped (does not apply here). Servers are probed the way an
attacker on the network would first try: without credentials.
"""

from __future__ import annotations

import ipaddress
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from travellr_ops.errors import AuthError, TravellrError
from travellr_ops.runtime import Runtime
from travellr_ops.settings import Settings
from travellr_ops.vocab.verdict import Verdict


@dataclass
class PostureCheck:
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def is_local(url: str) -> bool:
    hosts = [h.rsplit("@", 1)[-1] for h in urlsplit(url).netloc.split(",")]
    for netloc in hosts:
        host = urlsplit(f"//{netloc}").hostname or ""
        if host == "localhost":
            continue
        try:
            if not ipaddress.ip_address(host).is_loopback:
                return False
        except ValueError:
            return False
    return True


def _uses_tls(url: str) -> bool:
    parts = urlsplit(url)
    query = parts.query.lower()
    return (
        parts.scheme in ("https", "rediss", "mongodb+srv")
        or "tls=true" in query
        or "ssl=true" in query
    )


def redis_checks(rt: Runtime) -> list[PostureCheck]:
    try:
        with rt.redis(url=_without_credentials(rt.settings.redis.url)) as anonymous:
            try:
                anonymous.ping()
                auth = PostureCheck(
                    "redis.auth",
                    Verdict.FAIL,
                    f"{anonymous.display_url} answers commands without a password",
                    "set `requirepass` (or ACL users with `user ... on >password`) in redis.conf"
                    " and put the password in redis.url",
                )
            except AuthError:
                auth = PostureCheck(
                    "redis.auth", Verdict.PASS, "a password (or ACL user) is required"
                )
    except TravellrError as exc:
        return [PostureCheck("redis.auth", Verdict.UNKNOWN, exc.message)]
    try:
        with rt.redis() as redis, redis.errors("reading bind and protected-mode"):
            config = redis.client.config_get("bind")
            config |= redis.client.config_get("protected-mode")
    except TravellrError as exc:
        return [
            auth,
            PostureCheck(
                "redis.exposure",
                Verdict.UNKNOWN,
                f"CONFIG GET refused ({exc.message}); check bind and protected-mode in redis.conf",
            ),
        ]
    bind = str(config.get("bind", "")).split()
    protected = str(config.get("protected-mode", "yes"))
    everywhere = not bind or any(b.lstrip("-") in ("*", "0.0.0.0", "::", "::*") for b in bind)
    if everywhere and protected == "no" and auth.verdict == Verdict.FAIL:
        exposure = PostureCheck(
            "redis.exposure",
            Verdict.FAIL,
            f"bound to all interfaces ({' '.join(bind) or 'no bind'}) with protected-mode off "
            "and no password: anyone who reaches the port owns the data",
            "bind 127.0.0.1 (or the private interface) and set protected-mode yes, and a password",
        )
    elif everywhere and protected == "no":
        exposure = PostureCheck(
            "redis.exposure",
            Verdict.FAIL,
            f"bound to all interfaces ({' '.join(bind) or 'no bind'}) with protected-mode off",
            "bind only the interfaces clients use; keep protected-mode yes",
        )
    else:
        exposure = PostureCheck(
            "redis.exposure",
            Verdict.PASS,
            f"bind {' '.join(bind) or '-'}, protected-mode {protected}",
        )
    return [auth, exposure]


def mongo_checks(rt: Runtime) -> list[PostureCheck]:
    try:
        with rt.mongo(uri=_without_credentials(rt.settings.mongo.uri)) as anonymous:
            try:
                anonymous.command("listDatabases", admin=True, nameOnly=True)
                auth = PostureCheck(
                    "mongo.auth",
                    Verdict.FAIL,
                    f"{anonymous.display_uri} lists its databases to a client without credentials",
                    "start mongod with --auth (security.authorization: enabled), create users,"
                    " and put the user in mongo.uri",
                )
            except AuthError:
                auth = PostureCheck("mongo.auth", Verdict.PASS, "authentication is required")
    except TravellrError as exc:
        auth = PostureCheck("mongo.auth", Verdict.UNKNOWN, exc.message)
    return [auth]


def tls_checks(settings: Settings) -> list[PostureCheck]:
    checks = []
    for name, url in (
        ("mongo.uri", settings.mongo.uri),
        ("redis.url", settings.redis.url),
        ("api.url", settings.api.url),
    ):
        shown = _without_credentials(url)
        if is_local(url):
            checks.append(PostureCheck(f"tls.{name}", Verdict.PASS, f"{shown} is on this host"))
        elif _uses_tls(url):
            checks.append(PostureCheck(f"tls.{name}", Verdict.PASS, f"{shown} uses TLS"))
        else:
            fix = {
                "mongo.uri": "add tls=true to mongo.uri (and serve TLS: net.tls.mode requireTLS)",
                "redis.url": "use rediss:// (Redis 6+ tls-port)",
                "api.url": "use https://",
            }[name]
            checks.append(
                PostureCheck(
                    f"tls.{name}", Verdict.FAIL, f"{shown} crosses the network in clear", fix
                )
            )
    return checks


def mode_checks(settings: Settings, config_file: Path | None) -> list[PostureCheck]:
    checks = [
        _mode("files.backup_dir", settings.backup.dir, directory=True),
        _mode("files.state_dir", settings.state_dir, directory=True),
    ]
    if config_file is None:
        checks.append(PostureCheck("files.config", Verdict.SKIPPED, "no config file is in use"))
    else:
        check = _mode("files.config", config_file, directory=False)
        if check.verdict in (Verdict.PASS, Verdict.FAIL):
            text = config_file.read_text(errors="replace") if config_file.is_file() else ""
            secret = _holds_secret(text)
            mode = config_file.stat().st_mode
            if secret and mode & (stat.S_IRGRP | stat.S_IROTH):
                check = PostureCheck(
                    "files.config",
                    Verdict.FAIL,
                    f"{config_file} holds a password ({secret}) and is readable by "
                    f"{'others' if mode & stat.S_IROTH else 'its group'} "
                    f"(mode {stat.S_IMODE(mode):o})",
                    f"chmod 600 {config_file} (or move the secret to TRAVELLR_* environment)",
                )
        checks.append(check)
    return checks


def _holds_secret(text: str) -> str:
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        if (
            "://" in line
            and "@" in line.split("://", 1)[1]
            and ":" in line.split("://", 1)[1].split("@")[0]
        ):
            return line.split("=", 1)[0].strip() or "a URI"
        key = line.split("=", 1)[0].strip().lower()
        if "=" in line and any(w in key for w in ("password", "secret", "token")):
            return key
    return ""


def _mode(name: str, path: Path, *, directory: bool) -> PostureCheck:
    try:
        info = path.stat()
    except FileNotFoundError:
        return PostureCheck(name, Verdict.SKIPPED, f"{path} does not exist")
    except OSError as exc:
        return PostureCheck(name, Verdict.UNKNOWN, f"{path}: {exc.strerror or exc}")
    mode = stat.S_IMODE(info.st_mode)
    if mode & (stat.S_IROTH | stat.S_IWOTH):
        what = "readable" if mode & stat.S_IROTH else "writable"
        return PostureCheck(
            name,
            Verdict.FAIL,
            f"{path} is world-{what} (mode {mode:o})",
            f"chmod {'700' if directory else '600'} {path}",
        )
    return PostureCheck(name, Verdict.PASS, f"{path} mode {mode:o}")


def image_check(rt: Runtime) -> PostureCheck:
    if not rt.has_platform:
        return PostureCheck("image.tag", Verdict.SKIPPED, 'no service platform (platform = "none")')
    try:
        with rt.platform() as platform:
            statuses = platform.status("backend")
    except TravellrError as exc:
        return PostureCheck("image.tag", Verdict.UNKNOWN, exc.message)
    image = next((s.image for s in statuses if s.image), None)
    if not image:
        return PostureCheck(
            "image.tag", Verdict.UNKNOWN, "the platform reports no image for the backend"
        )
    name = image.rsplit("/", 1)[-1]
    tag = name.split("@", 1)[0].rsplit(":", 1)[1] if ":" in name.split("@", 1)[0] else "latest"
    if "@sha256:" in image or tag != "latest":
        return PostureCheck("image.tag", Verdict.PASS, f"backend image {image} is pinned")
    return PostureCheck(
        "image.tag",
        Verdict.FAIL,
        f"backend image {image} is `latest`: a restart can silently change the release",
        "deploy a versioned tag (or a digest) and record it",
    )


def maintenance_check(rt: Runtime, now: Callable[[], datetime]) -> PostureCheck:
    from travellr_ops.ops.maintenance import status

    try:
        with rt.redis() as redis:
            flag = status(redis, rt.settings.maintenance.key)
    except TravellrError as exc:
        return PostureCheck("maintenance.flag", Verdict.UNKNOWN, exc.message)
    if not flag.on:
        return PostureCheck("maintenance.flag", Verdict.PASS, "maintenance mode is off")
    if flag.until:
        try:
            until = datetime.fromisoformat(flag.until.replace("Z", "+00:00"))
        except ValueError:
            until = None
        if until is not None and until.astimezone(UTC) < now():
            return PostureCheck(
                "maintenance.flag",
                Verdict.FAIL,
                f"maintenance mode is on past its until ({flag.until}; set by {flag.by})",
                "travellr-ops maintenance off (the backend answers 503 to everyone meanwhile)",
            )
    return PostureCheck(
        "maintenance.flag", Verdict.PASS, f"maintenance mode is on until {flag.until or '`off`'}"
    )


def check(rt: Runtime) -> list[PostureCheck]:
    return [
        *redis_checks(rt),
        *mongo_checks(rt),
        *tls_checks(rt.settings),
        *mode_checks(rt.settings, rt.config_file),
        image_check(rt),
        maintenance_check(rt, lambda: datetime.now(UTC)),
    ]
