"""Hostile clients against the real host (issue 16), over raw sockets: slowloris, trickled and
unfinished bodies, thousands of idle connections, oversized heads, request-smuggling shapes,
pipelining, HTTP/1.0, odd paths, and a client that never reads.

Each attack must end in a clear 4xx (JSON `{"error": ...}` where the host answers itself, hyper's
bare 400/414/431 where hyper does) or a closed connection; the host's RSS (/proc/PID/status) and
open descriptors (/proc/PID/fd) are sampled around it to show they stay bounded and come back;
and a good client gets a normal answer meanwhile.

Most tests share one host started with short timeouts (idle 1 s, body 1 s, deadline 3 s). A few
slowloris connections trickle into it from the start of the module; the last test checks that
the fixed 30 s header timeout cut them off, so every other test here also shows a good client
served while they trickle.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from conftest import ROOT, SPINDLE, Spindle

WASM = ROOT / "target" / "wasm32-wasip2" / "release"
TOKEN = "a-secret-0123456789"
ENV = {**os.environ, "NO_COLOR": "1", "RUST_LOG": "spindle=info", "G_TOKENS": f"alice:{TOKEN}"}

# Hyper's own refusals: a status line, `connection: close`, no body.
BARE = {"content-length": "0", "connection": "close"}

MANY = 5000


def raise_descriptor_limit(wanted: int) -> int:
    """Raises this process's soft RLIMIT_NOFILE towards `wanted` (the hosts started here inherit
    it); returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


DESCRIPTORS = raise_descriptor_limit(2 * MANY + 2000)


def write_manifest(folder) -> os.PathLike:
    """Three routes: `/echo/...` answers JSON naming the path it saw (a WASIp2 component),
    `/guarded/...` is the same behind a bearer token, `/big` answers 2 MiB."""
    manifest = folder / "spin.toml"
    manifest.write_text(f"""spin_manifest_version = 2
[application]
name = "hostile-clients"
[[trigger.http]]
route = "/echo/..."
component = "echo"
[[trigger.http]]
route = "/guarded/..."
component = "guarded"
[[trigger.http]]
route = "/big"
component = "big"
[component.echo]
source = "{WASM / 'p2_hello.wasm'}"
[component.guarded]
source = "{WASM / 'p2_hello.wasm'}"
[component.guarded.tool.spindle]
access = {{ tokens_env = "G_TOKENS" }}
[component.big]
source = "{WASM / 'hostile.wasm'}"
environment = {{ MODE = "big-response" }}
""")
    return manifest


# ---------------------------------------------------------------------------------------------
# Talking raw HTTP/1.x


@dataclass
class Answer:
    """One HTTP/1.x response as read off the wire."""

    version: str
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


def address(server: Spindle) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def connect(server: Spindle, timeout: float = 10, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(address(server))
    return s


def parse(data: bytes) -> tuple[list[Answer], bytes]:
    """The complete responses at the start of `data`, and what is left."""
    answers = []
    while b"\r\n\r\n" in data:
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        version, status = lines[0].split(" ", 2)[:2]
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        if len(rest) < length:
            break
        answers.append(Answer(version, int(status), headers, rest[:length]))
        data = rest[length:]
    return answers, data


def read_answers(s: socket.socket, count: int | None = None, timeout: float = 5) -> tuple[list[Answer], bool]:
    """Reads responses until the host closes the connection, `count` responses have come (when
    given), or `timeout` passes; returns them and whether the connection was closed."""
    data, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        if count is not None and len(parse(data)[0]) >= count:
            return parse(data)[0], False
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(1 << 20)
        except socket.timeout:
            break
        except ConnectionResetError:
            return parse(data)[0], True
        if not chunk:
            answers, rest = parse(data)
            assert not rest, f"a truncated response: {rest[:200]!r}"
            return answers, True
        data += chunk
    return parse(data)[0], False


def exchange(server: Spindle, data: bytes, timeout: float = 5) -> tuple[list[Answer], bool]:
    """Sends `data` on a new connection; the answers, and whether the host closed it within
    `timeout`."""
    with connect(server) as s:
        try:
            s.sendall(data)
        except (ConnectionResetError, BrokenPipeError):
            pass  # the host answered and closed before taking it all; its answer is still to read
        return read_answers(s, timeout=timeout)


def closed_within(s: socket.socket, seconds: float) -> tuple[bool, bytes]:
    """Whether the host closes `s` within `seconds` (anything it sends first is returned)."""
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return False, got
        except ConnectionResetError:
            return True, got
        if not chunk:
            return True, got
        got += chunk
    return False, got


# ---------------------------------------------------------------------------------------------
# What the host costs, and the good client


@dataclass
class Usage:
    rss_mib: float
    fds: int


def usage(server: Spindle) -> Usage:
    pid = server.proc.pid
    with open(f"/proc/{pid}/status") as status:
        rss_kib = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    return Usage(rss_kib / 1024, len(os.listdir(f"/proc/{pid}/fd")))


def settle(server: Spindle, fds: int, seconds: float = 5) -> Usage:
    """Waits until the host has at most `fds` descriptors open (closed connections go a moment
    after the client's); returns the last sample."""
    deadline = time.monotonic() + seconds
    while (now := usage(server)).fds > fds and time.monotonic() < deadline:
        time.sleep(0.05)
    return now


def good_client(server: Spindle, timeout: float = 5) -> float:
    """A normal request on a fresh connection gets a normal answer; returns how long it took."""
    began = time.monotonic()
    r = requests.get(f"{server.url}/echo/good?q=1", timeout=timeout)
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "/echo/good?q=1"
    assert requests.get(f"{server.url}/v2/health/live", timeout=timeout).json() == {"live": True}
    return time.monotonic() - began


def start(tmp_path, *args: str) -> Spindle:
    server = Spindle(write_manifest(tmp_path), "--preload", *args, env=ENV)
    warm(server)
    return server


def warm(server: Spindle):
    """Loads every component once, so that what is sampled afterwards is the attack's."""
    good_client(server)
    assert requests.get(f"{server.url}/big", timeout=30).status_code == 200


# ---------------------------------------------------------------------------------------------
# The shared host, and slowloris trickling into it from the start


@dataclass
class Trickler:
    """A slowloris connection: `data` sent one byte a second (or `stop_after` bytes, then nothing)."""

    data: bytes
    stop_after: int | None = None
    sock: socket.socket | None = None
    sent: int = 0
    began: float = 0.0
    closed_after: float | None = None
    received: bytes = b""


@dataclass
class Slowloris:
    tricklers: list[Trickler]
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)

    def run(self, limit: float):
        began = time.monotonic()
        for t in self.tricklers:
            t.began = time.monotonic()
        while time.monotonic() - began < limit and any(t.closed_after is None for t in self.tricklers):
            for t in self.tricklers:
                if t.closed_after is not None:
                    continue
                try:
                    readable = t.sock.recv(4096)
                    if not readable:
                        t.closed_after = time.monotonic() - t.began
                        continue
                    t.received += readable
                except BlockingIOError:
                    pass
                except OSError:
                    t.closed_after = time.monotonic() - t.began
                    continue
                if t.sent < len(t.data) and (t.stop_after is None or t.sent < t.stop_after):
                    try:
                        t.sock.send(t.data[t.sent:t.sent + 1])
                        t.sent += 1
                    except OSError:
                        t.closed_after = time.monotonic() - t.began
            time.sleep(1.0)
        self.done.set()

    def start(self, server: Spindle, limit: float):
        for t in self.tricklers:
            t.sock = connect(server)
            t.sock.setblocking(False)
        self.thread = threading.Thread(target=self.run, args=(limit,), daemon=True)
        self.thread.start()

    def close(self):
        for t in self.tricklers:
            if t.sock is not None:
                t.sock.close()


