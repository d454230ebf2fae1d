"""ClickHouse's HTTP interface over the embedded chDB engine, served by the process that owns it.

chDB lets one process open a data directory, yet API replicas and analysts need the usage store
too. This front answers them in the owner process, on the engine already open (each request
gets its own ``chdb.connect`` handle on the same path: the handles share the engine, run
queries in parallel and keep their ``USE``/``SET`` state to themselves), so unmodified
clickhouse-connect, ``curl`` or any ClickHouse HTTP client works against it.

Two principals: user ``abaxus`` with the usage password has full access (API replicas); any
user with a password the ``authenticate`` callback accepts (an API key of read or admin scope)
is an analyst: read-only, time- and memory-bounded, and limited to ``abaxus.events`` and
``abaxus.events_dedup``. Analysts' queries are checked with ClickHouse's own parser and
analyzer before they run (see ``_AnalystGate``).
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import re
import socket
import threading
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import chdb

__all__ = ["UsageFront"]

logger = logging.getLogger(__name__)

_FULL_USER = "abaxus"
_PUBLIC_TABLES = frozenset({"abaxus.events", "abaxus.events_dedup"})
_DESCRIBABLE = [["TableExpression (children 1)", f"TableIdentifier {name}"]
                for table in ("abaxus.events", "abaxus.events_dedup") for name in (table, table.split(".")[1])]
# What clickhouse-connect reads while connecting (version, timezone, settings): SELECT without
# FROM reads system.one.
_CLIENT_TABLES = frozenset({"system.one", "system.settings"})
# Scalar functions that read outside the query's tables: file() reads any file of the host
# (even under readonly), joinGet/dict* read tables named in a string, hasColumnInTable probes them.
_DENIED_FUNCTIONS = ("file", "joinget", "joingetornull", "dict", "hascolumnintable")
# HTTP parameters that are not engine settings (ClickHouse's own, and clickhouse-connect's
# progress and compression switches: this front neither streams progress nor compresses).
_TRANSPORT = frozenset({
    "query", "database", "default_format", "user", "password", "query_id", "session_id", "session_timeout",
    "session_check", "quota_key", "buffer_size", "wait_end_of_query", "client_protocol_version", "role",
    "stacktrace", "send_progress_in_http_headers", "http_headers_progress_interval_ms", "enable_http_compression",
})
# chdb's Python layer turns these "formats" into DataFrames or Arrow tables instead of bytes.
_PYTHON_FORMATS = frozenset({"dataframe", "arrowtable", "datastore"})
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEAD_LIMIT = 1 << 20  # an INSERT's statement must end (FORMAT name) within the body's first MiB
_ANALYST_BODY_LIMIT = 1 << 20
# ClickHouse's exceptionCodeToHTTPStatus, for the codes this front meets.
_STATUS = {194: 401, 192: 403, 193: 403, 497: 403, 516: 403, 6: 400, 27: 400, 36: 400, 53: 400, 62: 400,
           117: 400, 457: 400, 46: 404, 47: 404, 50: 404, 60: 404, 73: 404, 81: 404, 115: 404, 48: 501, 159: 408}
_CODE = re.compile(r"Code: (\d+)\.")
_NAMES = {48: "NOT_IMPLEMENTED", 62: "SYNTAX_ERROR", 73: "UNKNOWN_FORMAT", 115: "UNKNOWN_SETTING",
          164: "READONLY", 194: "REQUIRED_PASSWORD", 202: "QUERY_IS_TOO_LARGE", 497: "ACCESS_DENIED",
          516: "AUTHENTICATION_FAILED"}

_Principal = Literal["full", "analyst"]


class _ClickHouseError(Exception):
    """An answer in ClickHouse's error form: clickhouse-connect raises DatabaseError with its text."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text

    @classmethod
    def of(cls, code: int, message: str) -> _ClickHouseError:
        return cls(code, f"Code: {code}. DB::Exception: {message} ({_NAMES.get(code, 'UNKNOWN_EXCEPTION')})")

    @classmethod
    def from_engine(cls, exc: Exception) -> _ClickHouseError:
        """The engine's own message, from its "Code: N." on (chdb prefixes some with its own words)."""
        text = str(exc)
        found = _CODE.search(text)
        return cls(int(found.group(1)), text[found.start():].strip()) if found else cls(1001, text.strip())


