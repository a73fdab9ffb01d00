"""The app served by uvicorn, with Matte's connection rules, on a thread of this process:
real sockets on a free loopback port, a fake engine, ready in well under a second."""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import uvicorn
from starlette.applications import Starlette

from server.__main__ import uvicorn_config
from server.app import create_app
from server.settings import Settings
from tests.fakes import BrightnessEngine
from tests.matte_process import free_port


@dataclasses.dataclass
class Served:
    url: str
    port: int
    app: Starlette

    def connect(self, timeout_s: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s)


@contextlib.contextmanager
def threaded_server(settings: Settings) -> Iterator[Served]:
    port = free_port()
    settings = dataclasses.replace(settings, host="127.0.0.1", port=port, log_level="warning")
    app = create_app(settings, engine=BrightnessEngine())
    server = uvicorn.Server(uvicorn_config(settings, app))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert thread.is_alive(), "the server thread ended during start-up"
            assert time.monotonic() < deadline, "the threaded server did not become ready"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            time.sleep(0.02)
        yield Served(url, port, app)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


class Replies:
    """The responses coming back on `conn`, one at a time (pipelined ones included)."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""

    def _more(self, what: str) -> None:
        more = self.conn.recv(65536)
        assert more, f"the connection closed before {what}: {self.buffer[:200]!r}"
        self.buffer += more
        assert len(self.buffer) < 1 << 20

    def next(self) -> tuple[int, dict[str, str], bytes]:
        """Status, headers (lower-case names) and body of the next response."""
        while b"\r\n\r\n" not in self.buffer:
            self._more("a response head")
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (line.partition(":") for line in lines)
        }
        length = int(headers.get("content-length", "0"))
        while len(self.buffer) < length:
            self._more("the end of a response body")
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body


def reply(conn: socket.socket) -> tuple[int, dict[str, str], bytes]:
    return Replies(conn).next()


def closed(conn: socket.socket) -> bool:
    """Whether the server closed `conn` (EOF or a reset) rather than leaving it open."""
    try:
        return conn.recv(65536) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
