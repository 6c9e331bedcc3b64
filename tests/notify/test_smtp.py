"""E-mail through a real SMTP server on loopback (aiosmtpd): STARTTLS, TLS from the first byte, login,
certificate checks, and the settings that choose them."""
from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from config.settings import ConfigError, load_settings
from referral.notify.adapters import DeliveryFailed, SmtpAdapter, adapters_from_settings

USER, PASSWORD = "amanat-relay", "relay-password-for-tests-only"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost; also a stranger CA."""
    folder = tmp_path_factory.mktemp("smtp-pki")
    now = dt.datetime.now(dt.UTC)

    def ca(name: str):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(_name(name)).issuer_name(_name(name))
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    ca_key, ca_cert = ca("Amanat test CA")
    _stranger_key, stranger_cert = ca("Someone else's CA")
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("mail.test")).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {name: folder / f"{name}.pem" for name in ("ca", "stranger", "cert", "key")}
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["stranger"].write_bytes(stranger_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(paths["cert"], paths["key"])
    return {**{k: str(v) for k, v in paths.items()}, "server_context": server}


class Keep:
    """Keeps what it receives, and the logins it was offered."""

    def __init__(self):
        self.messages, self.logins = [], []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        over_tls = server.transport.get_extra_info("ssl_object") is not None
        self.messages.append((envelope, session.authenticated, over_tls))
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            USER.encode(), PASSWORD.encode())
        self.logins.append((auth_data.login.decode(), ok))
        return AuthResult(success=ok)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture()
def mail_server():
    """Start servers as asked (STARTTLS offered or not, TLS from the first byte, login required)."""
    started = []

    def start(**kwargs):
        handler = Keep()
        port = _free_port()
        if kwargs.pop("login", False):
            kwargs.update(authenticator=handler.authenticate, auth_required=True)
        controller = Controller(handler, hostname="127.0.0.1", port=port, **kwargs)
        controller.start()
        started.append(controller)
        return port, handler

    yield start
    for controller in started:
        controller.stop()


def _send(adapter: SmtpAdapter) -> None:
    adapter.send("k7", "officer@test.example", "Amanat: new case R-AAAA-BBBB for you. Please log in.")


def test_starttls_and_login_deliver_over_tls(mail_server, pki):
    port, handler = mail_server(tls_context=pki["server_context"], require_starttls=True, login=True)
    _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", security="starttls", username=USER,
                      password=PASSWORD, ca_file=pki["ca"]))
    [(envelope, authenticated, over_tls)] = handler.messages
    assert authenticated and over_tls
    assert handler.logins == [(USER, True)]
    assert envelope.rcpt_tos == ["officer@test.example"] and "Message-ID: <k7@amanat>" in envelope.content.decode()


def test_starttls_is_the_default(mail_server, pki):
    port, handler = mail_server(tls_context=pki["server_context"], require_starttls=True)
    _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", ca_file=pki["ca"]))
    [(_envelope, _authenticated, over_tls)] = handler.messages
    assert over_tls


def test_a_server_without_starttls_gets_nothing_in_clear(mail_server, pki):
    port, handler = mail_server()  # no TLS offered at all
    with pytest.raises(DeliveryFailed, match="does not offer STARTTLS"):
        _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", username=USER, password=PASSWORD,
                          ca_file=pki["ca"]))
    assert handler.messages == [] and handler.logins == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_an_untrusted_certificate_is_refused_before_the_login(mail_server, pki, security):
    server = ({"tls_context": pki["server_context"], "require_starttls": True} if security == "starttls"
              else {"ssl_context": pki["server_context"], "auth_require_tls": False})
    port, handler = mail_server(login=True, **server)
    with pytest.raises(DeliveryFailed, match="SSLCertVerificationError"):
        _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", security=security, username=USER,
                          password=PASSWORD, ca_file=pki["stranger"]))
    assert handler.messages == [] and handler.logins == []


def test_a_name_the_certificate_does_not_carry_is_refused(mail_server, pki, monkeypatch):
    # The certificate names 127.0.0.1 and localhost; the same server reached as 127.0.0.2 is someone else.
    port, handler = mail_server(tls_context=pki["server_context"], require_starttls=True)
    adapter = SmtpAdapter("127.0.0.1", port, "amanat@test.example", ca_file=pki["ca"])
    original = SmtpAdapter._context

    def wrong_name(self):
        context = original(self)
        wrap = context.wrap_socket
        context.wrap_socket = lambda sock, server_hostname=None, **kw: wrap(sock, server_hostname="127.0.0.2", **kw)
        return context

    monkeypatch.setattr(SmtpAdapter, "_context", wrong_name)
    with pytest.raises(DeliveryFailed, match="SSLCertVerificationError"):
        _send(adapter)
    assert handler.messages == []


# aiosmtpd counts only STARTTLS as TLS for its AUTH rule; this server is TLS from the first byte.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_delivers(mail_server, pki):
    port, handler = mail_server(ssl_context=pki["server_context"], login=True, auth_require_tls=False)
    _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", security="tls", username=USER,
                      password=PASSWORD, ca_file=pki["ca"]))
    [(_envelope, authenticated, over_tls)] = handler.messages
    assert authenticated and over_tls and handler.logins == [(USER, True)]


def test_a_wrong_password_sends_nothing_and_is_not_echoed(mail_server, pki):
    port, handler = mail_server(tls_context=pki["server_context"], require_starttls=True, login=True)
    with pytest.raises(DeliveryFailed) as caught:
        # The client tries its next mechanism and the server hangs up after a wait: a short timeout.
        _send(SmtpAdapter("127.0.0.1", port, "amanat@test.example", 2, username=USER, password="not-it",
                          ca_file=pki["ca"]))
    assert "not-it" not in str(caught.value) and USER not in str(caught.value)
    assert handler.messages == [] and handler.logins and all(not ok for _user, ok in handler.logins)


def test_a_login_without_tls_is_refused_by_the_adapter():
    with pytest.raises(ValueError, match="needs TLS"):
        SmtpAdapter("127.0.0.1", 25, "amanat@test.example", security="none", username=USER, password=PASSWORD)
    with pytest.raises(ValueError, match="unknown SMTP security"):
        SmtpAdapter("127.0.0.1", 25, "amanat@test.example", security="ssl")


# -- settings -------------------------------------------------------------------------------------------------

@pytest.fixture()
def smtp_env(monkeypatch):
    for name in ("SECURITY", "PORT", "USERNAME", "PASSWORD", "CA_FILE", "HOST"):
        monkeypatch.delenv(f"REFERRAL_SMTP_{name}", raising=False)
    monkeypatch.setenv("REFERRAL_ENV", "testing")
    return monkeypatch


@pytest.mark.parametrize(("security", "port"), [(None, 587), ("starttls", 587), ("TLS", 465), ("none", 25)])
def test_the_port_follows_the_security_unless_set(smtp_env, pki, security, port):
    if security:
        smtp_env.setenv("REFERRAL_SMTP_SECURITY", security)
    settings = load_settings()
    assert settings["SMTP_PORT"] == port and settings["SMTP_SECURITY"] == (security or "starttls").lower()
    smtp_env.setenv("REFERRAL_SMTP_CA_FILE", pki["ca"])  # a real file of PEM certificates is taken
    assert load_settings()["SMTP_CA_FILE"] == pki["ca"]
    smtp_env.setenv("REFERRAL_SMTP_PORT", "2525")
    assert load_settings()["SMTP_PORT"] == 2525


@pytest.mark.parametrize(("env", "message"), [
    ({"REFERRAL_SMTP_SECURITY": "ssl"}, "starttls, tls or none"),
    ({"REFERRAL_SMTP_USERNAME": USER}, "set together"),
    ({"REFERRAL_SMTP_PASSWORD": PASSWORD}, "set together"),
    ({"REFERRAL_SMTP_SECURITY": "none", "REFERRAL_SMTP_USERNAME": USER, "REFERRAL_SMTP_PASSWORD": PASSWORD},
     "needs REFERRAL_SMTP_SECURITY starttls or tls"),
    ({"REFERRAL_SMTP_CA_FILE": "/nonexistent/ca.pem"}, "not a readable file"),
    ({"REFERRAL_SMTP_CA_FILE": __file__}, "not a readable file of PEM certificates"),
    ({"REFERRAL_SMTP_PORT": "zero"}, "whole number"),
    ({"REFERRAL_SMTP_PORT": "70000"}, "at most 65535"),
    # A host without the security named: mail used to go plain to port 25, so no silent default.
    ({"REFERRAL_SMTP_HOST": "mail.example"}, "REFERRAL_SMTP_HOST needs REFERRAL_SMTP_SECURITY"),
])
def test_bad_smtp_settings_refuse_to_start(smtp_env, env, message):
    for name, value in env.items():
        smtp_env.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_settings_reach_the_adapter(app, smtp_env, pki, mail_server):
    port, handler = mail_server(tls_context=pki["server_context"], require_starttls=True, login=True)
    smtp_env.setenv("REFERRAL_SMTP_HOST", "127.0.0.1")
    smtp_env.setenv("REFERRAL_SMTP_SECURITY", "starttls")
    smtp_env.setenv("REFERRAL_SMTP_PORT", str(port))
    smtp_env.setenv("REFERRAL_SMTP_USERNAME", USER)
    smtp_env.setenv("REFERRAL_SMTP_PASSWORD", PASSWORD)
    smtp_env.setenv("REFERRAL_SMTP_CA_FILE", pki["ca"])
    settings = load_settings()
    for name in ("SMTP_HOST", "SMTP_PORT", "SMTP_SECURITY", "SMTP_USERNAME", "SMTP_PASSWORD", "SMTP_CA_FILE"):
        smtp_env.setitem(app.config, name, settings[name])
    with app.app_context():
        _send(adapters_from_settings()["email"])
    [(_envelope, authenticated, over_tls)] = handler.messages
    assert authenticated and over_tls
