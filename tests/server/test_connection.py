"""connection.py and the body's limits over real sockets: what a hostile or broken
client may send, each answered with a clear 4xx (plain text at the HTTP level, the
dialect's shape past it) and a closed connection, the server staying healthy."""

from __future__ import annotations

import base64
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path

import h11
import httpx
import pytest

from server.connection import MAX_HEADERS, MAX_LINE_BYTES, head_problem
from server.settings import MIB, Settings
from tests.conftest import KEY, PATH, jpeg
from tests.threaded_server import Replies, Served, closed, reply, threaded_server

HEADER_TIMEOUT_S = 0.5
BODY_IDLE_TIMEOUT_S = 0.5
PHOTO = jpeg()
PHOTO_URL = "data:image/jpeg;base64," + base64.b64encode(PHOTO).decode()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    settings = Settings(
        cache_dir=tmp_path_factory.mktemp("connection"),
        api_keys=frozenset({KEY}),
        header_timeout_s=HEADER_TIMEOUT_S,
        body_idle_timeout_s=BODY_IDLE_TIMEOUT_S,
        body_timeout_s=1.0,
        body_min_rate=1000,
    )
    with threaded_server(settings) as served:
        yield served


@pytest.fixture(autouse=True)
def still_healthy(served: Served) -> Iterator[None]:
    yield
    assert httpx.get(f"{served.url}/healthz").status_code == 200


def head(*lines: str, target: str = PATH, method: str = "POST") -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        + "".join(f"{line}\r\n" for line in lines)
        + "\r\n"
    ).encode("latin-1")


def refused_plainly(served: Served, raw: bytes, status: int) -> str:
    """Send `raw` in one write; the answer must be a plain `status` and a close."""
    with served.connect() as conn:
        conn.sendall(raw)
        code, headers, body = reply(conn)
        assert code == status, body
        assert headers["content-type"] == "text/plain; charset=utf-8"
        assert headers["connection"] == "close"
        assert closed(conn)
    return body.decode()


# --- the head ------------------------------------------------------------------------------


def test_a_head_trickled_byte_by_byte_gets_408_at_the_header_timeout(served: Served) -> None:
    raw = head("Authorization: " + KEY, "Content-Length: 10")
    answer = b""
    with served.connect() as conn:
        started = time.monotonic()
        conn.settimeout(0.05)
        for sent in range(len(raw) - 1):  # a byte every 50 ms: never the whole head
            conn.sendall(raw[sent : sent + 1])
            try:
                answer = conn.recv(65536)
                break
            except TimeoutError:
                continue
        elapsed = time.monotonic() - started
    # The deadline counts from the connection, not from the last byte.
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert HEADER_TIMEOUT_S - 0.05 <= elapsed < HEADER_TIMEOUT_S + 2, elapsed


def test_a_partial_head_is_answered_408(served: Served) -> None:
    with served.connect() as conn:
        started = time.monotonic()
        conn.sendall(b"POST " + PATH.encode() + b" HTTP/1.1\r\nHost: a\r\n")
        code, headers, body = reply(conn)
        elapsed = time.monotonic() - started
        assert closed(conn)
    assert code == 408
    assert headers["connection"] == "close"
    assert body == b"headers: not complete within 0.5 seconds"
    assert HEADER_TIMEOUT_S - 0.05 <= elapsed < HEADER_TIMEOUT_S + 2


def test_a_connection_that_sends_nothing_is_closed_silently(served: Served) -> None:
    with served.connect() as conn:
        started = time.monotonic()
        assert conn.recv(100) == b""
        assert HEADER_TIMEOUT_S - 0.05 <= time.monotonic() - started < HEADER_TIMEOUT_S + 2


def test_a_second_request_on_a_kept_connection_has_its_own_header_deadline(
    served: Served,
) -> None:
    with served.connect() as conn:
        conn.sendall(head(method="GET", target="/healthz"))
        assert reply(conn)[0] == 200
        time.sleep(HEADER_TIMEOUT_S + 0.2)  # idle past the head's deadline: still open
        conn.sendall(head(method="GET", target="/healthz"))
        code, headers, _ = reply(conn)
        assert code == 200 and "connection" not in headers
        conn.sendall(b"GET /healthz HTTP/1.1\r\n")  # the start of a third, then nothing
        assert reply(conn)[0] == 408


