"""The one guard for requests Matte makes to other hosts on a client's behalf.

Fetching an `image` URL and calling a `webhook` both let a client make the server
send a request where it points, so both go through `Outbound`:

- off unless the operator turns it on (`MATTE_OUTBOUND_ENABLED`);
- http and https only;
- the host is resolved here, every address it resolves to is checked (no private,
  loopback, link-local, multicast, reserved or unspecified address, IPv4 or IPv6,
  nor an IPv4 address hidden in an IPv6 one), and the connection goes to the checked
  address itself, with the original `Host` header and TLS name. A second lookup
  never happens, so a name that resolves to a public address for the check and to
  an internal one for the connection (DNS rebinding) gets nowhere;
- redirects are followed here, at most `max_redirects`, each one checked again;
- the body is capped while it streams in, and the whole exchange has one deadline.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass

import httpx

MAX_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 3
TIMEOUT_S = 10.0

# 301/302/303 turn a POST into a GET without a body, as browsers and httpx do;
# 307/308 repeat the request as it was.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TO_GET = frozenset({301, 302, 303})
_SCHEMES = ("http", "https")
# NAT64 prefixes (RFC 6052, RFC 8215): the last 32 bits are an IPv4 address.
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# (host, port) -> the addresses it resolves to, as text.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]


class OutboundError(Exception):
    """A request to another host did not happen or did not succeed.

    `reason` is written for the client (it names no internals) and reads after
    the field it concerns: `image: <reason>`.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OutboundRefused(OutboundError):
    """The guard would not send the request: turned off, a bad URL or a forbidden address."""


