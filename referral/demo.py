"""Demo accounts for ``demo seed`` (refused in production). All data is invented."""
from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from referral.accounts.models import User
from referral.accounts.services import NewUser, create_user
from referral.extensions import db
from referral.standards.services import record_certification

DEMO_PASSWORD = "amanat-demo-2026"
DOMAIN = "demo.amanat.example"

# (local part, name, role, unit, org, gender, languages, phone, courses with months since completion)
DEMO_USERS = [
    ("focal.alamudun", "Gulnara (focal point)", "focal_point", None, "WG-ALM", "female", ["ky", "ru"],
     "+996555000101", {}),
    ("aigul.officer", "Aigul (officer)", "officer", "U-ALM", None, "female", ["ky", "ru"], "+996555000201",
     {"GBV-CORE": 3, "GBV-CHILD": 3}),
    ("bakyt.officer", "Bakyt (officer)", "officer", "U-ALM", None, "male", ["ky", "ru"], "+996555000202",
     {"GBV-CORE": 10}),
    ("nurlan.officer", "Nurlan (officer, certificate expired)", "officer", "U-ALM", None, "male", ["ru"],
     "+996555000203", {"GBV-CORE": 30}),
    ("supervisor.alamudun", "Asel (supervisor)", "supervisor", "U-ALM", None, "female", ["ky", "ru"],
     "+996555000301", {"GBV-CORE": 6, "GBV-CHILD": 6}),
    ("focal.sokuluk", "Cholpon (focal point)", "focal_point", None, "WG-SOK", "female", ["ky"], "+996555000102", {}),
    ("meerim.officer", "Meerim (officer)", "officer", "U-SOK", None, "female", ["ky", "ru"], "+996555000204",
     {"GBV-CORE": 2}),
    ("shelter.chui", "Dinara (crisis centre)", "service_provider", None, "SH-1", "female", ["ky", "ru"], None, {}),
    ("clinic.alamudun", "Elmira (clinic)", "service_provider", None, "HC-ALM", "female", ["ru"], None, {}),
    ("focal.rudaki", "Mavjuda (focal point)", "focal_point", None, "WG-RUD", "female", ["tg"], "+992900000101", {}),
    ("zarina.officer", "Zarina (officer)", "officer", "U-RUD", None, "female", ["tg", "ru"], "+992900000201",
     {"GBV-CORE": 5}),
    ("supervisor.rudaki", "Firuz (supervisor)", "supervisor", "U-RUD", None, "male", ["tg", "ru"], "+992900000301",
     {"GBV-CORE": 5}),
    ("auditor", "Saltanat (oversight)", "oversight", None, None, "female", ["ru", "en"], None, {}),
    ("admin", "System administrator", "admin", None, None, "unspecified", ["en", "ru"], None, {}),
]


def demo_email(local: str) -> str:
    return f"{local}@{DOMAIN}"


def seed_demo_users(today: dt.date) -> list[tuple[User, bool]]:
    """Create the demo accounts that do not exist yet; return (user, created) pairs."""
    from referral.standards.services import add_months

    result = []
    for local, name, role, unit, org, gender, languages, phone, courses in DEMO_USERS:
        email = demo_email(local)
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None:
            result.append((user, False))
            continue
        user, _secret = create_user(None, NewUser(email=email, name=name, role=role, password=DEMO_PASSWORD,
                                                  unit=unit, org=org, gender=gender, languages=languages,
                                                  phone=phone))
        for course, months_ago in courses.items():
            record_certification(None, email, course, add_months(today, -months_ago), today=today)
        result.append((user, True))
    return result