SLOW_HEAD = b"GET /echo/slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 200 + b"\r\n\r\n"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The host most tests share (idle 1 s, body 1 s, deadline 3 s, the default connection cap),
    with slowloris connections trickling into it from the start (see the last test)."""
    server = start(tmp_path_factory.mktemp("shared"), "--idle-timeout-s", "1", "--body-timeout-s", "1", "--timeout-ms", "3000")
    slowloris = Slowloris([Trickler(SLOW_HEAD) for _ in range(4)] + [Trickler(SLOW_HEAD, stop_after=24)])
    slowloris.start(server, limit=45)
    server.slowloris = slowloris
    try:
        yield server
    finally:
        slowloris.close()
        server.stop()


# ---------------------------------------------------------------------------------------------
# Request smuggling and malformed heads: hyper refuses them before the host sees them


# A POST to the echo function, its head not finished.
POST = b"POST /echo/x HTTP/1.1\r\nHost: x\r\n"

SMUGGLING = {
    "two Transfer-Encodings, chunked then identity": POST + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding: chunked, identity": POST + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding: xchunked": POST + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "space before the colon of Transfer-Encoding": POST + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "Transfer-Encoding on HTTP/1.0": b"POST /echo/x HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "two different Content-Lengths": POST + b"Content-Length: 0\r\nContent-Length: 45\r\n\r\n",
    "Content-Length: 3, 5": POST + b"Content-Length: 3, 5\r\n\r\nabcde",
    "negative Content-Length": POST + b"Content-Length: -1\r\n\r\nabc",
    "non-numeric Content-Length": POST + b"Content-Length: abc\r\n\r\nabc",
    "Content-Length with a plus sign": POST + b"Content-Length: +3\r\n\r\nabc",
    "Content-Length past u64": POST + b"Content-Length: 99999999999999999999999\r\n\r\nabc",
    "obs-fold continuation line": b"GET /echo/x HTTP/1.1\r\nHost: x\r\nX-A: a\r\n  folded\r\n\r\n",
    "whitespace before the first header": b"GET /echo/x HTTP/1.1\r\n X-A: a\r\nHost: x\r\n\r\n",
    "bare CR in a header line": b"GET /echo/x HTTP/1.1\r\nHost: x\rX-A: y\r\n\r\n",
    "NUL in a header value": b"GET /echo/x HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "space in a header name": b"GET /echo/x HTTP/1.1\r\nHost: x\r\nBad Name: a\r\n\r\n",
    "space in the request target": b"GET /echo/a b HTTP/1.1\r\nHost: x\r\n\r\n",
    "HTTP/9.9": b"GET /echo/x HTTP/9.9\r\nHost: x\r\n\r\n",
    "HTTP/2.0 as text": b"GET /echo/x HTTP/2.0\r\nHost: x\r\n\r\n",
    "HTTP/0.9 request line": b"GET /echo/x\r\n\r\n",
    "NUL in the method": b"G\x00T /echo/x HTTP/1.1\r\nHost: x\r\n\r\n",
}

SMUGGLED = b"GET /echo/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize("shape", SMUGGLING.values(), ids=SMUGGLING.keys())
def test_smuggling_shapes_and_malformed_heads_get_hyper_400_and_a_closed_connection(shared, shape):
    answers, closed = exchange(shared, shape + SMUGGLED, timeout=3)
    assert [a.status for a in answers] == [400], answers
    (answer,) = answers
    assert answer.headers.items() >= BARE.items() and answer.body == b"", answer
    assert closed, "hyper closes the connection after a 400, so nothing behind it is read"
    good_client(shared)


CHUNK_ERRORS = {
    "chunk size past u64": b"ffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
    "chunk size not hex": b"zz\r\nabc\r\n0\r\n\r\n",
    "chunk size 0x3": b"0x3\r\nabc\r\n0\r\n\r\n",
    "negative chunk size": b"-3\r\nabc\r\n0\r\n\r\n",
    "chunk longer than its size": b"3\r\nabcdef\r\n0\r\n\r\n",
    "bare LF after a chunk size": b"3\nabc\n0\n\n",
    "bare CR after a chunk size": b"3\rabc\r\n0\r\n\r\n",
}


@pytest.mark.parametrize("chunks", CHUNK_ERRORS.values(), ids=CHUNK_ERRORS.keys())
def test_bad_chunked_framing_is_a_json_400_and_a_closed_connection(shared, chunks):
    """The head is fine, so the request reaches the host; reading the body fails, and the host
    answers that itself."""
    answers, closed = exchange(shared, b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + SMUGGLED)
    assert [a.status for a in answers] == [400], answers
    assert answers[0].headers["content-type"] == "application/json"
    error = answers[0].json()["error"]
    assert error.startswith("could not read the request body") and "chunk" in error.lower(), error  # names what was wrong
    assert closed
    good_client(shared)


@pytest.mark.parametrize("head", [
    b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    # CL.TE: a front end going by Content-Length would take the "G" as this body's last byte.
    b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
], ids=["CL then TE", "TE then CL", "CL.TE with a smuggled byte"])
def test_content_length_with_transfer_encoding_is_read_as_chunked_then_the_connection_closed(shared, head):
    """RFC 9112 §6.3: Transfer-Encoding overrides Content-Length, and the server must close the
    connection after answering; hyper does both, so a request smuggled behind is never read."""
    answers, closed = exchange(shared, head + SMUGGLED, timeout=3)
    assert [a.status for a in answers] == [200], answers
    assert answers[0].json()["path"] == "/echo/x" and answers[0].headers["connection"] == "close"
    assert closed


REFUSED_CODINGS = {
    # hyper reads the chunked framing and decodes nothing else: the function would get the
    # compressed bytes as its body. RFC 9112 §6.1 asks for a 501.
    "gzip, chunked": (b"Transfer-Encoding: gzip, chunked\r\n", 501, "transfer coding \"gzip\" is not supported"),
    "deflate then chunked, two headers": (b"Transfer-Encoding: deflate\r\nTransfer-Encoding: chunked\r\n", 501, "\"deflate\""),
    # hyper undoes one chunked, and the function would get the other's framing as its body.
    "chunked, chunked": (b"Transfer-Encoding: chunked, chunked\r\n", 400, "chunked more than once"),
    "chunked in two headers": (b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400, "chunked more than once"),
}


@pytest.mark.parametrize("codings, status, words", REFUSED_CODINGS.values(), ids=REFUSED_CODINGS.keys())
def test_transfer_codings_hyper_would_not_undo_are_refused_in_json(shared, codings, status, words):
    answers, _ = exchange(shared, POST + codings + b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", timeout=3)
    assert [a.status for a in answers] == [status], answers
    assert answers[0].headers["content-type"] == "application/json"
    assert words in answers[0].json()["error"], answers[0].body
    good_client(shared)


@pytest.mark.parametrize("codings", [b"Transfer-Encoding: , chunked\r\n", b"Transfer-Encoding:\r\nTransfer-Encoding: chunked\r\n"],
                         ids=["an empty element first", "an empty header first"])
def test_empty_transfer_coding_elements_are_ignored(shared, codings):
    """RFC 9110 §5.6.1: a recipient ignores empty list elements."""
    answers, _ = exchange(shared, POST + codings + b"Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n", timeout=3)
    assert [a.status for a in answers] == [200], answers


LENIENT = {
    # RFC 9112 §2.2: a recipient MAY take a bare LF as a line ending.
    "bare LF line endings": b"GET /echo/x HTTP/1.1\nHost: x\nConnection: close\n\n",
    # RFC 9112 §2.2: empty lines before the request line SHOULD be ignored.
    "empty lines before the request line": b"\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "the same Content-Length twice": POST + b"Content-Length: 3\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    "Transfer-Encoding: Chunked": POST + b"Transfer-Encoding: Chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "tab as whitespace": POST + b"Transfer-Encoding:\tchunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "chunk extension and trailer": POST + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;a=b\r\nabc\r\n0\r\nX-T: a\r\n\r\n",
    "obs-text in a header value": b"GET /echo/x HTTP/1.1\r\nHost: x\r\nX-Bin: \xff\xfe\r\nConnection: close\r\n\r\n",
    "an unknown method": b"FOO /echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    "absolute-form target": b"GET http://elsewhere/echo/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
}


@pytest.mark.parametrize("request_bytes", LENIENT.values(), ids=LENIENT.keys())
def test_lenient_but_unambiguous_shapes_are_served(shared, request_bytes):
    """What hyper accepts that a strict parser might not: each has one reading only."""
    answers, closed = exchange(shared, request_bytes)
    assert [a.status for a in answers] == [200], answers
    assert answers[0].json()["path"] == "/echo/x" and closed


def test_asterisk_and_connect_targets_are_json_404s(shared):
    for head in (b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                 b"CONNECT elsewhere:443 HTTP/1.1\r\nHost: elsewhere:443\r\nConnection: close\r\n\r\n"):
        answers, closed = exchange(shared, head)
        assert [a.status for a in answers] == [404] and "no route matches" in answers[0].json()["error"], answers
        assert closed


# ---------------------------------------------------------------------------------------------
# Oversized request lines, headers and header counts


def test_oversized_request_line_headers_and_header_count_get_hyper_414_and_431(shared):
    before = usage(shared)
    near = b"/nothing/" + b"a" * 65_000  # under the http crate's 65,534-byte URI limit
    answers, _ = exchange(shared, b"GET " + near + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [a.status for a in answers] == [404] and answers[0].json()["error"] == f"no route matches {near.decode()}"

    def head(extra: bytes, target: bytes = b"/v2/health/live") -> bytes:
        return b"GET " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + extra + b"\r\n"

    headers = lambda n: b"".join(b"X-%d: a\r\n" % i for i in range(n))  # noqa: E731
    refused = {
        414: [head(b"", b"/nothing/" + b"a" * 200_000), head(b"", b"/v2/health/live?" + b"a" * 70_000)],
        431: [head(b"X-Big: " + b"a" * 1_000_000 + b"\r\n"), head(headers(99)), head(headers(10_000))],
    }
    for _ in range(5):  # a few rounds: what they cost must not add up
        for status, heads in refused.items():
            for h in heads:
                answers, closed = exchange(shared, h)
                assert [(a.status, a.body) for a in answers] == [(status, b"")] and closed, (h[:60], answers)
                assert answers[0].headers.items() >= BARE.items()
    # Just under the limits: 100 header lines in all (hyper's limit), a 64 KB header value.
    for h in (head(headers(98)), head(b"X-Big: " + b"a" * 65_536 + b"\r\n")):
        answers, closed = exchange(shared, h)
        assert [a.status for a in answers] == [200] and answers[0].json() == {"live": True}
    after = settle(shared, before.fds)
    assert after.fds <= before.fds, (before, after)
    assert after.rss_mib - before.rss_mib < 32, (before, after)
    good_client(shared)


# ---------------------------------------------------------------------------------------------
# Pipelining and HTTP/1.0


def test_pipelined_requests_are_answered_in_order(shared):
    requests_bytes = [
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nx-request-id: p-1\r\n\r\n",
        b"GET /echo/one HTTP/1.1\r\nHost: x\r\nx-request-id: p-2\r\n\r\n",
        b"GET /nope HTTP/1.1\r\nHost: x\r\nx-request-id: p-3\r\n\r\n",
        b"POST /echo/two HTTP/1.1\r\nHost: x\r\nx-request-id: p-4\r\nContent-Length: 5\r\n\r\nhello",
        b"GET /big HTTP/1.1\r\nHost: x\r\nx-request-id: p-5\r\n\r\n",
        b"GET /guarded/x HTTP/1.1\r\nHost: x\r\nx-request-id: p-6\r\n\r\n",
        b"GET /guarded/y HTTP/1.1\r\nHost: x\r\nx-request-id: p-7\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n\r\n",
        b"GET /echo/three HTTP/1.1\r\nHost: x\r\nx-request-id: p-8\r\nConnection: close\r\n\r\n",
    ]
    with connect(shared) as s:
        s.sendall(b"".join(requests_bytes))
        answers, closed = read_answers(s, timeout=10)
    assert [a.headers["x-request-id"] for a in answers] == [f"p-{i}" for i in range(1, 9)]
    assert [a.status for a in answers] == [200, 200, 404, 200, 200, 401, 200, 200]
    assert answers[0].json() == {"live": True}
    assert [answers[i].json()["path"] for i in (1, 3, 6, 7)] == ["/echo/one", "/echo/two", "/guarded/y", "/echo/three"]
    assert answers[2].json() == {"error": "no route matches /nope"}
    assert answers[4].body == b"x" * (2 << 20)
    assert closed, "Connection: close on the last request"


def test_http10_without_keep_alive_is_answered_once_and_closed(shared):
    answers, closed = exchange(shared, b"GET /echo/x HTTP/1.0\r\n\r\nGET /echo/y HTTP/1.0\r\n\r\n")
    assert [(a.version, a.status) for a in answers] == [("HTTP/1.0", 200)] and answers[0].json()["path"] == "/echo/x"
    assert closed, "HTTP/1.0 without keep-alive: the second request is never read"
    answers, closed = exchange(shared, b"POST /echo/x HTTP/1.0\r\nContent-Length: 3\r\n\r\nabc")
    assert [(a.version, a.status) for a in answers] == [("HTTP/1.0", 200)] and closed


def test_http10_keep_alive_serves_several_requests_then_the_idle_timeout_closes_it(shared):
    with connect(shared) as s:
        for path in (b"/echo/a", b"/echo/b"):
            s.sendall(b"GET " + path + b" HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            answers, closed = read_answers(s, count=1)
            assert [(a.version, a.status) for a in answers] == [("HTTP/1.0", 200)] and not closed
            assert answers[0].headers["connection"] == "keep-alive" and answers[0].json()["path"] == path.decode()
        began = time.monotonic()
        assert closed_within(s, 4) == (True, b""), "closed by --idle-timeout-s 1"
        assert time.monotonic() - began > 0.5


# ---------------------------------------------------------------------------------------------
# Paths: bad UTF-8 and percent-encoding, traversal


def test_malformed_utf8_and_percent_encoding_in_paths(shared):
    answers, closed = exchange(shared, b"GET /echo/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n")
    assert [(a.status, a.body) for a in answers] == [(400, b"")] and closed, "not UTF-8: hyper's 400"
    # UTF-8 sent raw is let through, and the function sees it as sent.
    answers, _ = exchange(shared, "GET /echo/é HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    assert [a.status for a in answers] == [200] and answers[0].json()["path"] == "/echo/é"
    # Bad percent-encoding is not the host's to decode: routed as it is, given to the function as it is.
    answers, _ = exchange(shared, b"GET /echo/%zz%ff%c3%28%%/%2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert [a.status for a in answers] == [200] and answers[0].json()["path"] == "/echo/%zz%ff%c3%28%%/%2"
    for path, error in [(b"/v2/models/%ff%zz/ready", "unknown model '%ff%zz'"),
                        (b"/v2/models/%ff%zz/stats", "no statistics for model '%ff%zz'"),
                        (b"/%ff%zz", "no route matches /%ff%zz")]:
        answers, _ = exchange(shared, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert [a.status for a in answers] == [404] and answers[0].json()["error"].startswith(error), answers
    good_client(shared)


def get(server: Spindle, target: str, token: str | None = None) -> Answer:
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    answers, _ = exchange(server, f"GET {target} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n".encode())
    assert len(answers) == 1, (target, answers)
    return answers[0]


def test_traversal_never_reaches_a_host_endpoint_or_a_guarded_route(shared):
    """Dot segments are refused before routing (see the next test); other odd shapes route by
    the path as sent, undecoded, so nothing climbs out of a route to the host's own endpoints."""
    for target in ("/echo/../../v2/models", "/echo/%2e%2e/%2e%2e/v2/models", "/guarded/../echo/x", "/guarded/%2e%2e/echo/x"):
        assert get(shared, target).status == 400, target
        assert get(shared, target, TOKEN).status == 400, target
    assert get(shared, "/v2/health/live/../../../echo/x").status == 400
    for target in ("//echo/x", "/%67uarded/x", "/guarded%2fx", "/echo;x", "/echo\\x"):
        answer = get(shared, target)
        assert answer.status == 404 and answer.json() == {"error": f"no route matches {target}"}, (target, answer)
    assert get(shared, "/v2/models/echo/../stats").status == 400
    assert get(shared, "/echo//x").json()["path"] == "/echo//x"
    good_client(shared)


