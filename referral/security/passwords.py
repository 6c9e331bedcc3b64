"""Password rules and argon2id hashing (SPEC §7)."""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 128

# argon2-cffi's RFC 9106 "low memory" profile is the production default. Tests
# use a cheap profile so a suite that creates hundreds of users stays fast;
# verification reads the parameters from each hash, so both always verify.
PROFILES = {
    "default": dict(time_cost=3, memory_cost=65536, parallelism=4),
    "fast-tests": dict(time_cost=1, memory_cost=1024, parallelism=1),
}


@lru_cache(maxsize=None)
def hasher(profile: str = "default") -> PasswordHasher:
    return PasswordHasher(type=Type.ID, **PROFILES[profile])


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = resources.files("referral.security").joinpath("common_passwords.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip() and not line.startswith("#"))


# What can be wrong with a proposed password: a code (pages translate it) and the words for the API.
PROBLEMS = {
    "too_short": f"Use at least {MIN_LENGTH} characters.",
    "too_long": f"Use at most {MAX_LENGTH} characters.",
    "too_common": "This password is too common; choose another.",
    "is_email": "Do not use your e-mail address as the password.",
}


def password_problem_codes(password: str, *, email: str | None = None) -> list[str]:
    """Codes (keys of ``PROBLEMS``) of what is wrong with a proposed password; empty when it will do."""
    problems = []
    if len(password) < MIN_LENGTH:
        problems.append("too_short")
    if len(password) > MAX_LENGTH:
        problems.append("too_long")
    lowered = password.strip().lower()
    if lowered in common_passwords():
        problems.append("too_common")
    elif email and lowered in {email.lower(), email.split("@")[0].lower()}:
        problems.append("is_email")
    return problems


def password_problems(password: str, *, email: str | None = None) -> list[str]:
    """What is wrong with a proposed password, in words for the person choosing it."""
    return [PROBLEMS[code] for code in password_problem_codes(password, email=email)]


def hash_password(password: str, profile: str = "default") -> str:
    return hasher(profile).hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return hasher().verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str, profile: str = "default") -> bool:
    try:
        return hasher(profile).check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=4)
def _dummy_hash(profile: str) -> str:
    return hash_password("dummy password for unknown accounts", profile)


def burn_verification(profile: str = "default") -> None:
    """Spend the time of one verification so an unknown e-mail answers as slowly as a wrong password."""
    verify_password(_dummy_hash(profile), "not the password")
