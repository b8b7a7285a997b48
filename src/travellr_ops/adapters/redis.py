"""A thin wrapper of redis-py: connection from settings, errors translated to ours.

redis-py is imported only when a connection is first needed.

A Redis Cluster is reached through the URL of any one of its nodes: ``primaries()`` then
gives one connection per primary (SCAN, INFO, DBSIZE and deletes run on each), and single-key
commands go to the primary that owns the key's slot. One server is a "cluster" of one primary.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from travellr_ops.errors import AuthError, OperationFailed, Unreachable, UsageError
from travellr_ops.redact import mask

if TYPE_CHECKING:
    import redis


def validate_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss", "unix") or (
        parts.scheme != "unix" and not parts.hostname
    ):
        raise UsageError(
            f"not a Redis URL: {mask(url)!r}",
            hint="use redis://[:password@]host:port/db (or rediss:// for TLS)",
        )


class RedisNode:
    """One primary and its own connection; every call on it is one round trip."""

    def __init__(self, adapter: RedisAdapter, name: str, client: redis.Redis) -> None:
        self.adapter = adapter
        self.name = name
        self.client = client

    def scan(self, cursor: int, match: str, count: int) -> tuple[int, list[bytes]]:
        with self.adapter.errors(f"scanning {self.name}"):
            next_cursor, keys = self.client.scan(cursor, match=match, count=count)
            return int(next_cursor), [k if isinstance(k, bytes) else k.encode() for k in keys]

    def delete_matching(
        self, match: str, count: int, *, keep: frozenset[bytes] = frozenset()
    ) -> MatchingDeleter:
        """SCAN for ``match`` and UNLINK every key found (but ``keep``); see MatchingDeleter."""
        return MatchingDeleter(self, match, count, keep)

    def memory_scan(self, count: int) -> MemoryScanner:
        """SCAN every key and measure each with MEMORY USAGE; see MemoryScanner."""
        return MemoryScanner(self, count)

    def random_keys(self, n: int) -> list[bytes]:
        """Up to ``n`` keys drawn at random (RANDOMKEY, pipelined; repeats possible)."""
        with self.adapter.errors(f"sampling keys on {self.name}"):
            pipe = self.client.pipeline(transaction=False)
            for _ in range(n):
                pipe.randomkey()
            replies = pipe.execute()
        return [k if isinstance(k, bytes) else str(k).encode() for k in replies if k is not None]

    def dbsize(self) -> int:
        with self.adapter.errors(f"counting keys on {self.name}"):
            return int(self.client.dbsize())

    def info(self, section: str | None = None) -> dict[str, Any]:
        with self.adapter.errors(f"reading INFO of {self.name}"):
            return dict(self.client.info(section) if section else self.client.info())

    def flushdb_async(self) -> None:
        with self.adapter.errors(f"flushing {self.name}"):
            self.client.flushdb(asynchronous=True)

    def memory_usage(self, keys: list[bytes]) -> list[int | None]:
        """MEMORY USAGE of each key in bytes (None: vanished meanwhile), in one pipeline."""
        if not keys:
            return []
        with self.adapter.errors(f"measuring keys on {self.name}"):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.memory_usage(key)
            replies = pipe.execute(raise_on_error=False)
        return [int(size) if isinstance(size, int) else None for size in replies]

    def describe(self, keys: list[bytes]) -> list[tuple[str, int, int | None]]:
        """(type, PTTL in ms, MEMORY USAGE in bytes) of each key, in one pipeline.

        Type "none" marks a key that vanished meanwhile; PTTL is -1 without expiry.
        """
        if not keys:
            return []
        with self.adapter.errors(f"describing keys on {self.name}"):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.type(key)
                pipe.pttl(key)
                pipe.memory_usage(key)
            replies = pipe.execute(raise_on_error=False)
        out: list[tuple[str, int, int | None]] = []
        for i in range(0, len(replies), 3):
            kind, ttl, size = replies[i : i + 3]
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            out.append((kind, int(ttl), int(size) if isinstance(size, int) else None))
        return out


class MatchingDeleter:
    """SCAN + UNLINK over one connection, with the server never waiting for us.

    Round trip by round trip (send SCAN, read, send UNLINK, read) the server would idle while
    this side parses a SCAN reply and packs the next UNLINK, and that is as long as the server
    spends on both. So the next SCAN and the UNLINK of the batch just found are sent before
    their replies are read: while we read and pack, the server works. Iterating yields how many
    keys each UNLINK deleted; ``in_flight`` is how many keys were sent but not yet confirmed.
    On a cluster each key gets its own UNLINK (a multi-key command must stay in one slot),
    pipelined all the same.
    """

    def __init__(self, node: RedisNode, match: str, count: int, keep: frozenset[bytes]) -> None:
        self.node = node
        self.match = match
        self.count = count
        self.keep = keep
        self.in_flight = 0

    def __iter__(self) -> Iterator[int]:
        node = self.node
        one_per_key = node.adapter.is_cluster
        pool = node.client.connection_pool
        conn: Any = None
        #: the replies still to read: None for a SCAN, else the keys of an UNLINK
        expected: deque[list[bytes] | None] = deque()
        try:
            with node.adapter.errors(f"deleting keys on {node.name}"):
                conn = pool.get_connection()
                conn.send_command("SCAN", 0, "MATCH", self.match, "COUNT", self.count)
                expected.append(None)
                while expected:
                    batch = expected.popleft()
                    if batch is not None:
                        replies = (
                            [conn.read_response() for _ in batch]
                            if one_per_key
                            else [conn.read_response()]
                        )
                        self.in_flight -= len(batch)
                        yield sum(int(n) for n in replies)
                        continue
                    reply = conn.read_response()
                    cursor, found = int(reply[0]), [k for k in reply[1] if k not in self.keep]
                    if cursor != 0:
                        conn.send_command("SCAN", cursor, "MATCH", self.match, "COUNT", self.count)
                        expected.append(None)
                    if found:
                        self._send_unlink(conn, found, one_per_key)
                        expected.append(found)
                        self.in_flight += len(found)
        finally:
            if conn is not None:
                if expected:  # stopped early: replies left unread make the connection unusable
                    conn.disconnect()
                pool.release(conn)

    @staticmethod
    def _send_unlink(conn: Any, keys: list[bytes], one_per_key: bool) -> None:
        if one_per_key:
            conn.send_packed_command(conn.pack_commands([("UNLINK", k) for k in keys]))
        else:
            conn.send_command("UNLINK", *keys)


class MemoryScanner:
    """SCAN + pipelined MEMORY USAGE over one connection, the next SCAN always in flight.

    Like MatchingDeleter: while this side reads one batch's sizes, the server already works on
    the next SCAN, so neither waits on the other. Each round trip is one SCAN COUNT batch, so
    other clients' commands interleave between them. Iterating yields the (key, bytes) of each
    batch; a key that vanished meanwhile is left out.
    """

    def __init__(self, node: RedisNode, count: int) -> None:
        self.node = node
        self.count = count

    def __iter__(self) -> Iterator[list[tuple[bytes, int]]]:
        node = self.node
        pool = node.client.connection_pool
        conn: Any = None
        expected: deque[list[bytes] | None] = deque()
        try:
            with node.adapter.errors(f"measuring keys on {node.name}"):
                conn = pool.get_connection()
                conn.send_command("SCAN", 0, "COUNT", self.count)
                expected.append(None)
                while expected:
                    batch = expected.popleft()
                    if batch is not None:
                        sizes = _read_integers(conn, len(batch))
                        yield [
                            (key, size)
                            for key, size in zip(batch, sizes, strict=True)
                            if isinstance(size, int)
                        ]
                        continue
                    reply = conn.read_response()
                    cursor, found = int(reply[0]), list(reply[1])
                    if cursor != 0:
                        conn.send_command("SCAN", cursor, "COUNT", self.count)
                        expected.append(None)
                    if found:
                        conn.send_packed_command(
                            [_memory_usage_commands(found)], check_health=False
                        )
                        expected.append(found)
        finally:
            if conn is not None:
                if expected:  # stopped early: replies left unread make the connection unusable
                    conn.disconnect()
                pool.release(conn)


def _read_integers(conn: Any, n: int) -> list[int | None]:
    """The next ``n`` one-line replies (integers; nil for a vanished key), read fast.

    redis-py's pure-Python reply parser costs about 15 us a reply, several times what the
    server spends on a MEMORY USAGE; these replies are single lines (``:123``, ``_``/``$-1``,
    ``-ERR ...``), so they are read straight from its socket buffer when there is one
    (without hiredis). Otherwise (hiredis, another redis-py) through read_response.
    """
    import redis

    readline = getattr(getattr(getattr(conn, "_parser", None), "_buffer", None), "readline", None)
    if readline is None:
        replies = [conn.read_response(disable_decoding=True) for _ in range(n)]
        return [r if isinstance(r, int) else None for r in replies]
    sizes: list[int | None] = []
    for _ in range(n):
        line = readline()
        kind = line[:1]
        if kind == b":":
            sizes.append(int(line[1:]))
        elif kind == b"-":
            raise redis.ResponseError(line[1:].decode("utf-8", "replace"))
        else:
            sizes.append(None)
    return sizes


def _memory_usage_commands(keys: list[bytes]) -> bytes:
    """MEMORY USAGE of each key in the wire format, packed by hand: redis-py's general packer
    costs more than the server's work per key here."""
    head = b"*3\r\n$6\r\nMEMORY\r\n$5\r\nUSAGE\r\n$"
    return b"".join(head + b"%d\r\n%b\r\n" % (len(k), k) for k in keys)


