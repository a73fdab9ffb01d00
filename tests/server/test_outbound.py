"""The outbound guard: what it refuses (turned off, schemes, forbidden addresses, by
name, after redirects), what it pins, and its caps. Every request stays on this
machine: the success paths reach a local server through an injected resolver and
the test-only allow-list."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import socket
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

from server.outbound import (
    MAX_BYTES,
    MAX_REDIRECTS,
    TIMEOUT_S,
    Outbound,
    OutboundFailed,
    OutboundRefused,
    Reply,
    forbidden,
    pinned_request,
    system_resolver,
)
from tests.local_http import Answer, LocalServer, Received, answer

REFUSED_ADDRESS = "points at a private, loopback, link-local or reserved address, which is refused"


class Resolver:
    """Names to addresses from a table; anything else does not resolve. Records each lookup."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.calls.append((host, port))
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return self.table[host]


@pytest.fixture
def server() -> Iterator[LocalServer]:
    with LocalServer(answer(200, b"the image", content_type="image/png")) as running:
        yield running


def guard(server: LocalServer, resolver: Resolver | None = None, **options: object) -> Outbound:
    """A guard that may reach `server` (and nothing else local), by the name images.example."""
    return Outbound(
        True,
        resolver=resolver or Resolver({"images.example": ["127.0.0.1"]}),
        allow_for_tests={("127.0.0.1", server.port)},
        **options,  # type: ignore[arg-type]
    )


def refused(outbound: Outbound, url: str) -> str:
    with pytest.raises(OutboundRefused) as caught:
        asyncio.run(outbound.get(url))
    return caught.value.reason


def failed(outbound: Outbound, url: str) -> str:
    with pytest.raises(OutboundFailed) as caught:
        asyncio.run(outbound.get(url))
    return caught.value.reason


# --- which addresses are forbidden --------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.255.255.254",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # carrier-grade NAT
        "0.0.0.0",
        "224.0.0.1",  # multicast, which `is_global` calls global
        "239.255.255.250",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "198.18.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "fec0::1",  # site-local, which `is_global` calls global
        "ff02::1",  # multicast
        "::127.0.0.1",  # IPv4-compatible (reserved)
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 around 10.0.0.1, which `is_global` calls global
        "2002:7f00:1::",  # 6to4 around 127.0.0.1
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",  # Teredo to the client 10.0.0.1
        "64:ff9b::a00:1",  # NAT64 around 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 around 169.254.169.254
    ],
)
def test_forbidden_addresses(address: str) -> None:
    assert forbidden(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "93.184.215.14", "2606:4700:4700::1111", "2002:808:808::"]
)
def test_public_addresses_pass(address: str) -> None:
    assert not forbidden(ipaddress.ip_address(address))


# --- refused before anything is sent ------------------------------------------------------


def test_turned_off_by_default_refuses_every_url_without_resolving(server: LocalServer) -> None:
    resolver = Resolver({"images.example": ["127.0.0.1"]})
    outbound = Outbound(False, resolver=resolver, allow_for_tests={("127.0.0.1", server.port)})
    reason = refused(outbound, f"http://images.example:{server.port}/a.png")
    assert reason == "URLs are turned off on this server; send the data instead"
    with pytest.raises(OutboundRefused):
        asyncio.run(outbound.post_json(f"{server.url}/hook", b"{}"))
    assert resolver.calls == [] and server.received == []


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://images.example/a.png", "must be an http or https URL"),
        ("file:///etc/passwd", "must be an http or https URL"),
        ("gopher://images.example/", "must be an http or https URL"),
        ("javascript:alert(1)", "must be an http or https URL"),
        ("images.example/a.png", "must be an http or https URL"),
        ("http:///a.png", "must name a host"),
        ("http://[::1/", "is not a valid URL"),
    ],
)
def test_bad_urls_are_refused(server: LocalServer, url: str, reason: str) -> None:
    resolver = Resolver({"images.example": ["127.0.0.1"]})
    assert refused(guard(server, resolver), url) == reason
    assert resolver.calls == [] and server.received == []


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "10.0.0.1",
        "169.254.169.254",
        "[::1]",
        "[::ffff:127.0.0.1]",
        "0.0.0.0",
        "[64:ff9b::7f00:1]",
    ],
)
def test_address_literals_are_refused(host: str) -> None:
    # The local server listens on 127.0.0.1: a guard that let the address through
    # would reach it. Nothing is allowed for tests here.
    with LocalServer(answer(200, b"secret")) as local:
        resolver = Resolver({})
        reason = refused(Outbound(True, resolver=resolver), f"http://{host}:{local.port}/")
        assert reason == REFUSED_ADDRESS
        assert resolver.calls == [] and local.received == []
        # The synchronous check (used before any work) refuses it the same way.
        with pytest.raises(OutboundRefused):
            Outbound(True).check_url(f"http://{host}:{local.port}/")


