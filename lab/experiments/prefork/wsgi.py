"""HTTP/1.1 in, WSGI (PEP 3333) in the middle, HTTP/1.1 out: what every lab server shares.

The prefork worker, the thread pool and the event loop read bytes their own
way (a blocking socket, a socket a reactor says is readable, an asyncio
stream) and hand the same three functions what they read:

    read_request(sock)    one request from a blocking socket (the worker, the pool)
    parse_head(head)      the request line and headers of one request
    respond(app, ...)     the WSGI environ, the app called, its answer as bytes
    wants_keep_alive(req) whether the connection may carry another request

Only what a benchmark's GET and a curl need: no chunked request bodies, no
100-continue, no pipelining beyond keeping what was read after a request.
The whole response is built before it is sent (the apps answer a few bytes),
with a Content-Length, so a client always knows where it ends.

What an origin server owes every answer, done here as gunicorn does it:
- a Date header (RFC 9110 §6.6.1: "An origin server with a clock MUST
  generate a Date header field"), formatted once a second, as nginx does;
- headers checked on the way in (RFC 9110 §5.1, RFC 9112 §5.1): a name is a
  token with no space before its colon, a value holds no NUL, CR or bare LF,
  and two different Content-Lengths are refused (request smuggling's way in);
- `graceful_close` (RFC 9112 §9.6): shut the write side, read until the
  client's FIN, then close, so unread bytes cannot make the kernel answer
  with a reset that destroys the response. gunicorn does it on every close
  since benoitc/gunicorn#3590; the lab's worker does it with `--setup linger`.
"""

from __future__ import annotations

import io
import re
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote_to_bytes

__all__ = [
    "HEAD_END",
    "MAX_HEAD",
    "BadRequest",
    "Request",
    "graceful_close",
    "http_date",
    "parse_head",
    "read_request",
    "respond",
    "wants_keep_alive",
]

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

HEAD_END = b"\r\n\r\n"
#: A request head larger than this is refused: a sync worker must not buffer without end.
MAX_HEAD = 64 * 1024
#: One recv takes what a request usually is, head and all, in one system call.
RECV_SIZE = 64 * 1024
#: A header name is a token (RFC 9110 §5.6.2): no space, no separator, before its colon.
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
#: A value may not carry these (RFC 9110 §5.5): a bare LF would end the header for some readers.
FORBIDDEN_IN_VALUE = re.compile(r"[\x00\r\n]")
#: How long a graceful close waits for the client's FIN, and how much it reads at most
#: (gunicorn's util.close_graceful: 2 s, 64 KiB).
LINGER_S = 2.0
LINGER_MAX = 64 * 1024


class BadRequest(Exception):
    """The bytes are not an HTTP/1.x request this server understands: answer 400 and close."""


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.1"
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""

    @property
    def content_length(self) -> int:
        raw = self.headers.get("content-length", "0")
        if not raw.isdigit():
            raise BadRequest(f"bad Content-Length {raw!r}")
        return int(raw)


def parse_head(head: bytes) -> Request:
    """The request line and headers (without the blank line that ends them)."""
    try:
        text = head.decode("latin-1")  # HTTP/1.1 headers are octets; PEP 3333 asks for latin-1
        line, *header_lines = text.split("\r\n")
        method, target, version = line.split(" ")
    except ValueError:
        raise BadRequest("malformed request line") from None
    if not version.startswith("HTTP/1."):
        raise BadRequest(f"unsupported version {version!r}")
    if "transfer-encoding" in text.lower():
        raise BadRequest("chunked request bodies are not supported here")
    headers: dict[str, str] = {}
    for header in header_lines:
        name, sep, value = header.partition(":")
        if not sep or not TOKEN.fullmatch(name):
            raise BadRequest(f"malformed header {header!r}")
        if FORBIDDEN_IN_VALUE.search(value):
            raise BadRequest(f"a forbidden character in header {name!r}")
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length" and headers.get(name, value) != value:
            raise BadRequest("two different Content-Lengths")
        headers[name] = value
    return Request(method, target, version, headers)