@pytest.mark.parametrize(
    ("raw", "status", "message"),
    [
        (
            head("Content-Length: 5", "Transfer-Encoding: chunked") + b"0\r\n\r\n",
            400,
            "headers: Content-Length and Transfer-Encoding must not come together",
        ),
        (
            head("X-Big: " + "a" * 100_000),
            431,
            f"headers: a line is longer than {MAX_LINE_BYTES} bytes",
        ),
        (head(*(f"X-{i}: a" for i in range(2000))), 431, f"headers: more than {MAX_HEADERS}"),
        (
            head(*(f"X-{i}: " + "a" * 1000 for i in range(80))),
            431,
            f"headers: more than {64 * 1024} bytes in all",
        ),
        (
            head(target="/" + "a" * 100_000),
            414,
            f"request line: longer than {MAX_LINE_BYTES} bytes",
        ),
        (head("X-Odd: a\x01b"), 400, "headers: x-odd holds a control or non-ASCII byte"),
        (head("X-Odd: a\x7fb"), 400, "headers: x-odd holds a control or non-ASCII byte"),
        (head("X-Odd: caf\xe9"), 400, "headers: x-odd holds a control or non-ASCII byte"),
        # h11's own refusals, answered with its status but never its text (which quotes
        # the client's bytes).
        (head("X-Odd: a\x00b"), 400, "Bad Request: the request is not valid HTTP/1.1"),
        (head("X-Caf\xe9: a"), 400, "Bad Request: the request is not valid HTTP/1.1"),
        (head(target="/caf\xe9"), 400, "Bad Request: the request is not valid HTTP/1.1"),
        (
            head("Transfer-Encoding: gzip"),
            501,
            "Not Implemented: the request is not valid HTTP/1.1",
        ),
        (
            head("Content-Length: 5", "Content-Length: 6"),
            400,
            "Bad Request: the request is not valid HTTP/1.1",
        ),
    ],
    ids=[
        "length-and-chunked",
        "100kb-line",
        "2000-headers",
        "head-over-64kb",
        "100kb-target",
        "control-byte",
        "del-byte",
        "non-ascii-value",
        "nul",
        "non-ascii-name",
        "non-ascii-target",
        "gzip-encoding",
        "two-lengths",
    ],
)
def test_a_head_that_breaks_the_rules_is_refused_plainly_and_closed(
    served: Served, raw: bytes, status: int, message: str
) -> None:
    assert refused_plainly(served, raw, status) == message


