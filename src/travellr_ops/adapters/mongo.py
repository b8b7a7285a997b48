"""A thin wrapper of pymongo: connection from settings, errors translated to ours.

pymongo (and bson) are imported only when a connection or a document parser is first needed.
Results are returned as plain Python/JSON types (``plain``), so nothing above this module
ever sees a bson type.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from travellr_ops.errors import AuthError, ConfigError, OperationFailed, Unreachable, UsageError
from travellr_ops.redact import mask

if TYPE_CHECKING:
    from pymongo import MongoClient
    from pymongo.database import Database

#: server error codes meaning "this server does not offer that": CommandNotFound,
#: NoReplicationEnabled, NotYetInitialized, IllegalOperation, InvalidOptions (a server
#: without $indexStats / replication / profiler support answers with one of these)
UNSUPPORTED_CODES = frozenset({59, 76, 94, 20, 72, 115})
UNAUTHORIZED = 13
AUTH_FAILED = 18


@dataclass
class ConnectionProblem:
    """Why a server could not be reached, in words an on-call engineer can act on."""

    kind: str  # refused, dns, timeout, tls, protocol, replica_set, auth, closed, unknown
    message: str
    hint: str


class MongoAdapter:
    def __init__(
        self,
        uri: str,
        database: str,
        timeout_s: float = 5.0,
        *,
        read_timeout_s: float | None = None,
    ) -> None:
        self.uri = uri
        self.database_name = database
        self.timeout_s = timeout_s
        #: how long one server-side operation may take (backups); None: a multiple of
        #: timeout_s. timeout_s still bounds finding the server.
        self.read_timeout_s = read_timeout_s
        self._client: MongoClient[dict[str, Any]] | None = None

    @property
    def display_uri(self) -> str:
        return mask(self.uri)

    @property
    def client(self) -> MongoClient[dict[str, Any]]:
        if self._client is None:
            from pymongo import MongoClient
            from pymongo.errors import ConfigurationError, InvalidURI

            timeout_ms = int(self.timeout_s * 1000)
            read_ms = max(timeout_ms * 6, 30_000)
            connect_ms = timeout_ms
            if self.read_timeout_s is not None:
                read_ms = int(self.read_timeout_s * 1000)
                # pymongo's heartbeat waits connectTimeoutMS for an answer, and a heartbeat
                # that times out cancels every operation in flight: a server busy with a long
                # read would have it cancelled after timeout_s
                connect_ms = max(timeout_ms, read_ms)
            try:
                self._client = MongoClient(
                    self.uri,
                    serverSelectionTimeoutMS=timeout_ms,
                    connectTimeoutMS=connect_ms,
                    socketTimeoutMS=read_ms,
                    appname="travellr-ops",
                )
            except (InvalidURI, ConfigurationError, ValueError, TypeError) as exc:
                raise ConfigError(
                    f"invalid MongoDB URI {self.display_uri}: {mask(str(exc))}",
                    hint="use mongodb://[user:password@]host:port/database",
                ) from None
        return self._client

    @property
    def db(self) -> Database[dict[str, Any]]:
        return self.client[self.database_name]

    @property
    def uses_tls(self) -> bool:
        return bool(re.search(r"[?&](tls|ssl)=true", self.uri, re.I)) or self.uri.startswith(
            "mongodb+srv://"
        )

    @contextmanager
    def errors(self, doing: str) -> Iterator[None]:
        """Translate pymongo's exceptions raised while ``doing`` into ours."""
        from pymongo import errors

        try:
            yield
        except errors.OperationFailure as exc:
            if exc.code in (UNAUTHORIZED, AUTH_FAILED):
                problem = self.problem(exc)
                raise AuthError(
                    f"MongoDB at {self.display_uri} refused {doing}: {problem.message}",
                    hint=problem.hint,
                ) from None
            raise OperationFailed(f"MongoDB error while {doing}: {_reason(exc)}") from None
        except (errors.ServerSelectionTimeoutError, errors.AutoReconnect) as exc:
            problem = self.problem(exc)
            raise Unreachable(
                f"cannot reach MongoDB at {self.display_uri} while {doing}: {problem.message}",
                hint=problem.hint,
            ) from None
        except errors.ConfigurationError as exc:
            raise ConfigError(f"MongoDB configuration error: {mask(str(exc))}") from None
        except errors.PyMongoError as exc:
            raise OperationFailed(f"MongoDB error while {doing}: {mask(str(exc))}") from None

    def problem(self, exc: Exception) -> ConnectionProblem:
        return classify(exc, tls=self.uses_tls, timeout_s=self.timeout_s)

    def addresses(self) -> list[tuple[str, int]]:
        """The host:port pairs the URI names (no DNS lookup for plain mongodb:// URIs)."""
        from pymongo.uri_parser import parse_uri

        if self.uri.startswith("mongodb+srv://"):
            return []
        try:
            parsed = parse_uri(self.uri, validate=False, warn=True)
        except Exception:  # the client property reports a bad URI with a hint
            return []
        return [(str(h), int(p)) for h, p in parsed["nodelist"]]

    def preflight(self) -> ConnectionProblem | None:
        """A quick TCP look at every address of the URI, before pymongo's patient retries.

        pymongo keeps retrying a refused address until the server-selection timeout ends;
        when every address refuses (or does not resolve) outright, that is known in
        milliseconds. Anything else (no answer, TLS, auth) is left to the driver.
        """
        import socket

        addresses = self.addresses()
        if not addresses:
            return None
        kinds = set()
        for host, port in addresses:
            try:
                with socket.create_connection((host, port), timeout=min(self.timeout_s, 1.0)):
                    return None  # something listens: let the driver find out the rest
            except ConnectionRefusedError:
                kinds.add("refused")
            except socket.gaierror:
                kinds.add("dns")
            except OSError:
                return None  # timeouts, unreachable networks: the driver's timeout decides
        texts = {"refused": "[Errno 111] Connection refused", "dns": "Name or service not known"}
        return classify(
            OSError(texts[sorted(kinds)[-1]] if len(kinds) == 1 else texts["refused"]),
            tls=self.uses_tls,
            timeout_s=self.timeout_s,
        )

    # -- reads ---------------------------------------------------------------------------

    def ping(self) -> float:
        """Round-trip time of a ping, in milliseconds (after the connection is made)."""
        with self.errors("pinging"):
            self.client.admin.command("ping")
            started = time.perf_counter()
            self.client.admin.command("ping")
            return (time.perf_counter() - started) * 1000

    def hello(self) -> dict[str, Any]:
        with self.errors("asking hello"):
            return dict(self.client.admin.command("hello"))

    def command(self, name: str, *, admin: bool = False, **kwargs: Any) -> dict[str, Any]:
        """Run a read command on the configured database (or admin); plain types back.

        A keyword ``collection`` becomes the command's value ({collStats: "bookings"}).
        """
        target = self.client.admin if admin else self.db
        value = kwargs.pop("collection", 1)
        with self.errors(f"running {name}"):
            return plain_doc(target.command(name, value, **kwargs))

    def optional_command(
        self, name: str, *, admin: bool = False, **kwargs: Any
    ) -> dict[str, Any] | None:
        """Like ``command``, but None when this server does not offer it (or not here)."""
        from pymongo.errors import OperationFailure

        target = self.client.admin if admin else self.db
        value = kwargs.pop("collection", 1)
        with self.errors(f"running {name}"):
            try:
                return plain_doc(target.command(name, value, **kwargs))
            except OperationFailure as exc:
                if exc.code in UNSUPPORTED_CODES:
                    return None
                raise

    def coll_stats(self, collection: str) -> dict[str, Any]:
        """collStats of one collection (sizes in bytes).

        MongoDB deprecates the collStats command since 6.2 in favour of the $collStats stage,
        but 6-8 still serve it; some MongoDB-wire servers report real sizes only through it.
        Where it is gone, the stage's storageStats has the same fields.
        """
        stats = self.optional_command("collStats", collection=collection)
        if stats is not None:
            return stats
        with self.errors(f"reading the stats of {collection}"):
            docs = list(self.db[collection].aggregate([{"$collStats": {"storageStats": {}}}]))
        return plain(docs[0].get("storageStats", {})) if docs else {}

    def collection_names(self) -> list[str]:
        with self.errors("listing collections"):
            names = self.db.list_collection_names(filter={"type": "collection"})
        return sorted(n for n in names if not n.startswith("system."))

    def list_indexes(self, collection: str) -> list[dict[str, Any]]:
        with self.errors(f"listing the indexes of {collection}"):
            return [plain(ix) for ix in self.db[collection].list_indexes()]

    def index_usage(self, collection: str) -> list[dict[str, Any]] | None:
        """$indexStats of a collection, or None when the server does not report usage."""
        from pymongo.errors import OperationFailure

        with self.errors(f"reading index usage of {collection}"):
            try:
                return [plain(d) for d in self.db[collection].aggregate([{"$indexStats": {}}])]
            except OperationFailure as exc:
                if exc.code in UNSUPPORTED_CODES or exc.code == 40324:  # unrecognized stage
                    return None
                raise

    def estimated_count(self, collection: str) -> int:
        with self.errors(f"counting {collection}"):
            return int(self.db[collection].estimated_document_count())

    def sample_value(self, collection: str, field: str) -> tuple[bool, Any]:
        """(found, value) of ``field`` in one document of ``collection`` that has it.

        The raw (bson) value is returned, to be passed back to ``explain_find``.
        """
        with self.errors(f"sampling {collection}.{field}"):
            doc = self.db[collection].find_one({field: {"$exists": True}}, {field: 1, "_id": 0})
        if doc is None:
            return False, None
        value: Any = doc
        for part in field.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        return True, value

    def explain_find(
        self,
        collection: str,
        filter: Mapping[str, Any],
        sort: Mapping[str, Any] | None = None,
        limit: int | None = None,
    ) -> dict[str, Any]:
        """The executionStats explain of a find (the query runs; nothing is changed)."""
        find: dict[str, Any] = {"find": collection, "filter": dict(filter)}
        if sort:
            find["sort"] = dict(sort)
        if limit:
            find["limit"] = limit
        with self.errors(f"explaining a query on {collection}"):
            return plain_doc(self.db.command("explain", find, verbosity="executionStats"))

    def profile_entries(
        self, since: datetime | None, min_millis: float | None, limit: int
    ) -> list[dict[str, Any]]:
        """The newest ``limit`` profiler records (system.profile), newest first."""
        query: dict[str, Any] = {}
        if since is not None:
            query["ts"] = {"$gte": since}
        if min_millis is not None:
            query["millis"] = {"$gte": min_millis}
        with self.errors("reading the profiler (system.profile)"):
            cursor = self.db["system.profile"].find(query).sort("ts", -1).limit(limit)
            return [plain(d) for d in cursor]

    # -- changes (callers go through Guard.mutation first) --------------------------------

    def create_index(
        self, collection: str, keys: Sequence[tuple[str, Any]], options: Mapping[str, Any]
    ) -> str:
        with self.errors(f"creating an index on {collection}"):
            return str(self.db[collection].create_index(list(keys), **dict(options)))

    def set_profile(self, level: int, slowms: int | None) -> dict[str, Any]:
        """Set the profiler level of the configured database; the previous settings back."""
        kwargs: dict[str, Any] = {} if slowms is None else {"slowms": slowms}
        with self.errors("setting the profiler level"):
            return plain_doc(self.db.command("profile", level, **kwargs))

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> MongoAdapter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def local_mongo_servers(exclude: int, timeout_s: float = 0.5, limit: int = 64) -> list[str]:
    """Addresses on this machine's loopback where a MongoDB server answers ``hello``.

    For telling "the server is stopped" from "the port is wrong" when a local URI is refused:
    the listening ports come from /proc/net/tcp (no traffic), and each gets one hello.
    """
    from concurrent.futures import ThreadPoolExecutor

    ports = sorted(p for p in _loopback_listeners() if p != exclude)[:limit]

    def answers(port: int) -> bool:
        from pymongo import MongoClient

        client: MongoClient[dict[str, Any]] = MongoClient(
            "127.0.0.1",
            port,
            directConnection=True,
            serverSelectionTimeoutMS=int(timeout_s * 1000),
            connectTimeoutMS=int(timeout_s * 1000),
            socketTimeoutMS=int(timeout_s * 1000),
        )
        try:
            client.admin.command("hello")
            return True
        except Exception:
            return False
        finally:
            client.close()

    if not ports:
        return []
    with ThreadPoolExecutor(max_workers=min(16, len(ports))) as pool:
        found = list(pool.map(answers, ports))
    return [f"127.0.0.1:{p}" for p, ok in zip(ports, found, strict=True) if ok]