def test_the_metadata_address_is_refused_on_every_path() -> None:
    url = "http://169.254.169.254/latest/meta-data/iam/security-credentials/"
    outbound = Outbound(True, resolver=Resolver({}))
    assert refused(outbound, url) == REFUSED_ADDRESS
    with pytest.raises(OutboundRefused):
        asyncio.run(outbound.post_json(url, b"{}"))


def test_a_name_that_resolves_to_loopback_is_refused() -> None:
    with LocalServer(answer(200, b"secret")) as local:
        resolver = Resolver({"rebind.example": ["127.0.0.1"]})
        outbound = Outbound(True, resolver=resolver)
        assert refused(outbound, f"http://rebind.example:{local.port}/") == REFUSED_ADDRESS
        assert resolver.calls == [("rebind.example", local.port)]
        assert local.received == []


@pytest.mark.parametrize(
    "addresses", [["8.8.8.8", "10.0.0.7"], ["2606:4700:4700::1111", "::1"], ["8.8.8.8", "bogus"]]
)
def test_every_address_of_a_name_must_pass(addresses: list[str]) -> None:
    resolver = Resolver({"mixed.example": addresses})
    outbound = Outbound(True, resolver=resolver)
    reason = refused(outbound, "http://mixed.example/a.png")
    assert reason in (REFUSED_ADDRESS, "names a host that resolves to a forbidden address")
    assert resolver.calls == [("mixed.example", 80)]


def test_a_name_that_does_not_resolve(server: LocalServer) -> None:
    assert failed(guard(server), "https://nowhere.example/a.png") == (
        "names a host that does not resolve"
    )
    assert failed(guard(server, Resolver({"empty.example": []})), "http://empty.example/") == (
        "names a host that does not resolve"
    )


def test_the_allow_list_is_exact(server: LocalServer) -> None:
    # The test hook lets one address and port through, not the address.
    with LocalServer(answer(200, b"other")) as other:
        resolver = Resolver({"images.example": ["127.0.0.1"]})
        reason = refused(guard(server, resolver), f"http://images.example:{other.port}/")
        assert reason == REFUSED_ADDRESS
        assert other.received == []


# --- the success path, pinned -------------------------------------------------------------


def test_a_get_reaches_the_checked_address_with_its_own_host_header(server: LocalServer) -> None:
    resolver = Resolver({"images.example": ["127.0.0.1"]})
    url = f"http://images.example:{server.port}/photos/cat.png?size=large"
    reply = asyncio.run(guard(server, resolver).get(url))
    assert reply == Reply(200, "image/png", b"the image", url)
    assert reply.ok
    # One lookup, by the IDNA name and the URL's port; the connection went to its answer.
    assert resolver.calls == [("images.example", server.port)]
    [received] = server.received
    assert received.method == "GET" and received.path == "/photos/cat.png?size=large"
    assert received.headers["host"] == f"images.example:{server.port}"
    assert received.headers["accept-encoding"] == "identity"
    assert received.headers["user-agent"] == "matte"


def test_names_are_looked_up_in_their_idna_form(server: LocalServer) -> None:
    resolver = Resolver({"xn--bcher-kva.example": ["127.0.0.1"]})
    reply = asyncio.run(guard(server, resolver).get(f"http://bücher.example:{server.port}/"))
    assert reply.status == 200
    assert resolver.calls == [("xn--bcher-kva.example", server.port)]
    assert server.received[0].headers["host"] == f"xn--bcher-kva.example:{server.port}"


def test_credentials_in_the_url_are_sent_as_basic_auth(server: LocalServer) -> None:
    asyncio.run(guard(server).get(f"http://user:pw@images.example:{server.port}/"))
    token = base64.b64encode(b"user:pw").decode()
    assert server.received[0].headers["authorization"] == f"Basic {token}"


