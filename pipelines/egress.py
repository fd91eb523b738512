"""Egress policy: which addresses a step may open a connection to.

Steps run tenants' configuration, and a URL may come from trigger input, so an outbound
connection must not reach the control plane's own neighbourhood: loopback, private networks,
link-local and cloud metadata addresses are refused unless an allow-list opens them.

The check is on the address actually connected to, never on the URL's text: numeric tricks
(``http://2130706433/``, ``http://0x7f.1/``, ``http://[::ffff:7f00:1]/``) resolve to the address
they stand for and are judged as that. ``EgressPolicy.connect`` resolves the host once, checks
every answer, and connects to the checked address itself, so a DNS answer that changes between
check and connect (rebinding) cannot switch the target.

Allow-list entries (``parse_rule``):

* ``10.1.0.0/16``, ``::1/128``: a CIDR; any port on those addresses.
* ``internal.example``, ``internal.example:8443``: a host name as written in the URL (any
  address it resolves to), optionally only on one port.
* ``127.0.0.1:8080``, ``[::1]:8080``, ``127.0.0.1``: one address, optionally one port.

Pure: the standard library only, so ``notify``-like steps and tests use it without Django.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

from pipelines.errors import PipelineError, StepFailed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

EGRESS_DENIED = "egress_denied"

# Named first so a refusal says what the address is, not only that it is not public. Order
# matters: the metadata addresses sit inside link-local, private and CGNAT ranges.
_NAMED_RANGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("cloud metadata", ("169.254.169.254/32", "fd00:ec2::254/128", "100.100.100.200/32")),
    ("unspecified", ("0.0.0.0/8", "::/128")),
    ("loopback", ("127.0.0.0/8", "::1/128")),
    ("link-local", ("169.254.0.0/16", "fe80::/10")),
    ("multicast", ("224.0.0.0/4", "ff00::/8")),
    ("private", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
    ("shared address space (CGNAT)", ("100.64.0.0/10",)),
    ("reserved", ("240.0.0.0/4", "255.255.255.255/32")),
)
_RANGES = tuple((reason, tuple(ipaddress.ip_network(n) for n in nets)) for reason, nets in _NAMED_RANGES)

# IPv6 forms that carry an IPv4 address which a gateway or the kernel may connect to instead.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


class EgressRuleError(PipelineError):
    """An allow-list entry cannot be parsed; ``entry`` is the text given."""

    def __init__(self, entry: str, message: str):
        self.entry = entry
        super().__init__(message)


class EgressDenied(StepFailed):
    """A step tried to connect to an address the policy refuses; never retryable."""

    def __init__(self, *, address: str, port: int, host: str, why: str):
        shown = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
        super().__init__(
            f"egress to {shown} (host {host}) is denied: {why}; allow it in the company's "
            "egress allow-list",
            retryable=False,
            code=EGRESS_DENIED,
            details={"reason": EGRESS_DENIED, "address": address, "port": port, "host": host,
                     "range": why},
        )
        self.address, self.port, self.host, self.why = address, port, host, why


def embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, NAT64, 6to4, Teredo, compatible)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]  # the client's address; the server half is public by design
    if ip in _IPV4_COMPATIBLE and int(ip) > 1:  # ::a.b.c.d (deprecated); :: and ::1 are named
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def refusal_reason(ip: IPAddress) -> str | None:
    """Why ``ip`` is refused by default (``"loopback"``, ``"private"`` ...), or None if public."""
    for reason, networks in _RANGES:
        if any(ip.version == net.version and ip in net for net in networks):
            return reason
    inner = embedded_ipv4(ip)
    if inner is not None:
        why = refusal_reason(inner)
        if why:
            return f"{why} ({inner} inside IPv6 {ip})"
    if not ip.is_global:  # documentation, benchmarking, protocol assignments, site-local ...
        return "reserved"
    return None


def parse_address(text: str) -> IPAddress:
    """An address as a socket reports it (an IPv6 scope ``%eth0`` is dropped for the check)."""
    return ipaddress.ip_address(text.split("%", 1)[0])


def normalize_host(host: str) -> str:
    """A host name as compared with allow-list entries: lower case, no brackets or final dot."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii") if host else host
    except UnicodeError:
        return host


@dataclass(frozen=True)
class EgressRule:
    """One allow-list entry: a network (``network``) or a host name (``host``), maybe one port."""

    text: str
    network: IPNetwork | None = None
    host: str = ""
    port: int | None = None

    @property
    def canonical(self) -> str:
        """The entry in one spelling (``10.0.0.0/8``, ``127.0.0.1:8080``, ``[::1]:80``, ``api.x``),
        so the same rule written twice is recognised as one."""
        if self.network is not None:
            if self.port is None:
                return str(self.network)
            address = self.network.network_address
            return f"[{address}]:{self.port}" if address.version == 6 else f"{address}:{self.port}"
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def allows(self, *, host: str, port: int, address: IPAddress) -> bool:
        if self.port is not None and self.port != port:
            return False
        if self.network is not None:
            candidates = [address]
            inner = embedded_ipv4(address)
            if inner is not None:
                candidates.append(inner)
            return any(c.version == self.network.version and c in self.network for c in candidates)
        return normalize_host(host) == self.host