def _loopback_listeners() -> set[int]:
    """TCP ports in LISTEN state on 127.0.0.1 or on every address (Linux /proc)."""
    ports: set[int] = set()
    wanted = {
        "0100007F",
        "00000000",
        "00000000000000000000000000000000",
        "00000000000000000000000001000000",
        "0000000000000000FFFF00000100007F",
    }
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                lines = fh.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A = LISTEN
                continue
            address, _, port = fields[1].partition(":")
            if address in wanted:
                ports.add(int(port, 16))
    return ports


def plain(doc: Any) -> Any:
    """bson types (ObjectId, Timestamp, datetime, Decimal128...) as plain JSON types."""
    from bson import json_util

    return json.loads(json_util.dumps(doc, json_options=json_util.RELAXED_JSON_OPTIONS))


def plain_doc(doc: Mapping[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = plain(doc)
    return result


def parse_document(text: str, what: str) -> dict[str, Any]:
    """A JSON (MongoDB Extended JSON) object from the command line, as bson values.

    Raises UsageError naming ``what`` and the problem.
    """
    from bson import json_util
    from bson.errors import InvalidId

    try:
        value = json_util.loads(text)
    except (ValueError, TypeError, InvalidId) as exc:
        raise UsageError(
            f"{what} is not valid JSON: {exc}",
            hint='quote it for the shell, e.g. --filter \'{"status": "confirmed"}\'',
        ) from None
    if not isinstance(value, dict):
        raise UsageError(
            f"{what} must be a JSON object, not {type(value).__name__}",
            hint='e.g. {"tripId": 12, "status": "confirmed"}',
        )
    return value


def _reason(exc: Exception) -> str:
    details = getattr(exc, "details", None)
    if isinstance(details, Mapping) and details.get("errmsg"):
        return mask(f"{details['errmsg']} (code {details.get('code')})")
    return mask(str(exc).split(", full error")[0])


_TLS_WORDS = ("SSL", "TLS", "CERTIFICATE", "WRONG_VERSION_NUMBER", "HANDSHAKE")


def classify(exc: Exception, *, tls: bool = False, timeout_s: float = 5.0) -> ConnectionProblem:
    """What a connection failure most likely means, with what to do about it.

    pymongo reports server-selection failures as one text (the topology description with each
    server's last error), so this reads that text.
    """
    from pymongo import errors

    text = str(exc)
    upper = text.upper()
    if isinstance(exc, errors.OperationFailure) and exc.code == AUTH_FAILED:
        return ConnectionProblem(
            "auth",
            "authentication failed (wrong user, password or authSource)",
            "check the user and password in mongo.uri, and authSource= (users usually live"
            " in admin)",
        )
    if isinstance(exc, errors.OperationFailure) and exc.code == UNAUTHORIZED:
        return ConnectionProblem(
            "auth",
            f"not authorized: {_reason(exc)}",
            "the server requires a login, or this user lacks the role: put user:password in"
            " mongo.uri, or grant the role (clusterMonitor, readAnyDatabase, dbAdmin)",
        )
    if "Connection refused" in text or "[Errno 111]" in text:
        return ConnectionProblem(
            "refused",
            "connection refused: nothing listens on that host and port",
            "the server is stopped, or the port in mongo.uri is wrong (service status mongodb)",
        )
    if any(
        s in text
        for s in (
            "Name or service not known",
            "nodename nor servname",
            "Temporary failure in name resolution",
            "No address associated",
            "getaddrinfo failed",
            "DNS",
        )
    ):
        return ConnectionProblem(
            "dns",
            "the host name does not resolve (DNS)",
            "check the host in mongo.uri; from inside a cluster use the service name",
        )
    if any(w in upper for w in _TLS_WORDS):
        return ConnectionProblem(
            "tls",
            "the TLS handshake failed",
            "check tls=true/false and the CA (tlsCAFile) in mongo.uri against the server's"
            " TLS settings",
        )
    if "replica set name" in text or "replicaSet" in text:
        return ConnectionProblem(
            "replica_set",
            "no member of the replica set named in the URI answered",
            "check replicaSet= in mongo.uri against rs.status() (the set's real name)",
        )
    if "ProtocolError" in text or ("expected" in text and "response id" in text):
        return ConnectionProblem(
            "protocol",
            "something answers on that port, but it is not a MongoDB server",
            "the port in mongo.uri is wrong (is it the API's or Redis's port?)",
        )
    if "connection closed" in text or "Connection reset" in text:
        if not tls:
            return ConnectionProblem(
                "closed",
                "the server closed the connection during the handshake",
                "the server may require TLS: add tls=true (and tlsCAFile) to mongo.uri",
            )
        return ConnectionProblem(
            "closed",
            "the server closed the connection during the handshake",
            "check the server's log; it may refuse this client's TLS certificate",
        )
    if "No servers found yet" in text or "timed out" in text or "Timeout" in text:
        if tls:
            return ConnectionProblem(
                "tls",
                f"no answer to the TLS handshake within {timeout_s:g} s",
                "the server may not speak TLS: drop tls=true from mongo.uri, or check the port",
            )
        return ConnectionProblem(
            "timeout",
            f"no answer within {timeout_s:g} s (the port accepts connections but nothing replies)",
            "a firewall drops packets, or the server is overloaded or hung; check the host,"
            " the port and mongo.timeout_s",
        )
    return ConnectionProblem(
        "unknown",
        mask(text.split(", Timeout")[0].split(",")[0]),
        "check mongo.uri (config show) and the server's log",
    )


def diagnose(exc: Exception) -> str:
    """What a server-selection failure most likely means, in a few words."""
    return classify(exc).message