class OutboundFailed(OutboundError):
    """The request was allowed but failed: no answer, a timeout, or a body over the cap."""


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    content: bytes
    url: str  # after redirects

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def forbidden(address: IPAddress) -> bool:
    """Whether `address` is one a client must not make the server reach."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None and forbidden(embedded):
            return True
        if address.is_site_local:
            return True
    # `is_global` alone lets multicast (224/4, ff00::/8) and reserved ranges such as
    # NAT64's 64:ff9b::/96 through, so those are named as well.
    return (
        not address.is_global
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        # The server's address is public by design; the client's is where it leads.
        return address.teredo[1]
    for prefix in _NAT64:
        if address in prefix:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `host` resolves to, from the system's resolver (off the event loop)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[str] = []
    for info in infos:
        address = str(info[4][0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class Outbound:
    """Requests to other hosts, each one checked and pinned (see the module's docstring).

    `resolver` and `allow_for_tests` exist for tests only and are never read from
    settings: `allow_for_tests` names exact (address, port) pairs that pass the
    address check, so a test can reach its own server on 127.0.0.1 while every
    other loopback address and port is still refused.
    """

    def __init__(
        self,
        enabled: bool,
        *,
        timeout_s: float = TIMEOUT_S,
        max_bytes: int = MAX_BYTES,
        max_redirects: int = MAX_REDIRECTS,
        resolver: Resolver | None = None,
        allow_for_tests: Collection[tuple[str, int]] = (),
    ) -> None:
        self.enabled = enabled
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._resolve: Resolver = resolver or system_resolver
        self._allowed = frozenset(allow_for_tests)

    def check_url(self, url: str, hosts: Collection[str] | None = None) -> httpx.URL:
        """`url` parsed, when the guard is on and it is an http(s) URL with a host.

        `hosts`: an allow-list of exact host names (lower case) for a caller
        that has its own (the IMG Processing dialect's MATTE_FETCH_ALLOWED_HOSTS).
        The list turns the guard on for those hosts alone; every other check
        still applies. A host written as an address is checked here too, so a
        request naming a forbidden address is refused before any work is done.
        """
        if hosts is None and not self.enabled:
            raise OutboundRefused("URLs are turned off on this server; send the data instead")
        if hosts is not None and not hosts:
            raise OutboundRefused("URLs are turned off on this server; upload the image instead")
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError):
            raise OutboundRefused("is not a valid URL") from None
        if parsed.scheme not in _SCHEMES:
            raise OutboundRefused("must be an http or https URL")
        if not parsed.raw_host:
            raise OutboundRefused("must name a host")
        if hosts is not None and parsed.host.lower().rstrip(".") not in hosts:
            raise OutboundRefused(f"the host {parsed.host} is not one this server fetches from")
        literal = _address(parsed.host)
        if literal is not None:
            self._check_address(literal, _port(parsed))
        return parsed

    async def get(self, url: str, hosts: Collection[str] | None = None) -> Reply:
        """GET `url`; with `hosts`, it and every redirect must be on that list."""
        return await self._exchange("GET", url, None, {}, hosts)

    async def post_json(self, url: str, body: bytes) -> Reply:
        return await self._exchange("POST", url, body, {"content-type": "application/json"}, None)

    async def _exchange(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        hosts: Collection[str] | None,
    ) -> Reply:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(method, url, content, headers, hosts)
        except TimeoutError:
            raise OutboundFailed(f"got no answer within {self.timeout_s:g} seconds") from None

    async def _follow(
        self,
        method: str,
        url: str,
        content: bytes | None,
        headers: dict[str, str],
        hosts: Collection[str] | None,
    ) -> Reply:
        timeout = httpx.Timeout(self.timeout_s)
        # No pool to reuse: a kept-alive TLS connection to one address could
        # otherwise serve a later hop for another name on the same address.
        limits = httpx.Limits(max_keepalive_connections=0)
        # trust_env=False: proxy variables would send the request somewhere the
        # check never looked at.
        async with httpx.AsyncClient(trust_env=False, timeout=timeout, limits=limits) as client:
            target = self.check_url(url, hosts)
            for _ in range(self.max_redirects + 1):
                address = await self._pinned_address(target)
                request = pinned_request(client, method, target, address, content, headers)
                try:
                    response = await client.send(request, stream=True)
                except httpx.TimeoutException:
                    raise OutboundFailed(
                        f"got no answer within {self.timeout_s:g} seconds"
                    ) from None
                except httpx.RemoteProtocolError:
                    # Also an unparseable Location: httpx reads it while it receives.
                    raise OutboundFailed("the host's answer is not valid HTTP") from None
                except httpx.HTTPError:
                    raise OutboundFailed("the host could not be reached") from None
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        target = self._redirect(target, location, hosts)
                        if response.status_code in _TO_GET and method != "GET":
                            method, content, headers = "GET", None, {}
                        continue
                    data = await self._read(response)
                finally:
                    await response.aclose()
                return Reply(
                    response.status_code,
                    response.headers.get("content-type", ""),
                    data,
                    str(target),
                )
        raise OutboundRefused(f"redirects more than {self.max_redirects} times")

    def _redirect(
        self, current: httpx.URL, location: str, hosts: Collection[str] | None
    ) -> httpx.URL:
        try:
            return self.check_url(str(current.join(location)), hosts)
        except OutboundRefused as refused:
            raise OutboundRefused(f"redirects to a refused URL: {refused.reason}") from None

    async def _pinned_address(self, url: httpx.URL) -> str:
        """The one address to connect to: every address the host has must pass."""
        host = url.raw_host.decode("ascii")
        port = _port(url)
        literal = _address(url.host)
        if literal is not None:
            self._check_address(literal, port)
            return str(literal)
        try:
            found = await self._resolve(host, port)
        except (OSError, UnicodeError):
            raise OutboundFailed("names a host that does not resolve") from None
        addresses = [_address(item) for item in found]
        if not addresses:
            raise OutboundFailed("names a host that does not resolve")
        for address in addresses:
            if address is None:
                raise OutboundRefused("names a host that resolves to a forbidden address")
            self._check_address(address, port)
        first = addresses[0]
        assert first is not None
        return str(first)

    def _check_address(self, address: IPAddress, port: int) -> None:
        if (str(address), port) in self._allowed:
            return
        if forbidden(address):
            raise OutboundRefused(
                "points at a private, loopback, link-local or reserved address, which is refused"
            )

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise OutboundFailed(_too_large(self.max_bytes))
        data = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                data += chunk
                if len(data) > self.max_bytes:
                    raise OutboundFailed(_too_large(self.max_bytes))
        except httpx.TimeoutException:
            raise OutboundFailed(f"got no answer within {self.timeout_s:g} seconds") from None
        except httpx.HTTPError:
            raise OutboundFailed("the host closed the connection early") from None
        return bytes(data)


def pinned_request(
    client: httpx.AsyncClient,
    method: str,
    url: httpx.URL,
    address: str,
    content: bytes | None,
    headers: dict[str, str],
) -> httpx.Request:
    """A request for `url` that connects to `address`: the URL names the address, while
    the Host header and (for https) the TLS server name, which the certificate is
    verified against, stay the URL's own host."""
    extensions: dict[str, str] = {}
    if url.scheme == "https":
        extensions["sni_hostname"] = url.raw_host.decode("ascii")
    return client.build_request(
        method,
        url.copy_with(host=address),
        content=content,
        headers={
            "host": url.netloc.decode("ascii"),
            # Compressed bodies could expand past the cap within one chunk.
            "accept-encoding": "identity",
            "user-agent": "matte",
            **headers,
        },
        extensions=extensions,
    )


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _port(url: httpx.URL) -> int:
    if url.port is not None:
        return url.port
    return 443 if url.scheme == "https" else 80


def _too_large(max_bytes: int) -> str:
    mib = max_bytes / (1024 * 1024)
    size = f"{int(mib)}MiB" if mib >= 1 and mib.is_integer() else f"{max_bytes} bytes"
    return f"is larger than {size}"