def test_post_json_sends_the_body(server: LocalServer) -> None:
    reply = asyncio.run(guard(server).post_json(f"{server.url}/hook", b'{"a": 1}'))
    assert reply.status == 200
    [received] = server.received
    assert received.method == "POST" and received.path == "/hook"
    assert received.body == b'{"a": 1}'
    assert received.headers["content-type"] == "application/json"


def test_non_2xx_replies_come_back_as_they_are(server: LocalServer) -> None:
    with LocalServer(answer(404, b"gone", content_type="text/plain")) as missing:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", missing.port)})
        reply = asyncio.run(outbound.get(f"{missing.url}/a.png"))
    assert reply == Reply(404, "text/plain", b"gone", f"{missing.url}/a.png")
    assert not reply.ok


def test_proxy_variables_are_ignored(server: LocalServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy would make the connection somewhere the check never looked at.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, "http://10.255.255.1:9")
    reply = asyncio.run(guard(server).get(f"http://images.example:{server.port}/"))
    assert reply.status == 200 and len(server.received) == 1


def test_https_is_pinned_with_the_hostname_for_sni_and_verification() -> None:
    client = httpx.AsyncClient()
    url = httpx.URL("https://images.example:8443/a.png?x=1")
    request = pinned_request(client, "GET", url, "93.184.215.14", None, {})
    assert str(request.url) == "https://93.184.215.14:8443/a.png?x=1"
    assert request.headers["host"] == "images.example:8443"
    # httpcore hands `sni_hostname` to the TLS handshake as server_hostname, which
    # the certificate is verified against.
    assert request.extensions["sni_hostname"] == "images.example"
    v6 = pinned_request(client, "GET", httpx.URL("http://images.example/"), "2606::1", None, {})
    assert str(v6.url) == "http://[2606::1]/" and v6.headers["host"] == "images.example"
    assert "sni_hostname" not in v6.extensions
    asyncio.run(client.aclose())


# --- redirects ----------------------------------------------------------------------------


def redirecting(location: str, status: int = 302) -> LocalServer:
    """A server whose /start redirects to `location` and answers everything else."""

    def script(received: Received) -> Answer:
        if received.path == "/start":
            return Answer(status, {"location": location})
        return Answer(200, {"content-type": "image/png"}, b"final")

    return LocalServer(script)


def test_a_redirect_is_followed_and_checked() -> None:
    with redirecting("/final?x=1") as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        reply = asyncio.run(outbound.get(f"{local.url}/start"))
        assert reply == Reply(200, "image/png", b"final", f"{local.url}/final?x=1")
        assert [item.path for item in local.received] == ["/start", "/final?x=1"]


def test_a_redirect_to_loopback_is_refused() -> None:
    with LocalServer(answer(200, b"internal")) as internal:
        for location in (f"http://127.0.0.1:{internal.port}/", f"http://[::1]:{internal.port}/"):
            with redirecting(location) as public:
                outbound = Outbound(True, allow_for_tests={("127.0.0.1", public.port)})
                reason = refused(outbound, f"{public.url}/start")
                assert reason == f"redirects to a refused URL: {REFUSED_ADDRESS}"
                assert [item.path for item in public.received] == ["/start"]
        assert internal.received == []


def test_a_redirect_to_a_name_that_resolves_to_loopback_is_refused() -> None:
    with LocalServer(answer(200, b"internal")) as internal:
        with redirecting(f"http://internal.example:{internal.port}/") as public:
            resolver = Resolver({"internal.example": ["127.0.0.1"]})
            outbound = Outbound(
                True, resolver=resolver, allow_for_tests={("127.0.0.1", public.port)}
            )
            assert refused(outbound, f"{public.url}/start") == REFUSED_ADDRESS
            assert resolver.calls == [("internal.example", internal.port)]
        assert internal.received == []


@pytest.mark.parametrize(
    ("location", "reason"),
    [
        ("ftp://images.example/", "redirects to a refused URL: must be an http or https URL"),
        ("file:///etc/passwd", "redirects to a refused URL: must be an http or https URL"),
    ],
)
def test_a_redirect_to_another_scheme_is_refused(location: str, reason: str) -> None:
    with redirecting(location) as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        assert refused(outbound, f"{local.url}/start") == reason