def test_a_head_over_the_limit_arriving_in_pieces_is_431(served: Served) -> None:
    with served.connect() as conn:
        conn.sendall(head(method="GET", target="/healthz")[:-2])  # not finished yet
        for _ in range(20):
            try:
                conn.sendall(b"X-More: " + b"a" * 5000 + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
        code, headers, _ = reply(conn)
    assert code == 431 and headers["connection"] == "close"


def test_a_head_within_every_limit_is_served(served: Served) -> None:
    lines = [f"X-{i}: " + "a" * 600 for i in range(MAX_HEADERS - 2)]  # Host + these + one
    lines.append("X-Tab: a\tb")
    raw = head(*lines, method="GET", target="/healthz")
    assert len(raw) < 64 * 1024
    with served.connect() as conn:
        conn.sendall(raw)
        assert reply(conn)[0] == 200


def test_head_problem_passes_a_plain_request() -> None:
    request = h11.Request(method="GET", target="/", headers=[("Host", "a"), ("X", "b\tc")])
    assert head_problem(request) is None


# --- the body ------------------------------------------------------------------------------


def multipart(image: bytes) -> tuple[bytes, str]:
    boundary = "matteboundary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def test_a_body_shorter_than_its_length_gets_408_in_the_dialects_shape(served: Served) -> None:
    body, content_type = multipart(PHOTO)
    raw = head(
        f"Authorization: {KEY}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body) + 50}",
    )
    with served.connect() as conn:
        started = time.monotonic()
        conn.sendall(raw + body)
        code, headers, answer = reply(conn)
        elapsed = time.monotonic() - started
        assert closed(conn)
    assert code == 408
    assert headers["connection"] == "close"
    payload = json.loads(answer)
    assert payload["name"] == "request_timeout"
    assert payload["errors"] == [f"body: nothing arrived for {BODY_IDLE_TIMEOUT_S:g} seconds"]
    assert BODY_IDLE_TIMEOUT_S - 0.05 <= elapsed < BODY_IDLE_TIMEOUT_S + 2


def test_a_body_longer_than_its_length_is_never_mixed_into_another_request(
    served: Served,
) -> None:
    # The first 7 bytes are the body it declared; the rest is read as the next
    # request on the connection, and refused as the malformed request it is.
    raw = head(f"Authorization: {KEY}", "Content-Type: multipart/form-data; boundary=b")
    raw = raw.replace(b"\r\n\r\n", b"\r\nContent-Length: 7\r\n\r\n", 1)
    with served.connect() as conn:
        conn.sendall(raw + b"--b\r\n\r\n" + b"\x00garbage that is no request\r\n\r\n")
        replies = Replies(conn)
        first, _, first_body = replies.next()
        second, headers, _ = replies.next()
        assert closed(conn)
    assert first == 400 and json.loads(first_body)["name"] == "bad_request"
    assert second == 400 and headers["connection"] == "close"


def test_a_trickled_body_gets_408_without_holding_a_slot(served: Served) -> None:
    body, content_type = multipart(PHOTO)
    raw = head(
        f"Authorization: {KEY}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"
    )
    admission = served.app.state.services.pipeline.admission
    with served.connect() as conn:
        conn.sendall(raw)
        started = time.monotonic()
        conn.settimeout(0.1)
        sent = 0
        while not closed(conn) and time.monotonic() - started < 10:
            conn.sendall(body[sent : sent + 10])  # 100 bytes a second, under the 1000 asked
            sent += 10
            assert admission.busy_slots == 0
        conn.settimeout(10)
    elapsed = time.monotonic() - started
    # 1 s of grace plus what 1000 bytes/s would have sent: cut off at about 1.2 s.
    assert 1.0 <= elapsed < 4, elapsed
    assert sent < len(body)


def test_an_announced_50_mib_body_is_refused_413_before_it_is_sent(served: Served) -> None:
    body, content_type = multipart(PHOTO)
    raw = head(
        f"Authorization: {KEY}", f"Content-Type: {content_type}", f"Content-Length: {50 * MIB}"
    )
    with served.connect() as conn:
        conn.sendall(raw + body)
        code, headers, answer = reply(conn)
        assert closed(conn)
    assert code == 413 and headers["connection"] == "close"
    assert json.loads(answer)["errors"] == ["body: payloads cannot be larger than 10MiB in size"]


def test_an_unannounced_50_mib_body_is_cut_off_at_the_limit(served: Served) -> None:
    raw = head(
        f"Authorization: {KEY}",
        "Content-Type: multipart/form-data; boundary=b",
        "Transfer-Encoding: chunked",
    )
    part = b'--b\r\nContent-Disposition: form-data; name="image"; filename="a"\r\n\r\n'
    chunk = b"\0" * (256 * 1024)
    sent = 0
    with served.connect() as conn:
        conn.sendall(raw + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.settimeout(0)
        answer = b""
        try:
            while sent < 50 * MIB and not answer:
                conn.settimeout(10)
                conn.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
                conn.settimeout(0)
                with contextlib.suppress(BlockingIOError):
                    answer = conn.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        conn.settimeout(10)
        replies = Replies(conn)
        replies.buffer = answer
        code, headers, _ = replies.next()
        assert closed(conn)
    assert code == 413 and headers["connection"] == "close"
    assert 10 * MIB <= sent < 25 * MIB, sent


# --- chunked uploads work for every dialect -------------------------------------------------


def chunked(data: bytes) -> Iterator[bytes]:
    for start in range(0, len(data), 1000):
        yield data[start : start + 1000]


@pytest.mark.parametrize(
    ("path", "headers", "body", "content_type", "status"),
    [
        (PATH, {"authorization": KEY}, *multipart(PHOTO), 200),
        (
            "/api/v1/images/generations",
            {"authorization": f"Bearer {KEY}"},
            json.dumps(
                {
                    "model": "stability-remove-background",
                    "prompt": "",
                    "input_images": [{"type": "image_url", "image_url": {"url": PHOTO_URL}}],
                }
            ).encode(),
            "application/json",
            200,
        ),
        (
            "/background-removal",
            {"authorization": f"Bearer {KEY}"},
            json.dumps({"init_image": PHOTO_URL}).encode(),
            "application/json",
            200,
        ),
        (
            "/api/v6/image_editing/removebg_mask",
            {},
            json.dumps({"key": KEY, "image": PHOTO_URL, "base64": True}).encode(),
            "application/json",
            200,
        ),
        (
            "/v1/images/upload",
            {"x-api-key": KEY},
            multipart(PHOTO)[0].replace(
                b"--matteboundary--",
                b'--matteboundary\r\nContent-Disposition: form-data; name="name"\r\n\r\n'
                b"car\r\n--matteboundary--",
            ),
            "multipart/form-data; boundary=matteboundary",
            201,
        ),
    ],
    ids=["stability", "omixa", "octoai", "modelslab", "imgproc"],
)
def test_a_chunked_upload_works_for_every_dialect(
    served: Served, path: str, headers: dict[str, str], body: bytes, content_type: str, status: int
) -> None:
    response = httpx.post(
        f"{served.url}{path}",
        headers={**headers, "content-type": content_type},
        content=chunked(body),
        timeout=30,
    )
    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == status, response.text


# --- slow clients do not starve the others ------------------------------------------------


def test_fifty_trickling_uploads_leave_room_for_a_normal_client(tmp_path: Path) -> None:
    body, content_type = multipart(PHOTO)
    raw = head(
        f"Authorization: {KEY}", f"Content-Type: {content_type}", f"Content-Length: {len(body)}"
    )
    # The default bounds and deadlines: the slow ones stay for the whole test.
    settings = Settings(cache_dir=tmp_path, api_keys=frozenset({KEY}))
    with threaded_server(settings) as served, contextlib.ExitStack() as stack:
        admission = served.app.state.services.pipeline.admission
        slow = [stack.enter_context(served.connect()) for _ in range(50)]
        for conn in slow:
            conn.sendall(raw + body[:100])  # the head and a little of the body, then silence
        deadline = time.monotonic() + 5
        while admission.uploading < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert admission.uploading == 50
        started = time.monotonic()
        response = httpx.post(
            f"{served.url}{PATH}",
            headers={"authorization": KEY},
            files={"image": ("a.jpg", PHOTO)},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        assert time.monotonic() - started < 2
        assert admission.uploading == 50  # the slow ones are still there, not refused
