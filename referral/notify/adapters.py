"""Delivery adapters: console (default), a generic HTTP SMS gateway, SMTP.

Each takes the message's idempotency key; the HTTP gateway receives it as the
``Idempotency-Key`` header, so a message re-sent after a worker died mid-delivery
is delivered once by a gateway that honours it. E-mail carries it in the
Message-ID, which lets a receiving system drop the duplicate.
"""
from __future__ import annotations

import http.client
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from email.message import EmailMessage
from typing import Protocol

from flask import current_app

from config.settings import SMTP_SECURITIES


class DeliveryFailed(Exception):
    """The gateway refused or could not be reached; the message is retried later."""


class Adapter(Protocol):
    def send(self, key: str, address: str, text: str) -> None: ...


class ConsoleAdapter:
    def __init__(self, channel: str) -> None:
        self.channel = channel

    def send(self, key: str, address: str, text: str) -> None:
        # The address is masked: a survivor's phone must not land in a log.
        print(f"[{self.channel}] to …{address[-3:]} (key {key}): {text}", flush=True)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is a failure, never followed: urllib would repeat the POST as a bodiless GET (and a 200 for
    that would mark an undelivered message sent) and would carry the bearer key to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class HttpSmsAdapter:
    """POST ``{"to", "text"}`` as JSON with a bearer key and the idempotency key; only a 2xx answer is delivery."""

    def __init__(self, url: str, api_key: str | None, timeout: float = 10.0) -> None:
        self.url, self.api_key, self.timeout = url, api_key, timeout

    def send(self, key: str, address: str, text: str) -> None:
        body = json.dumps({"to": address, "text": text}).encode()
        headers = {"Content-Type": "application/json", "Idempotency-Key": key}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with _OPENER.open(request, timeout=self.timeout) as response:  # noqa: S310 (operator URL)
                response.read()
                if not 200 <= response.status < 300:
                    raise DeliveryFailed(f"gateway answered {response.status}")
        except urllib.error.HTTPError as exc:
            raise DeliveryFailed(f"gateway answered {exc.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException, ValueError) as exc:
            raise DeliveryFailed(f"gateway unreachable ({type(exc).__name__})") from None


class SmtpAdapter:
    """Send through a mail server: STARTTLS (the default; a server that does not offer it gets nothing),
    TLS from the first byte, or plain. With TLS the server's certificate and name are verified, against the
    system's CAs or ``ca_file`` alone; a login happens only over TLS."""

    def __init__(self, host: str, port: int, sender: str, timeout: float = 10.0, *, security: str = "starttls",
                 username: str | None = None, password: str | None = None, ca_file: str | None = None) -> None:
        if security not in SMTP_SECURITIES:
            raise ValueError(f"unknown SMTP security {security!r}")
        if username and security == "none":
            raise ValueError("an SMTP login needs TLS")
        self.host, self.port, self.sender, self.timeout = host, port, sender, timeout
        self.security, self.username, self.password, self.ca_file = security, username, password, ca_file

    def _context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def send(self, key: str, address: str, text: str) -> None:
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = self.sender, address, "Amanat"
        message["Message-ID"] = f"<{key}@amanat>"
        message.set_content(text)
        try:
            if self.security == "tls":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout,
                                                      context=self._context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with smtp:
                if self.security == "starttls":
                    smtp.ehlo()
                    if not smtp.has_extn("starttls"):
                        raise DeliveryFailed("mail server does not offer STARTTLS; nothing sent in clear")
                    smtp.starttls(context=self._context())
                    smtp.ehlo()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except (smtplib.SMTPException, OSError) as exc:
            # The type only: a server's answer could echo the address or, on a login, the user name.
            raise DeliveryFailed(f"mail server refused or unreachable ({type(exc).__name__})") from None


def adapters_from_settings() -> dict[str, Adapter]:
    config = current_app.config
    sms: Adapter = ConsoleAdapter("sms")
    if config.get("SMS_GATEWAY_URL"):
        sms = HttpSmsAdapter(config["SMS_GATEWAY_URL"], config.get("SMS_GATEWAY_KEY"))
    email: Adapter = ConsoleAdapter("email")
    if config.get("SMTP_HOST"):
        # The settings named the security (it is required with a host) and its port (config.settings).
        email = SmtpAdapter(config["SMTP_HOST"], int(config["SMTP_PORT"]),
                            config.get("SMTP_FROM") or "amanat@localhost", security=config["SMTP_SECURITY"],
                            username=config.get("SMTP_USERNAME"), password=config.get("SMTP_PASSWORD"),
                            ca_file=config.get("SMTP_CA_FILE"))
    return {"sms": sms, "email": email}