def test_a_redirect_to_an_invalid_url_fails() -> None:
    with redirecting("http://[::1") as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        assert failed(outbound, f"{local.url}/start") == "the host's answer is not valid HTTP"
        assert len(local.received) == 1


def test_redirects_are_limited() -> None:
    with LocalServer(lambda _: Answer(302, {"location": "/again"})) as loop:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", loop.port)})
        assert refused(outbound, f"{loop.url}/start") == "redirects more than 3 times"
        # The first request and three redirects followed: four in all.
        assert len(loop.received) == MAX_REDIRECTS + 1 == 4
    with LocalServer(lambda _: Answer(302, {"location": "/again"})) as loop:
        outbound = Outbound(True, max_redirects=1, allow_for_tests={("127.0.0.1", loop.port)})
        assert refused(outbound, f"{loop.url}/start") == "redirects more than 1 times"
        assert len(loop.received) == 2


@pytest.mark.parametrize(
    ("status", "method", "body"), [(303, "GET", b""), (302, "GET", b""), (307, "POST", b"{}")]
)
def test_a_post_redirected(status: int, method: str, body: bytes) -> None:
    with redirecting("/final", status) as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        reply = asyncio.run(outbound.post_json(f"{local.url}/start", b"{}"))
        assert reply.status == 200
        final = local.received[1]
        assert (final.method, final.body) == (method, body)


def test_a_redirect_without_a_location_is_the_answer() -> None:
    with LocalServer(answer(302, b"no location")) as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        assert asyncio.run(outbound.get(local.url)).status == 302


# --- caps ---------------------------------------------------------------------------------


def test_the_defaults() -> None:
    outbound = Outbound(True)
    assert MAX_BYTES == 10 * 1024 * 1024 and outbound.max_bytes == MAX_BYTES
    assert MAX_REDIRECTS == 3 and outbound.max_redirects == 3
    assert TIMEOUT_S == 10.0 and outbound.timeout_s == 10.0
    assert not Outbound(False).enabled


def test_a_declared_length_over_the_cap_is_refused_unread() -> None:
    with LocalServer(answer(200, b"x" * 1001)) as local:
        outbound = Outbound(True, max_bytes=1000, allow_for_tests={("127.0.0.1", local.port)})
        assert failed(outbound, local.url) == "is larger than 1000 bytes"
    with LocalServer(answer(200, b"x" * 1000)) as local:
        outbound = Outbound(True, max_bytes=1000, allow_for_tests={("127.0.0.1", local.port)})
        assert asyncio.run(outbound.get(local.url)).content == b"x" * 1000


def test_a_declared_length_over_the_cap_is_refused_before_the_body_arrives() -> None:
    # The body would take 2 s to come: refused at the headers, not at the deadline.
    def stalled() -> Iterator[bytes]:
        yield b"x"
        time.sleep(2)

    script = lambda _: Answer(200, {"content-length": "1001"}, stalled())  # noqa: E731
    with LocalServer(script) as local:
        outbound = Outbound(
            True, max_bytes=1000, timeout_s=1, allow_for_tests={("127.0.0.1", local.port)}
        )
        started = time.monotonic()
        assert failed(outbound, local.url) == "is larger than 1000 bytes"
        assert time.monotonic() - started < 0.9


def test_a_streamed_body_is_capped_while_it_arrives() -> None:
    # No Content-Length: 11 MiB in 64 KiB chunks, then the connection closes.
    chunks = [b"x" * 65536] * 176
    with LocalServer(lambda _: Answer(200, {}, iter(chunks))) as local:
        outbound = Outbound(True, allow_for_tests={("127.0.0.1", local.port)})
        assert failed(outbound, local.url) == "is larger than 10MiB"
    exactly = [b"x" * 500, b"x" * 500]
    with LocalServer(lambda _: Answer(200, {}, iter(exactly))) as local:
        outbound = Outbound(True, max_bytes=1000, allow_for_tests={("127.0.0.1", local.port)})
        assert asyncio.run(outbound.get(local.url)).content == b"x" * 1000
    over = [b"x" * 500, b"x" * 501]
    with LocalServer(lambda _: Answer(200, {}, iter(over))) as local:
        outbound = Outbound(True, max_bytes=1000, allow_for_tests={("127.0.0.1", local.port)})
        assert failed(outbound, local.url) == "is larger than 1000 bytes"


