"""Notices sent to a real SMTP server (aiosmtpd) on 127.0.0.1: STARTTLS with a login, implicit TLS,
plain to a loopback relay only when allowed; a refused or untrusted server stores nothing.

The server's certificate is made here for 127.0.0.1 by a throwaway CA (``cryptography``); the
client trusts that CA through ``takedowns.smtp.ca_file`` and checks the certificate as it would
any other (a server signed by another CA is refused).
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import ipaddress
import ssl
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from mimamori.core.config import load_settings
from mimamori.core.errors import Unavailable
from mimamori.services import hosts, notices, takedowns
from mimamori.services.audit import Actor
from mimamori.stack.process import free_port
from mimamori.stores.cases import Case, Consent
from mimamori.stores.takedowns import Notice
from tests.support.workspace import MemoryWorkspace

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")
from aiosmtpd.smtp import AuthResult, LoginPassword  # noqa: E402

ADMIN = Actor("ada", "admin")
NOW = dt.datetime.now(dt.UTC)
HOST = {"key": "tube", "operator": "Tube Ltd", "domains": ["tube.example"], "abuse_email": "abuse@tube.example",
        "channel": "email", "language": "en", "verified": True}


def certificate(folder: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA cert, server cert, server key) PEM files: a CA of its own signing a certificate for 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def subject(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    start, end = NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1)
    ca = (x509.CertificateBuilder().subject_name(subject(f"{name} CA")).issuer_name(subject(f"{name} CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(start)
          .not_valid_after(end).add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    server = (x509.CertificateBuilder().subject_name(subject("127.0.0.1")).issuer_name(ca.subject)
              .public_key(key.public_key()).serial_number(x509.random_serial_number()).not_valid_before(start)
              .not_valid_after(end)
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .sign(ca_key, hashes.SHA256()))
    paths = folder / f"{name}-ca.pem", folder / f"{name}-cert.pem", folder / f"{name}-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Mailbox:
    """The aiosmtpd handler: keeps what it was given; refuses recipients of ``refuse``."""

    def __init__(self, refuse: str | None = None):
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse = refuse

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address == self.refuse:
            return "550 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted"


def authenticator(_server, _session, _envelope, mechanism, data):
    good = isinstance(data, LoginPassword) and (data.login, data.password) == (b"mailer", b"s3cret")
    return AuthResult(success=good)


@pytest.fixture
def work(tmp_path) -> MemoryWorkspace:
    settings = load_settings("local")
    settings.takedowns.organisation.email = "takedowns@helping.example"
    work = MemoryWorkspace(settings, tmp_path / "cases.sqlite3", {})
    with work.sessions.begin() as session:
        session.add(Case(id="c1", display_name="Secret Name", created_by="ada"))
        session.flush()
        session.add(Consent(case_id="c1", given_by="client", relationship_to_client="self",
                            given_at=NOW - dt.timedelta(days=1), scope=["takedown"], recorded_by="ada"))
    hosts.import_hosts(work, ADMIN, yaml.safe_dump({"hosts": [HOST]}))
    return work


def serve(handler: Mailbox, **options):
    controller = aiosmtpd_controller.Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    return controller


def smtp_settings(work, port: int, **changes) -> None:
    config = work.settings.takedowns.smtp
    for name, value in {"host": "127.0.0.1", "port": port, **changes}.items():
        setattr(config, name, value)


def stored(work) -> list[Notice]:
    with work.sessions() as session:
        return list(session.scalars(select(Notice)))


def test_a_notice_goes_over_starttls_with_a_login_and_is_stored_as_sent(work, tmp_path):
    ca, cert, key = certificate(tmp_path, "relay")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = serve(mailbox, tls_context=server_tls, require_starttls=True, auth_required=True,
                       authenticator=authenticator)
    credentials = tmp_path / "smtp.yaml"
    credentials.write_text(yaml.safe_dump({"username": "mailer", "password": "s3cret"}))
    try:
        smtp_settings(work, controller.port, security="starttls", ca_file=ca, credentials_file=credentials)
        takedown = takedowns.create_takedown(work, ADMIN, "c1", "https://tube.example/watch/1", media_sha256="ab" * 32)
        view = notices.send_notice(work, ADMIN, [takedown.id])
    finally:
        controller.stop()
    [(sender, recipients, raw)] = mailbox.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert sender == "takedowns@helping.example" and recipients == ["abuse@tube.example"]
    assert message["Message-ID"] == view.message_id and "https://tube.example/watch/1" in message.get_content()
    assert "Secret Name" not in raw.decode() and not message.is_multipart()
    [notice] = stored(work)
    assert (notice.method, notice.recipient, notice.body) == ("smtp", "abuse@tube.example", view.body)
    assert takedowns.get_takedown(work, ADMIN, takedown.id).takedown.state == "sent"


def test_implicit_tls_and_an_untrusted_certificate(work, tmp_path):
    _ca, cert, key = certificate(tmp_path, "relay")
    other_ca, _, _ = certificate(tmp_path, "other")
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    mailbox = Mailbox()
    controller = serve(mailbox, ssl_context=server_tls)
    takedown = takedowns.create_takedown(work, ADMIN, "c1", "https://tube.example/watch/2")
    try:
        smtp_settings(work, controller.port, security="tls", ca_file=other_ca)
        with pytest.raises(Unavailable, match="certificate verify failed"):
            notices.send_notice(work, ADMIN, [takedown.id])
        assert stored(work) == [] and mailbox.messages == []
        assert takedowns.get_takedown(work, ADMIN, takedown.id).takedown.state == "draft"
        smtp_settings(work, controller.port, security="tls", ca_file=_ca)
        notices.send_notice(work, ADMIN, [takedown.id])
    finally:
        controller.stop()
    assert len(mailbox.messages) == 1 and len(stored(work)) == 1


def test_plain_smtp_to_a_loopback_relay_when_allowed_and_a_refused_recipient_stores_nothing(work):
    mailbox = Mailbox(refuse="abuse@tube.example")
    controller = serve(mailbox)
    takedown = takedowns.create_takedown(work, ADMIN, "c1", "https://tube.example/watch/3")
    try:
        smtp_settings(work, controller.port, security="none", allow_plain_loopback=True)
        with pytest.raises(Unavailable, match="did not take the notice"):
            notices.send_notice(work, ADMIN, [takedown.id])
        assert stored(work) == [] and takedowns.get_takedown(work, ADMIN, takedown.id).takedown.state == "draft"
        mailbox.refuse = None
        view = notices.send_notice(work, ADMIN, [takedown.id])
    finally:
        controller.stop()
    assert view.method == "smtp" and len(mailbox.messages) == 1
