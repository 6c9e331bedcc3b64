"""Settings per environment, read from ``REFERRAL_*`` environment variables.

Secrets come only from the environment. ``ProductionConfig.validate`` refuses to
start without them, so a misconfigured server fails at boot, not at first use.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
INSTANCE_DIR = PROJECT_ROOT / "instance"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the message names the variable."""


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int, *, minimum: int = 0) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return value


SMTP_SECURITIES = {"starttls": 587, "tls": 465, "none": 25}  # each with its usual port


def smtp_security(env: Any, default: str) -> dict[str, Any]:
    """SMTP_SECURITY and SMTP_PORT from the environment, checked with the credentials beside them."""
    raw = env.get("REFERRAL_SMTP_SECURITY")
    if env.get("REFERRAL_SMTP_HOST") and not raw:
        # Said out loud: the default was plain port 25 before, and a relay that cannot do what is assumed
        # would leave every e-mail undelivered with no error at start-up.
        raise ConfigError("REFERRAL_SMTP_HOST needs REFERRAL_SMTP_SECURITY: starttls, tls or none.")
    security = (raw or default).strip().lower()
    if security not in SMTP_SECURITIES:
        raise ConfigError(f"REFERRAL_SMTP_SECURITY must be starttls, tls or none, not {raw!r}")
    if bool(env.get("REFERRAL_SMTP_USERNAME")) != bool(env.get("REFERRAL_SMTP_PASSWORD")):
        raise ConfigError("REFERRAL_SMTP_USERNAME and REFERRAL_SMTP_PASSWORD are set together or not at all.")
    if security == "none" and env.get("REFERRAL_SMTP_USERNAME"):
        # A password never crosses the network in clear, in any environment.
        raise ConfigError("REFERRAL_SMTP_USERNAME needs REFERRAL_SMTP_SECURITY starttls or tls, not none.")
    if env.get("REFERRAL_SMTP_CA_FILE"):
        import ssl

        try:
            ssl.create_default_context(cafile=env["REFERRAL_SMTP_CA_FILE"])
        except (OSError, ssl.SSLError):
            raise ConfigError(f"REFERRAL_SMTP_CA_FILE {env['REFERRAL_SMTP_CA_FILE']!r} is not a readable file "
                              "of PEM certificates.") from None
    port = env_int("REFERRAL_SMTP_PORT", SMTP_SECURITIES[security], minimum=1)
    if port > 65535:
        raise ConfigError("REFERRAL_SMTP_PORT must be at most 65535")
    return {"SMTP_SECURITY": security, "SMTP_PORT": port}


def checked_timezone(name: str) -> str:
    """An IANA zone name this machine knows (e.g. Asia/Bishkek), or a ConfigError naming the variable."""
    import zoneinfo

    try:
        zoneinfo.ZoneInfo(name.strip())
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"REFERRAL_LOCAL_TIMEZONE must be a time zone name such as Asia/Bishkek, not {name!r}") from None
    return name.strip()


