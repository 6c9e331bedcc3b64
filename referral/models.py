"""Imports every model so the metadata (and Alembic autogenerate) knows all tables."""
from referral.accounts.models import ApiToken, User, UserSession  # noqa: F401
from referral.reference.models import Area, Organisation, OrganisationService, Unit  # noqa: F401
from referral.standards.models import (  # noqa: F401
    CaseTiming, Certification, CertificationReminder, Course, Standard, StepBreach, StepStatus,
)
from referral.audit.models import AuditCheckpoint, AuditEvent, AuditHead  # noqa: F401
from referral.referrals.models import CaseNote, Referral, SubmissionKey  # noqa: F401
from referral.referrals.workflow_models import Alert, CaseAction, Offer, ProtectionOrder  # noqa: F401
from referral.services_dir.models import Consent, ServiceReferral  # noqa: F401
from referral.oversight.models import BreakGlassGrant  # noqa: F401
from referral.notify.models import OutboxMessage, SmsReceipt  # noqa: F401
from referral.standards import step_statuses  # noqa: F401,E402  (keeps step statuses current on commit)
