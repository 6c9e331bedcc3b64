import pytest

from config.settings import ConfigError, load_settings, normalise_database_url
from referral import create_app

PROD_VARS = ("REFERRAL_SECRET_KEY", "REFERRAL_DATABASE_URL", "REFERRAL_KEYRING", "REFERRAL_SMS_SECRET")


@pytest.fixture()
def clean_env(monkeypatch):
    for var in PROD_VARS + ("REFERRAL_ENV", "REFERRAL_RATELIMIT_ENABLED", "REFERRAL_TOKEN_TTL_HOURS"):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_development_defaults_to_sqlite_under_instance(clean_env):
    settings = load_settings()
    assert settings["ENV_NAME"] == "development"
    assert settings["SQLALCHEMY_DATABASE_URI"].startswith("sqlite:///")
    assert settings["SQLALCHEMY_DATABASE_URI"].endswith("instance/amanat.sqlite3")
    assert settings["KEYRING_PATH"].endswith("instance/keyring.json")
    assert settings["RATELIMIT_ENABLED"] is True


@pytest.mark.parametrize("missing", PROD_VARS)
def test_production_refuses_to_start_without_each_secret(clean_env, tmp_path, missing):
    clean_env.setenv("REFERRAL_ENV", "production")
    values = {"REFERRAL_SECRET_KEY": "x" * 40, "REFERRAL_DATABASE_URL": "postgresql://db/amanat",
              "REFERRAL_KEYRING": str(tmp_path / "k.json"), "REFERRAL_SMS_SECRET": "g" * 40}
    for var, value in values.items():
        if var != missing:
            clean_env.setenv(var, value)
    with pytest.raises(ConfigError) as err:
        create_app()
    assert missing in str(err.value)
    assert "refuses to start" in str(err.value)


@pytest.mark.parametrize("short", ["REFERRAL_SECRET_KEY", "REFERRAL_SMS_SECRET"])
def test_production_refuses_a_short_secret(clean_env, tmp_path, short):
    clean_env.setenv("REFERRAL_ENV", "production")
    clean_env.setenv("REFERRAL_SECRET_KEY", "s" * 40)
    clean_env.setenv("REFERRAL_SMS_SECRET", "g" * 40)
    clean_env.setenv("REFERRAL_DATABASE_URL", "postgresql://db/amanat")
    clean_env.setenv("REFERRAL_KEYRING", str(tmp_path / "k.json"))
    clean_env.setenv(short, "short")
    with pytest.raises(ConfigError, match=f"{short} must be at least 32"):
        load_settings()


def test_production_with_its_secrets_uses_them_and_secure_cookies(clean_env, tmp_path):
    clean_env.setenv("REFERRAL_ENV", "production")
    clean_env.setenv("REFERRAL_SECRET_KEY", "s" * 40)
    clean_env.setenv("REFERRAL_SMS_SECRET", "g" * 40)
    clean_env.setenv("REFERRAL_DATABASE_URL", "postgres://u@db/amanat")
    clean_env.setenv("REFERRAL_KEYRING", str(tmp_path / "k.json"))
    settings = load_settings()
    assert settings["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@db/amanat"
    assert settings["SESSION_COOKIE_SECURE"] is True
    assert settings["SESSION_COOKIE_NAME"].startswith("__Host-")


def test_unknown_environment_and_bad_values_are_named(clean_env):
    clean_env.setenv("REFERRAL_ENV", "staging")
    with pytest.raises(ConfigError, match="REFERRAL_ENV"):
        load_settings()
    clean_env.setenv("REFERRAL_ENV", "testing")
    clean_env.setenv("REFERRAL_RATELIMIT_ENABLED", "maybe")
    with pytest.raises(ConfigError, match="REFERRAL_RATELIMIT_ENABLED"):
        load_settings()
    clean_env.setenv("REFERRAL_RATELIMIT_ENABLED", "false")
    clean_env.setenv("REFERRAL_TOKEN_TTL_HOURS", "soon")
    with pytest.raises(ConfigError, match="REFERRAL_TOKEN_TTL_HOURS"):
        load_settings()
    clean_env.setenv("REFERRAL_TOKEN_TTL_HOURS", "2")
    settings = load_settings()
    assert settings["RATELIMIT_ENABLED"] is False and settings["TOKEN_TTL_HOURS"] == 2


def test_database_url_is_given_the_psycopg_driver():
    assert normalise_database_url("postgresql://a@b/c") == "postgresql+psycopg://a@b/c"
    assert normalise_database_url("sqlite:///x.db") == "sqlite:///x.db"


def test_the_local_time_zone_is_checked(monkeypatch):
    from config.settings import ConfigError, load_settings

    monkeypatch.setenv("REFERRAL_ENV", "testing")
    assert load_settings()["LOCAL_TIMEZONE"] == "Asia/Bishkek"
    monkeypatch.setenv("REFERRAL_LOCAL_TIMEZONE", "Asia/Tashkent")
    assert load_settings()["LOCAL_TIMEZONE"] == "Asia/Tashkent"
    for bad in ("Asia/Nowhere", "UTC+6", "../../etc/passwd"):
        monkeypatch.setenv("REFERRAL_LOCAL_TIMEZONE", bad)
        with pytest.raises(ConfigError, match="REFERRAL_LOCAL_TIMEZONE"):
            load_settings()