def read_request(sock: socket.socket, buffered: bytes = b"") -> tuple[Request | None, bytes]:
    """One request from a blocking socket, and what was read after it (a pipelined next one).

    None when the client closed the connection before sending a byte: the
    normal end of a kept-alive connection, not an error.
    """
    data = buffered
    while HEAD_END not in data:
        if len(data) > MAX_HEAD:
            raise BadRequest("request head too large")
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            if data:
                raise BadRequest("connection closed in the middle of a request")
            return None, b""
        data += chunk
    head, _, rest = data.partition(HEAD_END)
    request = parse_head(head)
    need = request.content_length
    while len(rest) < need:
        chunk = sock.recv(RECV_SIZE)
        if not chunk:
            raise BadRequest("connection closed in the middle of a request body")
        rest += chunk
    request.body, rest = rest[:need], rest[need:]
    return request, rest


def wants_keep_alive(request: Request) -> bool:
    """HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 only when asked to keep it."""
    connection = request.headers.get("connection", "").lower()
    if request.version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def respond(
    app: WSGIApp,
    request: Request,
    server: tuple[str, int],
    *,
    keep_alive: bool,
    multithread: bool,
    multiprocess: bool,
) -> bytes:
    """Call the app for `request`; its whole response, ready to send."""
    status, headers, body = _call(app, _environ(request, server, multithread, multiprocess))
    return render(status, headers, body, keep_alive)


_date: tuple[int, str] = (0, "")


def http_date() -> str:
    """Now as an IMF-fixdate (RFC 9110 §5.6.7), formatted at most once a second."""
    global _date
    now = int(time.time())  # wall clock: a Date is a calendar time
    if _date[0] != now:
        _date = (now, formatdate(now, usegmt=True))  # English names, whatever the locale
    return _date[1]


def graceful_close(sock: socket.socket) -> None:
    """Close as RFC 9112 §9.6 asks: FIN first, read until the client's, then close.

    The wait is one round trip to the client (its FIN answers ours); a client
    that keeps quiet gets LINGER_S, one that keeps sending LINGER_MAX bytes.
    """
    try:
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(LINGER_S)
        drained = 0
        while drained < LINGER_MAX:
            chunk = sock.recv(4096)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:  # reset, or silent past LINGER_S: closing is all that is left
        pass
    finally:
        sock.close()


def render(status: str, headers: list[tuple[str, str]], body: bytes, keep_alive: bool) -> bytes:
    names = {name.lower() for name, _ in headers}
    lines = [f"HTTP/1.1 {status}"]
    if "date" not in names:
        lines.append(f"Date: {http_date()}")
    lines += [f"{name}: {value}" for name, value in headers if name.lower() != "connection"]
    if "content-length" not in names:
        lines.append(f"Content-Length: {len(body)}")
    # Saying `close` out loud matters: wrk and browsers then reconnect instead of
    # reporting the closed connection as an error.
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def bad_request(reason: str) -> bytes:
    body = f"bad request: {reason}\n".encode()
    return render("400 Bad Request", [("Content-Type", "text/plain")], body, keep_alive=False)


def _environ(
    request: Request, server: tuple[str, int], multithread: bool, multiprocess: bool
) -> dict[str, Any]:
    path, _, query = request.target.partition("?")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": request.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
        "QUERY_STRING": query,
        "SERVER_NAME": server[0],
        "SERVER_PORT": str(server[1]),
        "SERVER_PROTOCOL": request.version,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(request.body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": multithread,
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    for name, value in request.headers.items():
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[key] = value
        else:
            environ[f"HTTP_{key}"] = value
    return environ


def _call(app: WSGIApp, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the app to the end (PEP 3333: start_response, iterate, close)."""
    answer: list[Any] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        if exc_info is not None and answer:
            raise exc_info[1].with_traceback(exc_info[2])
        answer[:] = [status, headers]
        return chunks.append  # the legacy write() callable

    chunks: list[bytes] = []
    try:
        result = app(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    except Exception:  # the app's bug, not the server's: a 500 and its traceback on stderr
        traceback.print_exc()
        body = b"internal server error\n"
        return "500 Internal Server Error", [("Content-Type", "text/plain")], body
    if not answer:
        body = b"the app never called start_response\n"
        return "500 Internal Server Error", [("Content-Type", "text/plain")], body
    return answer[0], answer[1], b"".join(chunks)