def normalise_database_url(url: str) -> str:
    """Use psycopg 3 for PostgreSQL whatever scheme the operator wrote."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


class BaseConfig:
    ENV_NAME = "base"
    DEBUG = False
    TESTING = False

    SECRET_KEY: str | None = None
    SQLALCHEMY_DATABASE_URI = "sqlite:///" + str(INSTANCE_DIR / "amanat.sqlite3")
    # Pooled PostgreSQL connections are pinged before use only after sitting idle this long (referral.extensions
    # .install_idle_ping): a ping on every checkout was a round trip more on every request.
    SQLALCHEMY_ENGINE_OPTIONS: dict[str, Any] = {"pool_pre_ping": False}
    DB_PING_AFTER_IDLE_SECONDS = 5
    KEYRING_PATH = str(INSTANCE_DIR / "keyring.json")
    AUDIT_SIGNING_KEY_PATH = str(INSTANCE_DIR / "audit-signing-key.pem")
    AUDIT_CHECKPOINT_LOG: str | None = None  # None: beside the signing key (<key path>.checkpoints.jsonl)
    REDIS_URL: str | None = None
    RATELIMIT_ENABLED = True
    SMS_SECRET: str | None = None
    SMS_WINDOW_SECONDS = 300
    # Outbound channels: console unless a gateway or mail server is set.
    SMS_GATEWAY_URL: str | None = None
    SMS_GATEWAY_KEY: str | None = None
    SMTP_HOST: str | None = None
    SMTP_PORT: int | None = None  # None: the usual port of SMTP_SECURITY (587, 465 or 25)
    SMTP_FROM = "amanat@localhost"
    # "starttls" (upgrade, or refuse to send), "tls" (TLS from the first byte) or "none" (plain, e.g. a relay
    # on the same host). The server's certificate is always verified: system CAs, or SMTP_CA_FILE alone.
    SMTP_SECURITY = "starttls"
    SMTP_USERNAME: str | None = None
    SMTP_PASSWORD: str | None = None
    SMTP_CA_FILE: str | None = None

    # The zone whose calendar day decides whether a certificate is current (and when a protection order or a
    # certificate reminder is due): the easternmost of the countries served, so a certificate is never
    # honoured after it lapsed anywhere the service runs (Bishkek is UTC+6, Dushanbe and Tashkent UTC+5).
    LOCAL_TIMEZONE = "Asia/Bishkek"

    # Authentication (SPEC §7).
    LOCKOUT_THRESHOLD = 5
    LOCKOUT_WINDOW_MINUTES = 15
    LOCKOUT_MINUTES = 15
    SESSION_IDLE_MINUTES = 15
    SESSION_ABSOLUTE_HOURS = 12
    TOKEN_TTL_HOURS = 12
    TOTP_ISSUER = "Amanat"
    CERTIFICATE_VALIDITY_MONTHS = 24
    # Acceptance deadlines until handling standards are loaded as data.
    ACCEPT_URGENT_MINUTES = 60
    ACCEPT_HOURS = 24
    DUPLICATE_WINDOW_DAYS = 90
    # Days before a protection order expires that `sla tick` tells the case's officer (SPEC §2), once per expiry.
    PROTECTION_ORDER_REMINDER_DAYS = 3
    # Days a case is kept after it was closed or withdrawn; then `retention apply` crypto-erases it.
    RETENTION_DAYS = 5 * 365
    BREAK_GLASS_DEFAULT_HOURS = 1
    BREAK_GLASS_MAX_HOURS = 72
    ANOMALY_CASES_PER_HOUR = 20
    ANOMALY_DENIALS_PER_HOUR = 10
    ANOMALY_LOOKBACK_DAYS = 7  # how far back the dashboard looks for such hours
    WORKING_HOURS = (8, 19)  # UTC hours [start, end) outside which an audit export is flagged
    PROXY_HOPS = 0  # reverse proxies in front whose X-Forwarded-For is trusted
    METRICS_TOKEN: str | None = None  # bearer secret of the Prometheus scrape; unset → no /metrics
    LOG_LEVEL = "INFO"  # of the app's loggers; WARNING drops the access lines

    # Flask's own cookie carries only a pointer to the server-side session
    # and the CSRF token; it never carries identity on its own.
    SESSION_COOKIE_NAME = "amanat_session"
    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False
    HSTS: str | None = None  # Strict-Transport-Security value; production only (plain-HTTP development stays usable)
    WTF_CSRF_TIME_LIMIT = None  # bound to the session; the session expires itself
    # Flask-WTF's HTTPS check wants a same-site Referer, which pages never send (Referrer-Policy no-referrer,
    # so a case URL never leaves the page): with it on, every form post over HTTPS was refused. The token
    # bound to the server-side session, SameSite=Lax __Host- cookies and HSTS stand in for it.
    WTF_CSRF_SSL_STRICT = False
    JSON_SORT_KEYS = False
    MAX_CONTENT_LENGTH = 1024 * 1024

    @classmethod
    def from_env(cls) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        env = os.environ
        if env.get("REFERRAL_SECRET_KEY"):
            settings["SECRET_KEY"] = env["REFERRAL_SECRET_KEY"]
        if env.get("REFERRAL_DATABASE_URL"):
            settings["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(env["REFERRAL_DATABASE_URL"])
        if env.get("REFERRAL_KEYRING"):
            settings["KEYRING_PATH"] = env["REFERRAL_KEYRING"]
        if env.get("REFERRAL_AUDIT_SIGNING_KEY"):
            settings["AUDIT_SIGNING_KEY_PATH"] = env["REFERRAL_AUDIT_SIGNING_KEY"]
        if env.get("REFERRAL_AUDIT_CHECKPOINT_LOG"):
            settings["AUDIT_CHECKPOINT_LOG"] = env["REFERRAL_AUDIT_CHECKPOINT_LOG"]
        if env.get("REFERRAL_REDIS_URL"):
            settings["REDIS_URL"] = env["REFERRAL_REDIS_URL"]
        if env.get("REFERRAL_SMS_SECRET"):
            settings["SMS_SECRET"] = env["REFERRAL_SMS_SECRET"]
        for name in ("SMS_GATEWAY_URL", "SMS_GATEWAY_KEY", "SMTP_HOST", "SMTP_FROM", "SMTP_USERNAME",
                     "SMTP_PASSWORD", "SMTP_CA_FILE"):
            if env.get(f"REFERRAL_{name}"):
                settings[name] = env[f"REFERRAL_{name}"]
        settings.update(smtp_security(env, cls.SMTP_SECURITY))
        if env.get("REFERRAL_LOCAL_TIMEZONE"):
            settings["LOCAL_TIMEZONE"] = checked_timezone(env["REFERRAL_LOCAL_TIMEZONE"])
        if env.get("REFERRAL_METRICS_TOKEN"):
            if len(env["REFERRAL_METRICS_TOKEN"]) < 32:
                raise ConfigError("REFERRAL_METRICS_TOKEN must be at least 32 characters.")
            settings["METRICS_TOKEN"] = env["REFERRAL_METRICS_TOKEN"]
        if env.get("REFERRAL_LOG_LEVEL"):
            level = env["REFERRAL_LOG_LEVEL"].strip().upper()
            if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
                raise ConfigError(f"REFERRAL_LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR, not {env['REFERRAL_LOG_LEVEL']!r}")
            settings["LOG_LEVEL"] = level
        settings["PROXY_HOPS"] = env_int("REFERRAL_PROXY_HOPS", cls.PROXY_HOPS)
        settings["DB_PING_AFTER_IDLE_SECONDS"] = env_int("REFERRAL_DB_PING_AFTER_IDLE_SECONDS",
                                                         cls.DB_PING_AFTER_IDLE_SECONDS)
        settings["RATELIMIT_ENABLED"] = env_bool("REFERRAL_RATELIMIT_ENABLED", cls.RATELIMIT_ENABLED)
        settings["RETENTION_DAYS"] = env_int("REFERRAL_RETENTION_DAYS", cls.RETENTION_DAYS, minimum=1)
        settings["TOKEN_TTL_HOURS"] = env_int("REFERRAL_TOKEN_TTL_HOURS", cls.TOKEN_TTL_HOURS, minimum=1)
        settings["CERTIFICATE_VALIDITY_MONTHS"] = env_int(
            "REFERRAL_CERTIFICATE_VALIDITY_MONTHS", cls.CERTIFICATE_VALIDITY_MONTHS, minimum=1
        )
        return settings

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        """Hook for environments that must refuse to start without secrets."""


class DevelopmentConfig(BaseConfig):
    ENV_NAME = "development"
    # A fixed development key keeps sessions across restarts of `make run`;
    # production refuses to start without its own.
    SECRET_KEY = "development-only-not-secret"


class TestingConfig(BaseConfig):
    ENV_NAME = "testing"
    TESTING = True
    SECRET_KEY = "testing-only-not-secret"
    RATELIMIT_ENABLED = False


class ProductionConfig(BaseConfig):
    ENV_NAME = "production"
    SESSION_COOKIE_NAME = "__Host-amanat_session"
    SESSION_COOKIE_SECURE = True
    HSTS = "max-age=31536000; includeSubDomains"  # a year, subdomains too (ASVS 5.0 V3.4.1)
    REQUIRED = {
        "SECRET_KEY": "REFERRAL_SECRET_KEY",
        "SQLALCHEMY_DATABASE_URI": "REFERRAL_DATABASE_URL",
        "KEYRING_PATH": "REFERRAL_KEYRING",
        # SPEC §10 lists it with the secrets: without it the SMS webhook could only refuse every gateway.
        "SMS_SECRET": "REFERRAL_SMS_SECRET",
    }

    @classmethod
    def validate(cls, settings: dict[str, Any]) -> None:
        env = os.environ
        missing = [var for var in cls.REQUIRED.values() if not env.get(var)]
        if missing:
            raise ConfigError(
                "REFERRAL_ENV=production refuses to start: set "
                + ", ".join(missing)
                + " (see the settings table in README.md)."
            )
        for var in ("REFERRAL_SECRET_KEY", "REFERRAL_SMS_SECRET"):
            if len(env[var]) < 32:
                raise ConfigError(f"{var} must be at least 32 characters in production.")


ENVIRONMENTS: dict[str, type[BaseConfig]] = {
    "development": DevelopmentConfig,
    "testing": TestingConfig,
    "production": ProductionConfig,
}


def load_settings(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Resolve the settings for ``REFERRAL_ENV`` with environment values and overrides."""
    overrides = dict(overrides or {})
    env_name = (overrides.pop("ENV_NAME", None) or os.environ.get("REFERRAL_ENV") or "development")
    env_name = env_name.strip().lower()
    try:
        cls = ENVIRONMENTS[env_name]
    except KeyError:
        raise ConfigError(
            f"REFERRAL_ENV must be one of {', '.join(ENVIRONMENTS)}, not {env_name!r}"
        ) from None
    settings = {key: getattr(cls, key) for key in dir(cls) if key.isupper()}
    settings.update(cls.from_env())
    cls.validate(settings)
    settings.update(overrides)
    settings["ENV_NAME"] = cls.ENV_NAME
    return settings