class RedisAdapter:
    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        validate_url(url)
        self.url = url
        self.timeout_s = timeout_s
        self._client: redis.Redis | None = None
        self._cluster: bool | None = None
        self._primaries: list[RedisNode] | None = None
        #: (first slot, last slot, primary) of a cluster
        self._slots: list[tuple[int, int, RedisNode]] = []

    @property
    def display_url(self) -> str:
        return mask(self.url)

    @property
    def client(self) -> redis.Redis:
        if self._client is None:
            self._client = self._connect(self.url)
        return self._client

    def _connect(self, url: str) -> redis.Redis:
        import redis

        return redis.Redis.from_url(
            url,
            socket_timeout=self.timeout_s,
            socket_connect_timeout=self.timeout_s,
            decode_responses=False,
        )

    @property
    def is_cluster(self) -> bool:
        """Whether the URL's server is a Redis Cluster node (asked once)."""
        if self._cluster is None:
            try:
                info = self.info("cluster")
            except OperationFailed as exc:
                if "SELECT is not allowed in cluster mode" in exc.message:
                    raise _cluster_db_error(self.display_url) from None
                raise
            self._cluster = str(info.get("cluster_enabled", "0")) == "1"
        return self._cluster

    def primaries(self) -> list[RedisNode]:
        """Every primary: the server itself, or each primary of its cluster."""
        if self._primaries is not None:
            return self._primaries
        if not self.is_cluster:
            parts = urlsplit(self.url)
            name = f"{parts.hostname}:{parts.port or 6379}" if parts.hostname else parts.path
            self._primaries = [RedisNode(self, name, self.client)]
            return self._primaries
        parts = urlsplit(self.url)
        if parts.path.strip("/") not in ("", "0"):
            raise _cluster_db_error(self.display_url)
        with self.errors("reading the cluster's slots"):
            slots = self.client.execute_command("CLUSTER SLOTS")  # type: ignore[no-untyped-call]
        by_name: dict[str, RedisNode] = {}
        for entry in slots:
            first, last, primary = int(entry[0]), int(entry[1]), entry[2]
            host = _text(primary[0]) or parts.hostname or "127.0.0.1"
            port = int(primary[1])
            name = f"{host}:{port}"
            if name not in by_name:
                by_name[name] = RedisNode(
                    self, name, self._connect(_with_host(self.url, host, port))
                )
            self._slots.append((first, last, by_name[name]))
        self._slots.sort(key=lambda s: s[0])
        self._primaries = sorted(by_name.values(), key=lambda n: n.name)
        return self._primaries

    def node_for(self, key: str | bytes) -> RedisNode:
        """The primary that holds ``key`` (the only one on a single server)."""
        nodes = self.primaries()
        if not self.is_cluster:
            return nodes[0]
        from redis.crc import key_slot

        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for first, last, node in self._slots:
            if first <= slot <= last:
                return node
        raise OperationFailed(
            f"no primary of the cluster at {self.display_url} serves slot {slot}",
            hint="check `redis-cli --cluster check` for unassigned slots",
        )

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate redis-py's exceptions raised while ``doing`` into ours."""
        import redis

        try:
            yield
        except redis.AuthenticationError as exc:
            raise AuthError(
                f"Redis at {self.display_url} refused our credentials while {doing}: {exc}",
                hint="check the password in redis.url (TRAVELLR_REDIS__URL)",
            ) from None
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise Unreachable(
                f"cannot reach Redis at {self.display_url} while {doing}: {_reason(exc)}",
                hint="is redis-server running? check redis.url (TRAVELLR_REDIS__URL)",
            ) from None
        except redis.ResponseError as exc:
            text = str(exc)
            if text.startswith(("NOAUTH", "WRONGPASS")):
                raise AuthError(
                    f"Redis at {self.display_url} refused {doing}: {text}",
                    hint="check the user/password in redis.url (TRAVELLR_REDIS__URL)",
                ) from None
            # redis-py strips the error code from these two: named from their class
            if isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith("NOPERM"):
                raise AuthError(
                    f"Redis at {self.display_url} refused {doing}: {_coded('NOPERM', text)}",
                    hint="the Redis user in redis.url lacks the permission (ACL): grant it"
                    " (ACL SETUSER), or use a user that has it",
                ) from None
            if isinstance(exc, redis.exceptions.ReadOnlyError) or text.startswith("READONLY"):
                raise OperationFailed(
                    f"Redis at {self.display_url} refused {doing}: {_coded('READONLY', text)}",
                    hint="redis.url names a read-only replica: point it at the primary",
                ) from None
            raise OperationFailed(f"Redis error while {doing}: {text}") from None
        except redis.RedisError as exc:
            raise OperationFailed(f"Redis error while {doing}: {exc}") from None

    def ping(self) -> float:
        """Round-trip time of a PING, in milliseconds."""
        with self.errors("pinging"):
            started = time.perf_counter()
            self.client.ping()
            return (time.perf_counter() - started) * 1000

    def info(self, section: str | None = None) -> dict[str, Any]:
        with self.errors("reading INFO"):
            return dict(self.client.info(section) if section else self.client.info())

    def get(self, key: str) -> bytes | None:
        client = self.node_for(key).client
        with self.errors(f"reading {key}"):
            value = client.get(key)
            if value is None or isinstance(value, bytes):
                return value
            return str(value).encode()

    def set(self, key: str, value: str, expire_at: float | None = None) -> None:
        """SET ``key``; ``expire_at`` (Unix time) makes Redis delete it then (PXAT)."""
        client = self.node_for(key).client
        pxat = None if expire_at is None else int(expire_at * 1000)
        with self.errors(f"writing {key}"):
            client.set(key, value, pxat=pxat)

    def delete(self, key: str) -> bool:
        client = self.node_for(key).client
        with self.errors(f"deleting {key}"):
            return bool(client.unlink(key))

    def pttl(self, key: str) -> int:
        """Milliseconds until ``key`` expires; -1 without expiry, -2 when it is absent."""
        client = self.node_for(key).client
        with self.errors(f"reading the TTL of {key}"):
            return int(client.pttl(key))

    def close(self) -> None:
        for node in self._primaries or []:
            if node.client is not self._client:
                node.client.close()
        self._primaries = None
        self._slots = []
        if self._client is not None:
            self._client.close()
            self._client = None


def _cluster_db_error(display_url: str) -> UsageError:
    return UsageError(
        f"{display_url} is a Redis Cluster node, and a cluster has only database 0",
        hint="use .../0 (or no database) in redis.url",
    )


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def _with_host(url: str, host: str, port: int) -> str:
    """``url`` (credentials, scheme, options kept) aimed at another node of its cluster."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit(parts._replace(netloc=netloc, path="/0"))


def _coded(code: str, text: str) -> str:
    return text if text.startswith(code) else f"{code} {text}"


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Connection refused" in text or "111" in text:
        return "connection refused"
    if "Timeout" in type(exc).__name__ or "timed out" in text:
        return "timed out"
    return mask(text) or type(exc).__name__