def test_a_slow_host_times_out() -> None:
    with LocalServer(lambda _: Answer(200, {}, b"late", delay_s=2.0)) as local:
        outbound = Outbound(True, timeout_s=0.3, allow_for_tests={("127.0.0.1", local.port)})
        started = time.monotonic()
        assert failed(outbound, local.url) == "got no answer within 0.3 seconds"
        assert time.monotonic() - started < 1.5


def test_the_deadline_covers_the_lookup() -> None:
    async def slow(host: str, port: int) -> Sequence[str]:
        await asyncio.sleep(5)
        return ["8.8.8.8"]

    outbound = Outbound(True, timeout_s=0.2, resolver=slow)
    started = time.monotonic()
    assert failed(outbound, "http://slow.example/") == "got no answer within 0.2 seconds"
    assert time.monotonic() - started < 1.5


def test_a_closed_port_cannot_be_reached() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    outbound = Outbound(True, allow_for_tests={("127.0.0.1", port)})
    assert failed(outbound, f"http://127.0.0.1:{port}/") == "the host could not be reached"


def test_the_system_resolver_answers_addresses() -> None:
    # Loopback names only: the system resolver must not leave the machine in tests.
    assert asyncio.run(system_resolver("127.0.0.1", 80)) == ["127.0.0.1"]
    assert "127.0.0.1" in asyncio.run(system_resolver("localhost", 80)) or (
        "::1" in asyncio.run(system_resolver("localhost", 80))
    )
    # And a guard on the system resolver refuses localhost.
    assert refused(Outbound(True), "http://localhost:9/") == REFUSED_ADDRESS


# --- a caller's own allow-list of hosts (MATTE_FETCH_ALLOWED_HOSTS) ---------------------------


def listed(server: LocalServer, resolver: Resolver) -> Outbound:
    """A guard turned off in general, that may reach `server` by name."""
    return Outbound(False, resolver=resolver, allow_for_tests={("127.0.0.1", server.port)})


def test_a_listed_host_is_fetched_with_the_guard_otherwise_off(server: LocalServer) -> None:
    resolver = Resolver({"images.example": ["127.0.0.1"]})
    outbound = listed(server, resolver)
    url = f"http://Images.Example:{server.port}/a.png"
    reply = asyncio.run(outbound.get(url, hosts={"images.example"}))
    assert reply.content == b"the image"
    # Without the list the same guard is off.
    assert refused(outbound, url).startswith("URLs are turned off")


def test_a_host_off_the_list_is_refused_before_any_lookup(server: LocalServer) -> None:
    resolver = Resolver({"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
    outbound = listed(server, resolver)
    with pytest.raises(OutboundRefused) as caught:
        asyncio.run(outbound.get(f"http://other.example:{server.port}/", hosts={"images.example"}))
    assert caught.value.reason == "the host other.example is not one this server fetches from"
    assert resolver.calls == [] and server.received == []


def test_an_empty_list_refuses_everything(server: LocalServer) -> None:
    outbound = Outbound(True, allow_for_tests={("127.0.0.1", server.port)})
    with pytest.raises(OutboundRefused) as caught:
        asyncio.run(outbound.get(f"{server.url}/", hosts=frozenset()))
    assert caught.value.reason.startswith("URLs are turned off")
    assert server.received == []


def test_a_listed_host_still_meets_the_address_checks() -> None:
    resolver = Resolver({"images.example": ["10.0.0.7"]})
    outbound = Outbound(False, resolver=resolver)
    with pytest.raises(OutboundRefused) as caught:
        asyncio.run(outbound.get("http://images.example/", hosts={"images.example"}))
    assert caught.value.reason == REFUSED_ADDRESS


def test_a_redirect_off_the_list_is_refused() -> None:
    with LocalServer(answer(200, b"elsewhere")) as other:
        with redirecting(f"http://other.example:{other.port}/") as start:
            resolver = Resolver({"images.example": ["127.0.0.1"], "other.example": ["127.0.0.1"]})
            outbound = Outbound(
                False,
                resolver=resolver,
                allow_for_tests={("127.0.0.1", start.port), ("127.0.0.1", other.port)},
            )
            with pytest.raises(OutboundRefused) as caught:
                asyncio.run(
                    outbound.get(
                        f"http://images.example:{start.port}/start", hosts={"images.example"}
                    )
                )
            assert caught.value.reason.startswith("redirects to a refused URL: the host other")
        assert other.received == []