def test_dot_segments_are_refused_before_routing(shared):
    for target in ("/echo/../guarded/x", "/echo/%2e%2e/guarded/x", "/echo/%2E%2E/guarded/x", "/echo/./x",
                   "/models/cifar10/../../v2/models"):
        answer = get(shared, target)
        assert answer.status == 400 and "error" in answer.json(), (target, answer.status, answer.body[:200])


def test_the_host_header_cannot_change_the_path_a_function_sees(shared):
    for host in ("x/other/path?", "x/other/path#", "x/other"):
        answers, _ = exchange(shared, f"GET /echo/x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        (answer,) = answers
        assert answer.status == 400 or answer.json()["path"] == "/echo/x", (host, answer.status, answer.body)


def test_http11_needs_exactly_one_host_header(shared):
    for head in (b"GET /echo/x HTTP/1.1\r\nConnection: close\r\n\r\n",
                 b"GET /echo/x HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"):
        answers, _ = exchange(shared, head)
        assert [a.status for a in answers] == [400] and "error" in answers[0].json(), answers


# ---------------------------------------------------------------------------------------------
# Bodies trickled or never finished


def test_a_trickled_body_gets_408_and_others_are_served_meanwhile(shared):
    before = usage(shared)
    slow = [connect(shared) for _ in range(5)]
    for s in slow:
        s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    began = time.monotonic()
    served_during = []
    # A byte every 0.1 s (100 bytes would take 10 s), the last well before the 1 s body timeout
    # closes the connection.
    while time.monotonic() - began < 0.6:
        for s in slow:
            s.sendall(b"a")
        served_during.append(good_client(shared))
        time.sleep(0.1)
    for s in slow:
        answers, closed = read_answers(s, timeout=5)
        assert [a.status for a in answers] == [408] and closed, answers
        assert answers[0].json() == {"error": "the request body did not arrive within 1000 ms"}
        s.close()
    assert time.monotonic() - began < 3
    assert max(served_during) < 1, served_during
    after = settle(shared, before.fds)
    assert after.fds <= before.fds and after.rss_mib - before.rss_mib < 16, (before, after)


def test_a_slow_body_within_the_body_timeout_is_served(shared):
    with connect(shared) as s:
        s.sendall(b"POST /echo/x HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
        for _ in range(10):
            s.sendall(b"a")
            time.sleep(0.05)
        answers, closed = read_answers(s)
    assert [a.status for a in answers] == [200] and closed


def test_an_unfinished_body_gets_408_from_a_function_and_an_immediate_answer_elsewhere(shared):
    # A chunked body that never ends, to a function: the body timeout.
    answers, closed = exchange(shared, b"POST /echo/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert [a.status for a in answers] == [408] and closed and "did not arrive within 1000 ms" in answers[0].json()["error"]
    # The host's own endpoints and a 404 do not wait for a body they do not read: answered at once,
    # and the connection closed, since the rest of the body is still on it.
    for head, status in [(b"POST /v2/repository/index", 200), (b"POST /nope", 404)]:
        began = time.monotonic()
        answers, closed = exchange(shared, head + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc" + SMUGGLED)
        assert [a.status for a in answers] == [status] and closed and time.monotonic() - began < 0.9, answers  # not the 1 s body timeout
        assert answers[0].headers["content-type"] == "application/json"
    good_client(shared)


# ---------------------------------------------------------------------------------------------
# A function's answer over 4 KiB


def test_a_wasip2_function_answering_over_4_kib_is_not_held_until_its_deadline(shared):
    path = "/echo/" + "a" * 4000
    began = time.monotonic()
    answer = get(shared, path)
    assert answer.status == 200 and answer.json()["path"] == path, (answer.status, answer.body[:200], time.monotonic() - began)


# ---------------------------------------------------------------------------------------------
# Thousands of idle connections, and the connection cap


@dataclass
class Crowd:
    """Many keep-alive connections, each sending one request and then holding still."""

    socks: list[socket.socket]
    answered: int = 0
    closed: int = 0
    peak_fds: int = 0
    samples: list[Usage] = field(default_factory=list)


def crowd(server: Spindle, n: int, until: str, seconds: float, batch: int = 100, connected: threading.Event | None = None) -> Crowd:
    """Opens `n` connections, `batch` at a time, the next batch once the last is answered (a burst
    past the listen backlog would measure the kernel's SYN retries, not the host), each sending
    `GET /v2/health/live` (keep-alive), and drives them until every one is `answered`, or `closed`
    by the host after its answer; sets `connected` once all have finished their handshake;
    samples the host meanwhile."""
    sel = selectors.DefaultSelector()
    result = Crowd([])
    connecting = 0
    deadline, sampled, opened_batch = time.monotonic() + seconds, 0.0, 0.0
    target = lambda: result.answered if until == "answered" else result.closed  # noqa: E731
    while target() < n and time.monotonic() < deadline:
        settled = connecting == 0 and result.answered == len(result.socks)
        if len(result.socks) < n and (settled or time.monotonic() - opened_batch > 1):
            opened_batch = time.monotonic()
            for _ in range(min(batch, n - len(result.socks))):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setblocking(False)
                s.connect_ex(address(server))
                result.socks.append(s)
                sel.register(s, selectors.EVENT_WRITE, {"sent": False, "got": b""})
                connecting += 1
        for key, _ in sel.select(0.05):
            s, state = key.fileobj, key.data
            if not state["sent"]:
                error = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                assert error == 0, f"connecting: {os.strerror(error)}"
                s.send(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                state["sent"] = True
                connecting -= 1
                if connected is not None and connecting == 0 and len(result.socks) == n:
                    connected.set()
                sel.modify(s, selectors.EVENT_READ, state)
                continue
            try:
                chunk = s.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                chunk = b""
            if chunk:
                if not state["got"]:
                    result.answered += 1
                state["got"] += chunk
                if until == "answered" and b'{"live":true}' in state["got"]:
                    sel.unregister(s)
            else:
                assert state["got"].startswith(b"HTTP/1.1 200"), f"closed without its answer: {state['got'][:100]!r}"
                result.closed += 1
                sel.unregister(s)
        if time.monotonic() - sampled > 0.25:
            sampled = time.monotonic()
            result.samples.append(usage(server))
    result.samples.append(usage(server))
    result.peak_fds = max(u.fds for u in result.samples)
    sel.close()
    return result


def await_closed(socks: list[socket.socket], seconds: float) -> int:
    """How many of `socks` the host closes within `seconds`."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    closed, deadline = 0, time.monotonic() + seconds
    while closed < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(0.1):
            try:
                chunk = key.fileobj.recv(4096)
            except (ConnectionResetError, BlockingIOError):
                chunk = b""
            if not chunk:
                closed += 1
                sel.unregister(key.fileobj)
    sel.close()
    return closed


@pytest.fixture(scope="module")
def five_thousand(tmp_path_factory):
    """Two waves of 5,000 idle keep-alive connections against a host whose cap is raised above
    them (--max-connections 6000; --idle-timeout-s 5, so that all are held at once even on a
    busy machine): what each wave saw and cost."""
    if DESCRIPTORS < 2 * MANY + 500:
        pytest.skip(f"RLIMIT_NOFILE {DESCRIPTORS} is too low for {MANY} connections")
    server = start(tmp_path_factory.mktemp("five-thousand"), "--max-connections", str(MANY + 1000), "--idle-timeout-s", "5")
    try:
        base = usage(server)
        waves = []
        for _ in range(2):
            people = crowd(server, MANY, until="answered", seconds=20, batch=MANY)
            held = usage(server)
            served_in = good_client(server)
            closed = await_closed(people.socks, 7)
            for s in people.socks:
                s.close()
            after = settle(server, base.fds)
            # The host trims its heap a second after most of a burst has closed.
            deadline = time.monotonic() + 5
            while after.rss_mib - base.rss_mib >= 32 and time.monotonic() < deadline:
                time.sleep(0.1)
                after = usage(server)
            waves.append({"answered": people.answered, "held": held, "good_client_s": served_in, "closed": closed,
                          "peak_rss_mib": max(u.rss_mib for u in people.samples + [held]), "after": after,
                          "returned_s": time.monotonic() - deadline + 5})
        good_client(server)
        return base, waves
    finally:
        server.stop()


def test_5000_idle_keep_alive_connections_with_the_cap_raised(five_thousand):
    """With --max-connections above the crowd, 5,000 idle keep-alive connections are all held at
    once, a good client is served at once meanwhile, --idle-timeout-s closes every one, the
    descriptors come back, and memory stays within 64 KiB a connection, wave after wave."""
    base, waves = five_thousand
    budget = MANY * 64 / 1024
    for i, wave in enumerate(waves):
        assert wave["answered"] == MANY, (i, wave)
        assert wave["held"].fds >= base.fds + MANY - 10, (i, base, wave, "all held at once")
        assert wave["good_client_s"] < 1, (i, wave)
        assert wave["closed"] == MANY, (i, wave, "the idle timeout closes them all")
        assert wave["after"].fds <= base.fds, (i, base, wave)
        assert wave["peak_rss_mib"] - base.rss_mib < budget, (i, base, wave)
        assert wave["after"].rss_mib - base.rss_mib < budget, (i, base, wave)


def test_memory_comes_back_after_5000_idle_connections_close(five_thousand):
    """glibc keeps what a burst's connections freed in its arenas (RSS stayed near 200 MiB); the
    host trims the heap a second after three quarters of a burst has gone. `-s` shows the figures."""
    base, waves = five_thousand
    print(f"\nRSS: baseline {base.rss_mib:.1f} MiB; per wave, peak -> after (seconds after the connections closed): "
          + ", ".join(f"{w['peak_rss_mib']:.1f} -> {w['after'].rss_mib:.1f} MiB ({w['returned_s']:.1f} s)" for w in waves))
    for wave in waves:
        assert wave["after"].rss_mib - base.rss_mib < 32, (base, [w["after"] for w in waves])


def test_past_the_default_cap_connections_wait_and_are_served_in_turn(tmp_path):
    """The default cap (1024): 1024 keep-alive connections are answered and held; 100 more and
    then a good client wait in the listen backlog, and are served once the idle timeout closes
    the first ones."""
    # 4 s idle: the crowd of 1024 must be answered and counted before its first batch idles out,
    # and the good client's wait stay well above 0 on a busy machine.
    server = start(tmp_path, "--idle-timeout-s", "4")
    try:
        before = usage(server)
        held = crowd(server, 1024, until="answered", seconds=10)
        # The host's own descriptors move by one or two (a log or cache file); the cap does not.
        open_now = usage(server)
        assert held.answered == 1024 and before.fds + 1020 <= open_now.fds <= before.fds + 1026, (held.answered, before, open_now)
        waiting: list[Crowd] = []
        connected = threading.Event()
        thread = threading.Thread(target=lambda: waiting.append(crowd(server, 100, until="closed", seconds=20, connected=connected)))
        thread.start()
        assert connected.wait(5), "the backlog did not take the 100"
        waited = good_client(server, timeout=15)
        thread.join()
        (waiting,) = waiting
        assert waiting.answered == 100 and waiting.closed == 100, (waiting.answered, waiting.closed)
        assert await_closed(held.socks, 1) == 1024, "the idle timeout closed the first 1024"
        assert max(held.peak_fds, waiting.peak_fds) <= before.fds + 1024, (before, held.peak_fds, waiting.peak_fds)
        assert 0.5 < waited < 7.5, f"the good client waited {waited:.1f} s: it waits for the idle timeout, once"
        for s in held.socks + waiting.socks:
            s.close()
        after = settle(server, before.fds)
        assert after.fds <= before.fds and after.rss_mib - before.rss_mib < 64, (before, after)
    finally:
        server.stop()


def handshakes_completed(server: Spindle, client_ports: set[int]) -> int:
    """Of the connections from `client_ports`, how many the host's side holds ESTABLISHED in
    /proc/net/tcp: accepted, or complete and waiting in the listen socket's accept queue. A
    connection the backlog could not take stays SYN_RECV there (its SYN or ACK dropped)."""
    port = address(server)[1]
    taken = 0
    with open("/proc/net/tcp") as table:
        for line in list(table)[1:]:
            fields = line.split()
            local, remote, state = fields[1], fields[2], fields[3]
            if state == "01" and int(local.split(":")[1], 16) == port and int(remote.split(":")[1], 16) in client_ports:
                taken += 1
    return taken


def test_a_burst_past_the_cap_waits_in_the_backlog_without_dropped_syns(tmp_path):
    with open("/proc/sys/net/core/somaxconn") as f:
        if int(f.read()) < MANY - 1024:
            pytest.skip("net.core.somaxconn is below the burst: no backlog could hold it")
    server = start(tmp_path)
    socks = []
    try:
        for _ in range(MANY):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex(address(server))
            socks.append(s)
        ports = {s.getsockname()[1] for s in socks}
        deadline = time.monotonic() + 2.5
        while (taken := handshakes_completed(server, ports)) < MANY and time.monotonic() < deadline:
            time.sleep(0.1)
        assert taken >= MANY, f"the host took in or queued {taken} of {MANY} connections; the rest are retrying SYNs"
    finally:
        for s in socks:
            s.close()
        server.stop()


def test_a_silent_connection_is_closed_by_the_idle_timeout(shared):
    with connect(shared) as s:
        assert closed_within(s, 3) == (True, b"")


# ---------------------------------------------------------------------------------------------
# A client that never reads its answer


def never_reading(server: Spindle, n: int, pipelined: int) -> list[socket.socket]:
    """`n` clients, each with a 4 KiB receive buffer, asking for `pipelined` 2 MiB answers (more
    than the kernel buffers on both ends can hold) and reading none."""
    socks = []
    for _ in range(n):
        s = connect(server, rcvbuf=4096)
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * pipelined)
        socks.append(s)
    return socks


def test_a_client_that_never_reads_holds_only_its_own_answer(shared):
    before = usage(shared)
    socks = never_reading(shared, 10, pipelined=4)
    try:
        time.sleep(1)
        # Once each has its answer made (resident memory still for 0.2 s), up to 3 s more.
        stuck, deadline = usage(shared), time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.2)
            stuck, previous = usage(shared), stuck
            if abs(stuck.rss_mib - previous.rss_mib) < 1:
                break
        for _ in range(3):
            assert good_client(shared) < 1
            assert get(shared, "/big").body == b"x" * (2 << 20)
        time.sleep(1)
        later = usage(shared)
        assert later.fds <= before.fds + 10 + 4, (before, later)
        # Each stuck connection pins one 2 MiB answer; nothing more piles up while they wait.
        assert later.rss_mib - before.rss_mib < 10 * 2 * 2 + 32, (before, stuck, later)
        assert later.rss_mib - stuck.rss_mib < 8, (stuck, later)
    finally:
        for s in socks:
            s.close()
    after = settle(shared, before.fds)
    assert after.fds <= before.fds, (before, after)
    good_client(shared)


def test_a_client_that_never_reads_is_disconnected(tmp_path):
    server = start(tmp_path, "--idle-timeout-s", "1", "--send-timeout-s", "2")
    socks = []
    try:
        before = usage(server)
        socks = never_reading(server, 10, pipelined=4)
        ports = {s.getsockname()[1] for s in socks}
        # The ten are held...
        time.sleep(0.5)
        assert handshakes_completed(server, ports) == 10
        good_client(server)
        # ...until the send timeout closes them.
        deadline = time.monotonic() + 6
        while (held := handshakes_completed(server, ports)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert held == 0, f"{held} never-reading connections still held"
        after = settle(server, before.fds, seconds=6)
        assert after.fds <= before.fds, f"{after.fds - before.fds} never-reading connections still held: {before} -> {after}"
    finally:
        for s in socks:
            s.close()
        server.stop()


# ---------------------------------------------------------------------------------------------
# Slowloris


def test_slowloris_is_cut_off_by_a_short_header_timeout(tmp_path):
    server = start(tmp_path, "--header-timeout-s", "2")
    slowloris = Slowloris([Trickler(SLOW_HEAD) for _ in range(10)])
    try:
        before = usage(server)
        slowloris.start(server, limit=5)
        time.sleep(1)
        assert good_client(server) < 1
        slowloris.done.wait(10)
        cut = [t.closed_after for t in slowloris.tricklers]
        assert all(c is not None and c < 5 for c in cut), f"cut off after {cut} s"  # 2 s, seen by a trickler that looks once a second
        slowloris.close()
        assert settle(server, before.fds).fds <= before.fds
    finally:
        slowloris.close()
        server.stop()


def test_slowloris_is_cut_off_by_the_30s_header_timeout_while_others_are_served(shared):
    """The shared host's tricklers (one byte a second since the module began, and one that went
    quiet after 24 bytes): each is closed when the 30 s header timeout runs out, with nothing
    sent back, while every other test here was served."""
    slowloris = shared.slowloris
    while not slowloris.done.is_set():
        good_client(shared)
        slowloris.done.wait(2)
    for t in slowloris.tricklers:
        assert t.closed_after is not None and 28 < t.closed_after < 35, (t.closed_after, t.sent)
        assert t.received == b"", t.received
        assert t.sent <= 36
    good_client(shared)
