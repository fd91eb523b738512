"""The egress policy and the http step behind it: no database, real sockets on 127.0.0.1 only.

A connection the policy refuses is never attempted, so "denied" tests also prove that nothing was
sent: the local servers record every request they receive, and `connections` records every
socket the policy opens.
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelines import egress
from pipelines.egress import (
    EgressDenied,
    EgressPolicy,
    EgressRuleError,
    parse_address,
    parse_rule,
    refusal_reason,
)
from pipelines.errors import StepFailed
from pipelines.steps import StepContext, StepSpec, run_step
from pipelines.steps import http as http_step


def run_http(config, egress_policy, **overrides):
    ctx = StepContext(execution_id="ex-1", node_id="n1", context={"trigger": {}}, egress=egress_policy, **overrides)
    return run_step(StepSpec("http", {"timeout_s": 3, **config}), ctx)


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.seen.append({"path": self.path, "host": self.headers.get("Host")})
        if self.path.startswith("/redirect?to="):
            self.send_response(302)
            self.send_header("Location", self.path.split("=", 1)[1])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"path": self.path, "port": self.server.server_address[1]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _serve(httpd):
    httpd.daemon_threads = True
    httpd.seen = []
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def make_server():
    started = []

    def make(handler=_Handler, wrap=None):
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        if wrap is not None:
            httpd.socket = wrap(httpd.socket)
        started.append((httpd, _serve(httpd)))
        return httpd

    yield make
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def server(make_server):
    httpd = make_server()
    httpd.port = httpd.server_address[1]
    httpd.url = f"http://127.0.0.1:{httpd.port}"
    return httpd


@pytest.fixture
def connections(monkeypatch):
    """Every address the policy opened a socket to, in order."""
    opened = []
    real = socket.create_connection

    def spy(address, *args, **kwargs):
        opened.append(address)
        return real(address, *args, **kwargs)

    monkeypatch.setattr(egress.socket, "create_connection", spy)
    return opened


def denied(info) -> dict:
    exc = info.value
    assert isinstance(exc, EgressDenied) and exc.retryable is False
    assert exc.to_dict()["code"] == "egress_denied"
    assert exc.details["reason"] == "egress_denied"
    return exc.details


# ------------------------------------------------------------------ ranges


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"), ("127.255.255.254", "loopback"), ("::1", "loopback"),
        ("0.0.0.0", "unspecified"), ("::", "unspecified"),
        ("169.254.10.1", "link-local"), ("fe80::1", "link-local"),
        ("10.0.0.1", "private"), ("172.16.0.1", "private"), ("172.31.255.255", "private"),
        ("192.168.1.1", "private"), ("fc00::1", "private"), ("fd12:3456::1", "private"),
        ("100.64.0.1", "shared address space (CGNAT)"), ("100.127.255.254", "shared address space (CGNAT)"),
        ("169.254.169.254", "cloud metadata"), ("fd00:ec2::254", "cloud metadata"),
        ("100.100.100.200", "cloud metadata"),
        ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"), ("255.255.255.255", "reserved"), ("192.0.2.1", "reserved"),
        ("198.18.0.1", "reserved"), ("2001:db8::1", "reserved"),
    ],
)
def test_refused_ranges(address, reason):
    assert refusal_reason(parse_address(address)) == reason


@pytest.mark.parametrize(
    "address, inner_reason",
    [
        ("::ffff:127.0.0.1", "loopback"), ("::ffff:7f00:1", "loopback"), ("::ffff:10.0.0.1", "private"),
        ("::ffff:169.254.169.254", "cloud metadata"),
        ("64:ff9b::127.0.0.1", "loopback"), ("64:ff9b::a9fe:a9fe", "cloud metadata"),
        ("64:ff9b:1::a00:1", "private"),
        ("2002:7f00:1::", "loopback"), ("2002:c0a8:101::1", "private"),
        ("::127.0.0.1", "loopback"),
    ],
    ids=lambda v: str(v),
)
def test_ipv6_forms_that_embed_a_refused_ipv4_are_refused(address, inner_reason):
    assert refusal_reason(parse_address(address)).startswith(inner_reason)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111",
                                     "64:ff9b::808:808", "172.32.0.1", "100.128.0.1", "11.0.0.1"])
def test_public_addresses_pass(address):
    assert refusal_reason(parse_address(address)) is None


def test_scope_ids_are_ignored_for_the_check():
    assert refusal_reason(parse_address("fe80::1%eth0")) == "link-local"


# ------------------------------------------------------------------ rules


@pytest.mark.parametrize(
    "entry, canonical",
    [
        ("10.0.0.0/8", "10.0.0.0/8"), ("10.1.2.3/8", "10.0.0.0/8"), ("127.0.0.1", "127.0.0.1/32"),
        ("127.0.0.1:8080", "127.0.0.1:8080"), ("[::1]:8080", "[::1]:8080"), ("::1", "::1/128"),
        ("Internal.Example.", "internal.example"), (" internal.example:8443 ", "internal.example:8443"),
        ("fd00::/8", "fd00::/8"),
    ],
)
def test_parse_rule_canonical(entry, canonical):
    assert parse_rule(entry).canonical == canonical
    assert parse_rule(canonical).canonical == canonical


@pytest.mark.parametrize(
    "entry",
    ["", "   ", "10.0.0.0/33", "not a host", "host:0", "host:65536", "host:http", "[::1", "[::1]x",
     "2130706433", "0x7f.1", "a..b", "x" * 64 + ".example", "10.0.0.0/8:443"],
)
def test_parse_rule_refuses_bad_entries(entry):
    with pytest.raises(EgressRuleError) as info:
        parse_rule(entry)
    assert info.value.entry == entry.strip() or entry.strip() == ""


def _check(policy, host, port, address):
    try:
        policy.check(host=host, port=port, address=address)
        return True
    except EgressDenied:
        return False


def test_a_cidr_opens_exactly_its_range_on_any_port():
    policy = EgressPolicy.allowing("10.1.0.0/16")
    assert _check(policy, "svc", 80, "10.1.2.3") and _check(policy, "svc", 5432, "10.1.255.255")
    assert not _check(policy, "svc", 80, "10.2.0.1")
    assert not _check(policy, "svc", 80, "127.0.0.1")
    assert _check(policy, "svc", 80, "::ffff:10.1.0.9")  # the same address in its IPv6 form


def test_an_address_with_port_opens_that_port_only():
    policy = EgressPolicy.allowing("127.0.0.1:8080")
    assert _check(policy, "localhost", 8080, "127.0.0.1")
    assert not _check(policy, "localhost", 8081, "127.0.0.1")
    assert not _check(policy, "localhost", 8080, "127.0.0.2")


def test_a_host_opens_that_host_only_and_a_port_narrows_it():
    policy = EgressPolicy.allowing("internal.example:8443", "other.example")
    assert _check(policy, "internal.example", 8443, "10.0.0.5")
    assert _check(policy, "INTERNAL.example.", 8443, "10.0.0.5")
    assert not _check(policy, "internal.example", 8444, "10.0.0.5")
    assert not _check(policy, "evil.internal.example", 8443, "10.0.0.5")
    assert not _check(policy, "internal.example.evil", 8443, "10.0.0.5")
    assert _check(policy, "other.example", 1, "192.168.0.1")
    assert not _check(policy, "10.0.0.5", 8443, "10.0.0.5")  # the address alone is not the host


def test_the_allow_list_is_loaded_lazily_and_once():
    calls = []

    def load():
        calls.append(1)
        return egress.parse_rules(["10.0.0.0/8"])

    policy = EgressPolicy(rules=load)
    assert calls == []
    assert _check(policy, "svc", 80, "8.8.8.8") and calls == []  # public: no allow-list needed
    assert _check(policy, "svc", 80, "10.0.0.1") and _check(policy, "svc", 80, "10.0.0.2")
    assert calls == [1]


def test_denied_message_names_address_port_host_and_fix():
    with pytest.raises(EgressDenied) as info:
        EgressPolicy().check(host="localhost", port=5432, address="127.0.0.1")
    assert str(info.value) == ("egress to 127.0.0.1:5432 (host localhost) is denied: loopback; "
                               "allow it in the company's egress allow-list")
    assert denied(info) == {"reason": "egress_denied", "address": "127.0.0.1", "port": 5432,
                            "host": "localhost", "range": "loopback"}
    json.dumps(info.value.to_dict())


# ------------------------------------------------------------------ the http step


def test_loopback_is_refused_by_default(server, connections):
    with pytest.raises(StepFailed) as info:
        run_http({"url": server.url + "/admin/login/"}, EgressPolicy())
    details = denied(info)
    assert (details["address"], details["port"], details["host"]) == ("127.0.0.1", server.port, "127.0.0.1")
    assert server.seen == [] and connections == []


def test_the_default_context_refuses_loopback_too(server):
    ctx = StepContext(execution_id="ex-1", node_id="n1")
    with pytest.raises(EgressDenied):
        http_step.HttpStep().run({"url": server.url + "/"}, ctx)
    assert server.seen == []


@pytest.mark.parametrize("port", [5432, 6379], ids=["postgresql", "redis"])
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_postgresql_and_redis_ports_are_refused(host, port, connections):
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://{host}:{port}/"}, EgressPolicy())
    details = denied(info)
    assert details["port"] == port and details["host"] == host
    assert parse_address(details["address"]).is_loopback
    assert connections == []


@pytest.mark.parametrize("address", ["10.255.255.1", "192.168.0.1", "172.16.5.4", "169.254.169.254",
                                     "100.100.100.200", "[fd00:ec2::254]", "[fe80::1]", "0.0.0.0"])
def test_private_link_local_and_metadata_addresses_are_refused(address, connections):
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://{address}/latest/meta-data/"}, EgressPolicy())
    assert denied(info)["address"] == str(ipaddress.ip_address(address.strip("[]")))
    assert connections == []


@pytest.mark.parametrize(
    "host",
    ["2130706433", "0x7f.1", "0x7f000001", "0177.0.0.1", "127.1", "[::ffff:7f00:1]", "[::ffff:127.0.0.1]",
     "[64:ff9b::7f00:1]", "127.000.000.001", "LOCALHOST", "localhost."],
)
def test_numeric_url_tricks_are_judged_by_the_address_they_reach(server, connections, host):
    try:
        resolved = egress.system_resolver(host.strip("[]"), server.port)
    except OSError:
        resolved = []  # this libc does not read that spelling at all: nothing to connect to either
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://{host}:{server.port}/"}, EgressPolicy())
    if resolved:
        assert denied(info)["range"].startswith("loopback")
    assert server.seen == [] and connections == []


def test_a_name_resolving_to_loopback_is_refused(server, connections):
    policy = EgressPolicy(resolver=lambda host, port: ["127.0.0.1"])
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://innocent.example.com:{server.port}/"}, policy)
    details = denied(info)
    assert (details["host"], details["address"]) == ("innocent.example.com", "127.0.0.1")
    assert "(host innocent.example.com)" in str(info.value)
    assert server.seen == [] and connections == []


def test_a_name_with_public_and_loopback_answers_only_connects_to_the_public_one(monkeypatch, server):
    opened = []

    def refuse(address, *args, **kwargs):
        opened.append(address)
        raise ConnectionRefusedError("refused (test)")

    monkeypatch.setattr(egress.socket, "create_connection", refuse)
    policy = EgressPolicy(resolver=lambda host, port: ["127.0.0.1", "8.8.8.8", "::1"])
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://mixed.example:{server.port}/"}, policy)
    assert info.value.details["reason"] == "connection"  # the allowed answer failed; it was tried
    assert opened == [("8.8.8.8", server.port)]
    assert server.seen == []


def test_a_rebinding_resolver_cannot_reach_loopback(monkeypatch, server):
    """First answer public, every later one loopback: the socket goes to the checked address."""
    answers = []

    def rebinding(host, port):
        answers.append(host)
        return ["93.184.216.34"] if len(answers) == 1 else ["127.0.0.1"]

    opened = []

    def refuse(address, *args, **kwargs):
        opened.append(address)
        raise ConnectionRefusedError("refused (test)")

    monkeypatch.setattr(egress.socket, "create_connection", refuse)
    policy = EgressPolicy(resolver=rebinding)
    url = f"http://rebind.example:{server.port}/"
    with pytest.raises(StepFailed) as first:
        run_http({"url": url}, policy)
    assert first.value.details["reason"] == "connection"
    with pytest.raises(StepFailed) as second:  # the next lookup answers loopback: refused
        run_http({"url": url}, policy)
    assert denied(second)["address"] == "127.0.0.1"
    assert answers == ["rebind.example", "rebind.example"]  # one lookup per connection, no second look
    assert opened == [("93.184.216.34", server.port)]  # the checked literal address, never the name
    assert server.seen == []


def test_a_redirect_from_an_allowed_server_to_loopback_is_refused(make_server, server, connections):
    target = make_server()
    target_port = target.server_address[1]
    policy = EgressPolicy.allowing(f"127.0.0.1:{server.port}")
    for location in (f"http://127.0.0.1:{target_port}/secret", f"http://localhost:{target_port}/secret",
                     f"http://[::ffff:127.0.0.1]:{target_port}/", "http://169.254.169.254/latest/meta-data/"):
        with pytest.raises(StepFailed) as info:
            run_http({"url": f"{server.url}/redirect?to={location}"}, policy)
        assert denied(info)["port"] in (target_port, 80)
    assert target.seen == []
    assert len(server.seen) == 4  # each first hop was allowed and made
    assert connections == [("127.0.0.1", server.port)] * 4


def test_a_redirect_within_the_allow_list_is_followed(make_server, server):
    target = make_server()
    target_port = target.server_address[1]
    policy = EgressPolicy.allowing(f"127.0.0.1:{server.port}", f"127.0.0.1:{target_port}")
    out = run_http({"url": f"{server.url}/redirect?to=http://127.0.0.1:{target_port}/next"}, policy)
    assert out == {"status": 200, "body": {"path": "/next", "port": target_port}}


def test_a_cidr_rule_opens_its_addresses(server):
    out = run_http({"url": server.url + "/ok"}, EgressPolicy.allowing("127.0.0.1/32"))
    assert out["body"]["path"] == "/ok"
    with pytest.raises(StepFailed) as info:  # 127.0.0.2 is loopback too, but not in the rule
        run_http({"url": f"http://127.0.0.2:{server.port}/ok"}, EgressPolicy.allowing("127.0.0.1/32"))
    assert denied(info)["address"] == "127.0.0.2"


def test_a_host_rule_opens_that_host_and_port_only(make_server, server):
    other = make_server()
    policy = EgressPolicy.allowing(f"localhost:{server.port}")
    resolves_v4 = EgressPolicy(resolver=lambda h, p: ["127.0.0.1"], rules=policy.allow_list())
    assert run_http({"url": f"http://localhost:{server.port}/a"}, resolves_v4)["body"]["path"] == "/a"
    for url in (f"http://localhost:{other.server_address[1]}/", f"http://127.0.0.1:{server.port}/"):
        with pytest.raises(StepFailed) as info:
            run_http({"url": url}, resolves_v4)
        denied(info)
    assert other.seen == [] and len(server.seen) == 1


def test_environment_proxies_are_not_used(make_server, server, monkeypatch):
    proxy = make_server()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    policy = EgressPolicy.allowing(f"127.0.0.1:{server.port}", f"127.0.0.1:{proxy.server_address[1]}")
    assert run_http({"url": server.url + "/direct"}, policy)["body"]["path"] == "/direct"
    assert proxy.seen == [] and [r["path"] for r in server.seen] == ["/direct"]


# ------------------------------------------------------------------ TLS keeps the host name


def _self_signed(tmp_path, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_https_verifies_the_certificate_for_the_host_name(tmp_path, make_server, monkeypatch):
    name = "egress-tls.test"
    cert_path, key_path = _self_signed(tmp_path, name)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert_path, key_path)
    tls_server = make_server(wrap=lambda sock: server_ctx.wrap_socket(sock, server_side=True))
    port = tls_server.server_address[1]
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    monkeypatch.setattr(http_step, "tls_context", lambda: client_ctx)

    policy = EgressPolicy(resolver=lambda host, p: ["127.0.0.1"], rules=egress.parse_rules([name, "127.0.0.1"]))
    out = run_http({"url": f"https://{name}:{port}/tls"}, policy)
    assert out["body"]["path"] == "/tls"
    assert tls_server.seen[-1]["host"] == f"{name}:{port}"  # the Host header keeps the name

    with pytest.raises(StepFailed) as info:  # the same server by address: the certificate does not match
        run_http({"url": f"https://127.0.0.1:{port}/tls"}, policy)
    assert "certificate" in info.value.message.lower()


def test_a_fragment_cannot_borrow_an_allowed_host(server, connections):
    with pytest.raises(StepFailed) as info:
        run_http({"url": f"http://127.0.0.1:{server.port}#@allowed.example/"}, EgressPolicy.allowing("allowed.example"))
    assert denied(info)["host"] == "127.0.0.1"
    assert server.seen == [] and connections == []


@pytest.mark.parametrize("template", ["http://allowed.example@127.0.0.1:{port}/",
                                      "http://user:pw@allowed.example:{port}/",
                                      "http://127.0.0.1:{port}\\@allowed.example/",
                                      "http://127.0.0.1:99999/", "http://:{port}/"])
def test_credentials_and_malformed_authorities_are_refused_before_any_lookup(server, connections, template):
    looked_up = []
    policy = EgressPolicy(resolver=lambda host, port: looked_up.append(host) or ["127.0.0.1"],
                          rules=egress.parse_rules(["allowed.example"]))
    url = template.format(port=server.port)
    with pytest.raises(StepFailed) as info:
        http_step.HttpStep().run({"url": url}, StepContext(execution_id="e", node_id="n", egress=policy))
    assert info.value.retryable is False and info.value.details == {"url": url}
    assert looked_up == [] and connections == [] and server.seen == []