# ---- SQL framing: where an INSERT's data begins and which FORMAT a query asks for ----------------
def _words(sql: bytes, start: int = 0) -> Iterator[tuple[int, int, int]]:
    """(start, end, bracket depth) of each bare word outside quotes and comments.

    Framing only (an INSERT's data offset, the output format); it decides nothing about access,
    which the engine's parser does (``_AnalystGate``).
    """
    i, depth, n = start, 0, len(sql)
    while i < n:
        c = sql[i:i + 1]
        if c in b"'\"`":
            i += 1
            while i < n and sql[i:i + 1] != c:
                i += 2 if sql[i:i + 1] == b"\\" else 1
            i += 1
        elif sql.startswith(b"--", i) or sql.startswith(b"# ", i):
            end = sql.find(b"\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith(b"/*", i):
            end = sql.find(b"*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in b"([{":
            depth, i = depth + 1, i + 1
        elif c in b")]}":
            depth, i = depth - 1, i + 1
        elif c.isalnum() or c == b"_":
            j = i
            while j < n and (sql[j:j + 1].isalnum() or sql[j:j + 1] == b"_"):
                j += 1
            yield i, j, depth
            i = j
        else:
            i += 1


def _first_word(sql: bytes) -> str:
    return next((sql[a:b].decode("ascii", "replace").upper() for a, b, _ in _words(sql)), "")


def _format_clause(sql: bytes, first: bool) -> tuple[int, int, int] | None:
    """(keyword start, name start, name end) of an INSERT's first or a query's closing ``FORMAT name``.

    A query's FORMAT closes it (only SETTINGS may follow), so a column or alias named ``format``
    is not taken for one. The first one is found without reading on into an INSERT's data.
    """
    words = _words(sql)
    found, after = None, None
    for a, b, depth in words:
        if found and after is None:
            after = sql[a:b].upper() if depth == 0 else b"("
        if depth == 0 and sql[a:b].upper() == b"FORMAT":
            name = next(words, None)
            if name and name[2] == 0 and not sql[b:name[0]].strip():
                if first:
                    return a, name[0], name[1]
                found, after = (a, name[0], name[1]), None
    return found if after in (None, b"SETTINGS") else None


def _data_start(sql: bytes, name_end: int) -> int:
    """ClickHouse's rule: an INSERT's data starts after the first newline, else after the blanks."""
    i = name_end
    while i < len(sql) and sql[i:i + 1] in b" \t\r\f":
        i += 1
    return i + 1 if sql[i:i + 1] == b"\n" else i


# ---- request bodies ------------------------------------------------------------------------------
def _decoder(encoding: str) -> Callable[[bytes], bytes] | None:
    """A streaming decompressor for a Content-Encoding clickhouse-connect or curl may send."""
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "deflate"):
        return zlib.decompressobj(47 if encoding == "gzip" else 15).decompress
    try:
        if encoding == "lz4":
            import lz4.frame  # type: ignore[import-untyped]  # noqa: PLC0415 - optional: only clients that have lz4 send it

            return lz4.frame.LZ4FrameDecompressor().decompress  # type: ignore[no-any-return]
        if encoding == "zstd":
            from backports.zstd import ZstdDecompressor  # noqa: PLC0415 - optional, like lz4

            return ZstdDecompressor().decompress
    except ImportError:
        pass
    raise _ClickHouseError.of(48, f"Content-Encoding {encoding!r} is not supported here; send the body uncompressed "
                                  "(clickhouse-connect: compress=False).")


class _Body:
    """The request body as decoded chunks: Content-Length or chunked, then decompressed."""

    def __init__(self, rfile: Any, headers: Any) -> None:
        self._rfile = rfile
        self._length = int(headers.get("Content-Length") or 0)
        self._chunked = "chunked" in (headers.get("Transfer-Encoding") or "").lower()
        self._decode = _decoder((headers.get("Content-Encoding") or "").strip().lower())

    def _raw(self) -> Iterator[bytes]:
        if not self._chunked:
            left = self._length
            while left > 0:
                part = self._rfile.read(min(left, 1 << 20))
                if not part:
                    raise _ClickHouseError.of(27, "The request body ended before its Content-Length.")
                left -= len(part)
                yield part
            return
        while True:
            size = int(self._rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return
            yield self._rfile.read(size)
            self._rfile.readline()

    def __iter__(self) -> Iterator[bytes]:
        for part in self._raw():
            data = self._decode(part) if self._decode else part
            if data:
                yield data

    def read(self, limit: int | None = None) -> bytes:
        out = bytearray()
        for part in self:
            out += part
            if limit is not None and len(out) > limit:
                raise _ClickHouseError.of(202, f"An analyst's query may be at most {limit} bytes.")
        return bytes(out)


# ---- the analysts' gate --------------------------------------------------------------------------
class _AnalystGate:
    """Lets through one SELECT that reads only the public tables, as checked by the engine itself.

    1. ``formatQuerySingleLine`` re-renders the SQL with ClickHouse's parser: one statement
       (chDB would otherwise run every statement of ``a; b``), canonical text; that text is
       what runs, so what is checked is what executes.
    2. ``EXPLAIN AST`` (parsing only): a SELECT, with no INTO OUTFILE (chDB writes the file, even
       read-only and even under EXPLAIN QUERY TREE) and no FORMAT left; or a DESCRIBE whose
       tree is exactly that of a public table (what a client's schema browser asks).
    3. ``EXPLAIN QUERY TREE run_passes=0`` (built, not analysed, so nothing is evaluated yet): no
       table function, no denied function, no identifier naming a non-public table.
    4. ``EXPLAIN QUERY TREE`` (analysed: names resolved the way the query will run, CTEs and
       all): every table read is public. Step 3 keeps this step's constant folding and scalar
       subqueries (which the analyzer evaluates) away from files and non-public tables.
    A forged line (an alias may hold a newline) can only add a line to a dump, never hide one;
    every field is read after the last label a user's alias could imitate. Beneath the gate the
    handle runs with ``readonly=1``, so a write, DDL or setting change fails in the engine anyway.
    """

    def __init__(self, conn: Any, params: Mapping[str, str]) -> None:
        self._conn = conn
        self._params = dict(params)

    def _lines(self, sql: str) -> list[str]:
        return [str(x) for x in self._conn.query(sql, "TabSeparatedRaw", params=self._params).bytes().decode().splitlines()]

    def admit(self, sql: str) -> tuple[str, str | None]:
        """The statement to run (without FORMAT) and the format it asked for, or refuse."""
        literal = "'" + sql.replace("\\", "\\\\").replace("'", "\\'") + "'"
        canonical = self._conn.query(f"SELECT formatQuerySingleLine({literal})", "TabSeparatedRaw").bytes().decode().strip()
        raw = canonical.encode()
        fmt = None
        clause = _format_clause(raw, first=False)
        if clause:
            fmt = raw[clause[1]:clause[2]].decode()
            raw = raw[:clause[0]] + raw[clause[2]:]
        statement = raw.decode().strip()
        ast = self._lines(f"EXPLAIN AST {statement}")
        if ast and ast[0].startswith("DescribeQuery"):
            if [line.strip() for line in ast[1:]] not in _DESCRIBABLE:
                raise _refused("Analysts may DESCRIBE only abaxus.events and abaxus.events_dedup.")
            return statement, fmt
        if not ast or not ast[0].startswith("SelectWithUnionQuery"):
            raise _refused("Analysts may run SELECT (and DESCRIBE) queries only.")
        if any(line.startswith(" ") and not line.startswith("  ") and line.split()[:1] not in (["ExpressionList"], ["Set"])
               for line in ast[1:]):
            raise _refused("INTO OUTFILE and a FORMAT clause other than the query's last one are not available to analysts.")
        bare, qualified = self._hidden_tables()
        self._check_tree(self._lines(f"EXPLAIN QUERY TREE run_passes=0 {statement}"), bare, qualified)
        self._check_tree(tree := self._lines(f"EXPLAIN QUERY TREE {statement}"), bare, qualified)
        for line in tree:
            head = line.lstrip()
            if head.startswith("TABLE id:"):
                name = line.rsplit(", table_name: ", 1)[-1].split(", ")[0]
                if name not in _PUBLIC_TABLES | _CLIENT_TABLES:
                    raise _refused(f"Analysts may read only {' and '.join(sorted(_PUBLIC_TABLES))}, not {name}.")
        return statement, fmt

    def _hidden_tables(self) -> tuple[set[str], set[tuple[str, str]]]:
        rows = self._conn.query("SELECT database, name FROM system.tables", "TabSeparatedRaw").bytes().decode().splitlines()
        pairs = {(d, t) for d, _, t in (r.partition("\t") for r in rows)} - {
            tuple(n.split(".")) for n in _PUBLIC_TABLES | _CLIENT_TABLES}
        return {t for d, t in pairs if d == "abaxus"}, pairs

    @staticmethod
    def _check_tree(lines: list[str], bare: set[str], qualified: set[tuple[str, str]]) -> None:
        if not lines or not lines[0].startswith(("QUERY id: 0", "UNION id: 0")):
            raise _refused("Analysts may run SELECT (and DESCRIBE) queries only.")
        for line in lines:
            head = line.lstrip()
            if head.startswith("TABLE_FUNCTION"):
                raise _refused("Table functions (file, url, remote, …) are not available to analysts.")
            if head.startswith("FUNCTION id:"):
                name = line.rsplit(", function_name: ", 1)[-1].split(", ")[0].lower()
                if name.startswith(_DENIED_FUNCTIONS):
                    raise _refused(f"The function {name} is not available to analysts.")
            if head.startswith("IDENTIFIER id:"):
                words = re.findall(r"\w+", head)
                if any(w in bare for w in words) or any(p in qualified for p in pairwise(words)):
                    raise _refused(f"Analysts may read only {' and '.join(sorted(_PUBLIC_TABLES))}.")


def _refused(message: str) -> _ClickHouseError:
    return _ClickHouseError.of(497, f"analyst: Not enough privileges. {message} Query abaxus.events_dedup (each event "
                                    "once) or abaxus.events with FINAL; see the usage-store section of the API contract.")


# ---- HTTP -----------------------------------------------------------------------------------------
def _content_type(fmt: str) -> str:
    lower = fmt.lower()
    if lower.startswith(("tabseparated", "tsv")):
        return "text/tab-separated-values; charset=UTF-8"
    if lower.startswith("json"):
        return "application/json; charset=UTF-8"
    if lower.startswith("csv"):
        return "text/csv; charset=UTF-8"
    return "text/plain; charset=UTF-8" if lower.startswith(("pretty", "vertical", "markdown")) else "application/octet-stream"


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # stop() waits for requests in flight: chDB closes only when their handles do
    front: UsageFront

    def __init__(self, address: tuple[str, int], front: UsageFront) -> None:
        super().__init__(address, _Handler)
        self.front = front
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "Abaxus-usage-front"
    timeout = 120  # an idle keep-alive connection closes after this (its Keep-Alive header says less)
    # Headers and body leave in one segment, unhindered by Nagle: otherwise the client's delayed ACK
    # adds ~40 ms to every request (measured: clickhouse-connect's SELECT 1 took 47 ms, now 3 ms).
    disable_nagle_algorithm = True
    wbufsize = 1 << 16
    server: _Server

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        super().finish()

    def log_message(self, format: str, *args: Any) -> None:  # the stdlib's parameter name
        """Nothing from the request line: its query string may hold a password."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        logger.debug("usage front %s %s -> %s", self.command, urlsplit(self.path).path, code)

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def _serve(self) -> None:
        url = urlsplit(self.path)
        if url.path in ("/ping", "/replicas_status") or (url.path == "/" and not url.query and self.command == "GET"):
            self._send(200, b"Ok.\n", {"Content-Type": "text/plain; charset=UTF-8"})
            return
        query_id = str(uuid.uuid4())
        try:
            if url.path != "/":
                raise _ClickHouseError.of(48, f"{url.path} is not served here; send queries to / (ClickHouse's HTTP interface).")
            params = dict(parse_qsl(url.query, keep_blank_values=True))
            query_id = params.get("query_id") or query_id
            principal = self.server.front._principal(self._credentials(params))
            body, headers = self.server.front._execute(principal, params, _Body(self.rfile, self.headers))
            headers["X-ClickHouse-Query-Id"] = query_id
            self._send(200, body, headers)
        except _ClickHouseError as exc:
            self.close_connection = True  # the body may be unread
            extra = {"WWW-Authenticate": 'Basic realm="abaxus usage store"'} if exc.code == 194 else {}  # noqa: PLR2004
            self._send(_STATUS.get(exc.code, 500), (exc.text + "\n").encode(),
                       {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": str(exc.code),
                        "X-ClickHouse-Query-Id": query_id, **extra})
        except Exception:  # one request's failure is answered, never kills the front
            logger.exception("usage front request failed")
            self.close_connection = True
            self._send(500, b"Code: 1001. DB::Exception: Internal error of the usage front; see its log. (STD_EXCEPTION)\n",
                       {"Content-Type": "text/plain; charset=UTF-8", "X-ClickHouse-Exception-Code": "1001"})

    def _credentials(self, params: Mapping[str, str]) -> tuple[str, str] | None:
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                user, _, password = base64.b64decode(value.strip()).decode().partition(":")
            except ValueError:
                return None
            return user, password
        if scheme.lower() == "bearer":
            return "", value.strip()
        if self.headers.get("X-ClickHouse-User") is not None or self.headers.get("X-ClickHouse-Key") is not None:
            return self.headers.get("X-ClickHouse-User") or "", self.headers.get("X-ClickHouse-Key") or ""
        if "user" in params or "password" in params:
            return params.get("user", ""), params.get("password", "")
        return None

    def _send(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Keep-Alive", "timeout=60")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class UsageFront:
    """ClickHouse's HTTP interface to this process's chDB engine, on a background thread.

    ``chdb_path`` is the engine's data directory (the one the usage store opened: chDB refuses a
    second path in a process). ``usage_password`` enables the full-access user ``abaxus`` (None:
    only analysts). ``authenticate`` says whether an analyst's password (an API key) may read.
    Analysts' queries run with ``readonly=1``, ``max_execution_time`` (seconds) and
    ``max_memory_usage`` (bytes, also the bound on a result's size): a long query stops itself
    instead of holding the engine, and inserts on other handles proceed meanwhile.
    """

    def __init__(self, chdb_path: Path | str, *, host: str = "127.0.0.1", port: int = 8123,
                 usage_password: str | None = None, authenticate: Callable[[str], bool],
                 max_execution_time: float = 60.0, max_memory_usage: int = 4 << 30) -> None:
        self._path = os.path.realpath(chdb_path)  # chDB compares engine paths literally
        self._address = (host, port)
        self._password = usage_password
        self._authenticate = authenticate
        self._analyst_settings = urlencode({"readonly": 1, "max_execution_time": max_execution_time,
                                            "max_memory_usage": max_memory_usage, "max_result_bytes": max_memory_usage})
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._timezone = "UTC"
        self._anchor: Any = None

    @property
    def port(self) -> int:
        """The port it listens on (the one picked when constructed with 0, once started)."""
        return self._server.server_address[1] if self._server else self._address[1]

    def start(self) -> None:
        # Held open while serving: the engine shuts down when its last handle closes, and starting
        # it again costs 50-150 ms, which every request would pay if the store had no client open.
        self._anchor = _connect(self._path)
        try:
            self._timezone = self._anchor.query("SELECT timezone()", "TabSeparatedRaw").bytes().decode().strip()
            self._server = _Server(self._address, self)
        except BaseException:
            self._anchor.close()
            self._anchor = None
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="usage-front", daemon=True)
        self._thread.start()
        logger.info("usage front listening on %s:%s", self._address[0], self.port)

    def stop(self) -> None:
        """Stop listening, drop idle keep-alive connections, wait for the requests in flight."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        with server.sockets_lock:
            for sock in server.open_sockets:
                with contextlib.suppress(OSError):  # an idle handler's read returns EOF; a running one still answers
                    sock.shutdown(socket.SHUT_RD)
        server.server_close()  # joins the handler threads
        if self._thread:
            self._thread.join()
        if self._anchor is not None:
            self._anchor.close()
            self._anchor = None

    def __enter__(self) -> UsageFront:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ---- one request ------------------------------------------------------------------------------
    def _principal(self, credentials: tuple[str, str] | None) -> _Principal:
        if credentials is None:
            raise _ClickHouseError.of(194, "Authentication required: use user abaxus with the usage password, or any user "
                                           "name with an Abaxus API key of read or admin scope as the password.")
        user, password = credentials
        if user == _FULL_USER and self._password is not None and hmac.compare_digest(password.encode(), self._password.encode()):
            return "full"
        try:
            if password and self._authenticate(password):
                return "analyst"
        except Exception as exc:  # noqa: BLE001 - a failing key check refuses; the secret is never logged
            logger.error("usage front: the API-key check failed (%s)", type(exc).__name__)
        raise _ClickHouseError.of(516, f"{user or 'default'}: Authentication failed: password is incorrect, or there is no "
                                       "user with such name. Use an Abaxus API key of read or admin scope as the password "
                                       "(any user name), or user abaxus with ABAXUS_USAGE_PASSWORD.")

    def _execute(self, principal: _Principal, params: Mapping[str, str], body: _Body) -> tuple[bytes, dict[str, str]]:
        """Run the request's statement: the response body and its X-ClickHouse headers."""
        if params.get("compress") == "1" or params.get("decompress") == "1":
            raise _ClickHouseError.of(48, "ClickHouse's native compression (compress=1/decompress=1) is not supported here.")
        query_params = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if k not in _TRANSPORT and not k.startswith("param_")}
        default_format = params.get("default_format") or "TabSeparated"
        if default_format.lower() in _PYTHON_FORMATS:
            raise _ClickHouseError.of(73, f"Unknown output format {default_format}.")
        query = params.get("query", "").encode()
        if principal == "analyst":
            return self._analyst(params, query, body, settings, query_params, default_format)
        conn = _connect(self._path)
        try:
            if params.get("database"):
                conn.query(f"USE `{params['database'].replace('`', '``')}`", "TabSeparatedRaw")
            if settings:
                conn.query("SET " + ", ".join(f"{_setting(k)} = {_quoted(v)}" for k, v in settings.items()), "TabSeparatedRaw")
            chunks = iter(body)
            head, insert = self._split(query, chunks)
            if insert is not None:
                return self._insert(conn, *insert, chunks)
            text = head + b"".join(chunks)
            clause = _format_clause(text, first=False)
            fmt = text[clause[1]:clause[2]].decode() if clause else default_format
            result = conn.query(text, default_format, params=query_params)
            headers = self._summary(result.rows_read(), result.bytes_read(), result.rows_written(),
                                    result.bytes_written(), result.elapsed())
            out = result.bytes() or b""
            if out or clause or _first_word(text) in ("SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXPLAIN", "EXISTS"):
                headers.update({"X-ClickHouse-Format": fmt, "Content-Type": _content_type(fmt)})
            return out, headers
        except RuntimeError as exc:
            raise _ClickHouseError.from_engine(exc) from None
        finally:
            conn.close()

    @staticmethod
    def _split(query: bytes, chunks: Iterator[bytes]) -> tuple[bytes, tuple[str, str, bytes] | None]:
        """The text read so far, and for an INSERT with inline data (statement, format, data so far).

        ClickHouse joins the ``query`` parameter and the body with a newline; an INSERT's data
        follows its ``FORMAT name``, so only the statement's head is read before streaming it.
        """
        head = query + b"\n" if query else b""
        if query and _first_word(query) == "INSERT":
            clause = _format_clause(query, first=True)
            if clause and not query[clause[2]:].strip():
                return head, ((query[:clause[0]] + query[clause[2]:]).decode(), query[clause[1]:clause[2]].decode(), b"")
        for part in chunks:
            head += part
            if len(head) >= _HEAD_LIMIT:
                break
        if _first_word(head) == "INSERT":
            clause = _format_clause(head, first=True)
            if clause and clause[2] < len(head):
                return head, (head[:clause[0]].decode(), head[clause[1]:clause[2]].decode(), head[_data_start(head, clause[2]):])
        return head, None

    def _insert(self, conn: Any, statement: str, fmt: str, first: bytes, chunks: Iterator[bytes]) -> tuple[bytes, dict[str, str]]:
        """Stream an INSERT's data into the engine (chDB's send_insert: no temp file, constant memory)."""
        inserter = conn.send_insert(statement.strip(), fmt)
        try:
            if first:
                inserter.append(first)
            for part in chunks:
                inserter.append(part)
            done = inserter.finish()
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the original error is the one to answer
                inserter.cancel()
            raise
        return b"", self._summary(0, 0, done.rows_written, done.bytes_written, done.elapsed)

    def _analyst(self, params: Mapping[str, str], query: bytes, body: _Body, settings: Mapping[str, str],
                 query_params: Mapping[str, str], default_format: str) -> tuple[bytes, dict[str, str]]:
        if settings:
            raise _ClickHouseError.of(164, f"Cannot modify '{next(iter(settings))}' setting in readonly mode: analysts run "
                                           "with the front's limits.")
        if params.get("database") not in (None, "", "abaxus"):
            raise _refused("Analysts query the abaxus database.")
        rest = body.read(_ANALYST_BODY_LIMIT)
        sql = (query + b"\n" + rest if query and rest else query or rest).decode(errors="replace")
        conn = _connect(f"{self._path}?{self._analyst_settings}")
        try:
            conn.query("USE abaxus", "TabSeparatedRaw")
            statement, fmt = _AnalystGate(conn, query_params).admit(sql)
            fmt = fmt or default_format
            if fmt.lower() in _PYTHON_FORMATS:
                raise _ClickHouseError.of(73, f"Unknown output format {fmt}.")
            result = conn.query(statement, fmt, params=dict(query_params))
            headers = self._summary(result.rows_read(), result.bytes_read(), 0, 0, result.elapsed())
            headers.update({"X-ClickHouse-Format": fmt, "Content-Type": _content_type(fmt)})
            return result.bytes() or b"", headers
        except RuntimeError as exc:
            raise _ClickHouseError.from_engine(exc) from None
        finally:
            conn.close()

    def _summary(self, read_rows: int, read_bytes: int, written_rows: int, written_bytes: int, elapsed: float) -> dict[str, str]:
        summary = {"read_rows": str(read_rows), "read_bytes": str(read_bytes),
                   "written_rows": str(written_rows), "written_bytes": str(written_bytes),
                   "total_rows_to_read": "0", "result_rows": "0", "result_bytes": "0",
                   "elapsed_ns": str(int(elapsed * 1e9))}
        return {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Timezone": self._timezone,
                "X-ClickHouse-Server-Display-Name": "abaxus"}


def _connect(connection_string: str) -> Any:
    """A new handle on the engine (chdb's ``connect`` carries no annotations)."""
    return chdb.connect(connection_string)  # type: ignore[no-untyped-call]


def _setting(name: str) -> str:
    if not _SETTING_NAME.fullmatch(name):
        raise _ClickHouseError.of(115, f"Unknown setting '{name}'.")
    return name


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