def parse_rule(entry: str) -> EgressRule:
    """One allow-list entry (see the module docstring); ``EgressRuleError`` says what is wrong."""
    text = entry.strip() if isinstance(entry, str) else entry
    if not isinstance(text, str) or not text:
        raise EgressRuleError(str(entry), f"egress allow-list entry {entry!r} is empty; write a "
                              "CIDR (10.0.0.0/8), a host (api.internal) or host:port")
    if "/" in text:
        try:
            return EgressRule(text=text, network=ipaddress.ip_network(text, strict=False))
        except ValueError as exc:
            raise EgressRuleError(text, f"egress allow-list entry {text!r} is not a CIDR: {exc}") from None
    host, port = _split_host_port(text)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    if address is not None:
        return EgressRule(text=text, network=ipaddress.ip_network(address), port=port)
    name = normalize_host(host)
    labels = name.split(".")
    if not name or len(name) > 253 or any(
        not label or len(label) > 63 or not all(c.isalnum() or c in "-_" for c in label) for label in labels
    ):
        raise EgressRuleError(text, f"egress allow-list entry {text!r} is not a host name, an IP "
                              "address or a CIDR")
    if labels[-1].isdigit():  # 2130706433 or 0x7f.1 style: the check is on addresses, say so
        raise EgressRuleError(text, f"egress allow-list entry {text!r} looks numeric but is not an "
                              "IP address; write the address (127.0.0.1) or a CIDR")
    return EgressRule(text=text, host=name, port=port)


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise EgressRuleError(text, f"egress allow-list entry {text!r}: write IPv6 as [addr] or [addr]:port")
        return host, _port(text, rest[1:]) if rest else None
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(text, port)
    return text, None  # no port, or a bare IPv6 address


def _port(entry: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise EgressRuleError(entry, f"egress allow-list entry {entry!r} has port {text!r}; "
                              "a port is 1-65535")
    return int(text)


def parse_rules(entries: Iterable[str]) -> tuple[EgressRule, ...]:
    return tuple(parse_rule(entry) for entry in entries)


def system_resolver(host: str, port: int) -> list[str]:
    """Addresses ``host`` resolves to, in the resolver's order, each once (numeric forms too)."""
    out: list[str] = []
    for *_ignored, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        if sockaddr[0] not in out:
            out.append(sockaddr[0])
    return out


@dataclass(frozen=True)
class EgressPolicy:
    """Default-deny for non-public addresses, opened by ``rules``.

    ``rules`` may be given as a zero-argument callable returning them, so a context can carry a
    policy whose allow-list is only loaded when a step actually connects somewhere.
    """

    rules: tuple[EgressRule, ...] | Callable[[], Iterable[EgressRule]] = ()
    resolver: Resolver = system_resolver
    _loaded: list = field(default_factory=list, init=False, repr=False, compare=False)

    @classmethod
    def allowing(cls, *entries: str, resolver: Resolver = system_resolver) -> "EgressPolicy":
        return cls(rules=parse_rules(entries), resolver=resolver)

    def allow_list(self) -> tuple[EgressRule, ...]:
        if not self._loaded:
            rules = self.rules() if callable(self.rules) else self.rules
            self._loaded.append(tuple(rules))
        return self._loaded[0]

    def check(self, *, host: str, port: int, address: str) -> None:
        """Raise ``EgressDenied`` unless connecting to ``address`` for ``host:port`` is allowed."""
        ip = parse_address(address)
        why = refusal_reason(ip)
        if why is None:
            return
        if any(rule.allows(host=host, port=port, address=ip) for rule in self.allow_list()):
            return
        raise EgressDenied(address=str(ip), port=port, host=host, why=why)

    def connect(self, host: str, port: int, timeout: float | None = None) -> socket.socket:
        """A connected TCP socket to an allowed address of ``host``; resolves exactly once.

        Denied answers are skipped; if every answer is denied the first refusal is raised.
        Connection errors (``OSError``) of the allowed answers propagate as usual.
        """
        try:
            addresses = self.resolver(host, port)
        except UnicodeError as exc:
            raise OSError(f"cannot resolve {host!r}: {exc}") from None
        denied: EgressDenied | None = None
        last_error: OSError | None = None
        for address in addresses:
            try:
                self.check(host=host, port=port, address=address)
            except EgressDenied as exc:
                denied = denied or exc
                continue
            try:
                # Connect to the checked address itself: no second lookup that could answer differently.
                return socket.create_connection((address, port), timeout=timeout)
            except OSError as exc:
                last_error = exc
        if last_error is not None:
            raise last_error
        if denied is not None:
            raise denied
        raise OSError(f"{host!r} resolved to no address")
