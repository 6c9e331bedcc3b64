"""Who may do what: the role → permission map and object-level checks, deny by default.

Views only *declare* what they need (``@requires`` or ``@public``). A view that
declares nothing is refused for everyone by ``guard_request``, so a forgotten
declaration fails closed, never open. Object-level rules (owner, assignee,
unit, consent scope) live here too, beside the map.
"""
from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, redirect, request, url_for
from flask_login import current_user

from referral.accounts.models import Role, User
from referral.errors import N_, Forbidden, NotFound, Unauthenticated

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])


class Permission(enum.StrEnum):
    """Named ``scope:resource:action``."""

    ACCOUNT_SELF_READ = "account:self:read"
    ACCOUNT_TOKEN_REVOKE = "account:token:revoke"
    ACCOUNT_PASSWORD_CHANGE = "account:password:change"
    ADMIN_USERS_MANAGE = "admin:users:manage"
    ADMIN_REFERENCE_MANAGE = "admin:reference:manage"
    TRAINING_CERTIFICATION_RECORD = "training:certification:record"
    REFERRAL_SUBMIT = "referral:case:submit"
    REFERRAL_READ = "referral:case:read"          # object-level checks decide how much
    REFERRAL_ADD_INFORMATION = "referral:case:add_information"
    AUDIT_VERIFY = "audit:chain:verify"
    REFERRAL_ACCEPT = "referral:offer:respond"     # accept, decline, recuse
    REFERRAL_WORK = "referral:case:work"           # actions, close
    REFERRAL_REASSIGN = "referral:case:reassign"
    REFERRAL_WITHDRAW = "referral:case:withdraw"
    COMPLIANCE_SUMMARY = "compliance:summary:read"
    SERVICES_DIRECTORY = "services:directory:read"
    CONSENT_RECORD = "consent:case:record"
    SERVICE_REFERRAL_CREATE = "services:referral:create"
    SERVICE_REFERRAL_READ = "services:referral:read"      # object rule: the provider's own, with consent
    SERVICE_REFERRAL_RESPOND = "services:referral:respond"
    AUDIT_READ = "audit:log:read"                 # search, export, disclosures, anomalies
    BREAK_GLASS = "referral:case:break_glass"
    STATS_READ = "stats:deidentified:read"


# Everyone may *ask* for a case: the object-level rule answers 404 (and audits
# a denial naming the case) to those who may not see it, as SPEC §1 wants.
_EVERYONE = {Permission.ACCOUNT_SELF_READ, Permission.ACCOUNT_TOKEN_REVOKE, Permission.ACCOUNT_PASSWORD_CHANGE,
             Permission.REFERRAL_READ, Permission.SERVICES_DIRECTORY, Permission.SERVICE_REFERRAL_READ}
_CASE_HANDLERS = {Permission.CONSENT_RECORD, Permission.SERVICE_REFERRAL_CREATE}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.focal_point: frozenset(_EVERYONE | _CASE_HANDLERS | {
        Permission.REFERRAL_SUBMIT, Permission.REFERRAL_ADD_INFORMATION, Permission.REFERRAL_WITHDRAW}),
    Role.officer: frozenset(_EVERYONE | _CASE_HANDLERS | {Permission.REFERRAL_ACCEPT, Permission.REFERRAL_WORK}),
    Role.supervisor: frozenset(_EVERYONE | _CASE_HANDLERS | {
        Permission.REFERRAL_WORK, Permission.REFERRAL_REASSIGN, Permission.COMPLIANCE_SUMMARY}),
    Role.service_provider: frozenset(_EVERYONE | {Permission.SERVICE_REFERRAL_RESPOND}),
    Role.oversight: frozenset(_EVERYONE | {Permission.AUDIT_VERIFY, Permission.COMPLIANCE_SUMMARY,
                                           Permission.AUDIT_READ, Permission.BREAK_GLASS, Permission.STATS_READ}),
    Role.admin: frozenset(
        _EVERYONE
        | {
            Permission.ADMIN_USERS_MANAGE,
            Permission.ADMIN_REFERENCE_MANAGE,
            Permission.TRAINING_CERTIFICATION_RECORD,
        }
    ),
}


def has_permission(user: User | None, permission: Permission) -> bool:
    if user is None or not user.active:
        return False
    return permission in ROLE_PERMISSIONS.get(user.role, frozenset())


def require(user: User | None, permission: Permission) -> None:
    """Raise unless ``user`` holds ``permission``; services call this first."""
    if user is None:
        raise Unauthenticated()
    if not has_permission(user, permission):
        raise Forbidden(N_("Your role may not do this."))


# -- object-level checks ----------------------------------------------------

def check_may_manage_user(actor: User, target: User | None) -> User:
    """Admins manage every account; nobody else sees accounts. Unknown → 404."""
    require(actor, Permission.ADMIN_USERS_MANAGE)
    if target is None:
        raise NotFound(N_("No such user."))
    return target


class CaseView(enum.Enum):
    """How much of a case a user may see."""

    STATUS = "status"     # reference and stage only (the focal point who submitted it)
    OFFER = "offer"       # de-identified summary, to decide on an offer
    CONTENT = "content"   # the decrypted case


def case_view(actor: User, referral: Any) -> CaseView | None:
    """Object-level rule for cases; None means the case does not exist for this user (404).

    Focal points see the stage of what they submitted; supervisors the content of
    their unit's cases. Officers see cases offered or assigned to them (the
    workflow adds that); service providers only what a service referral shares;
    oversight only through break-glass; admins never.
    """
    if not has_permission(actor, Permission.REFERRAL_READ):
        return None
    if referral.status.value == "services_only" and actor.role in (Role.officer, Role.supervisor):
        return None  # without police consent no police user may ever see the case
    if actor.role is Role.focal_point and referral.submitter_id == actor.id:
        return CaseView.STATUS
    if actor.role is Role.supervisor and referral.unit_id is not None and referral.unit_id == actor.unit_id:
        return CaseView.CONTENT
    if actor.role is Role.oversight:
        from referral.extensions import db
        from referral.oversight.services import active_break_glass

        return CaseView.CONTENT if active_break_glass(db.session, actor, referral.id) else None
    if actor.role is Role.officer:
        if referral.assigned_officer_id == actor.id and referral.status.value in ("accepted", "in_progress", "closed"):
            return CaseView.CONTENT
        if _has_offer(actor, referral):
            return CaseView.OFFER
    return None


def may_work(actor: User, referral: Any, level: CaseView | None) -> bool:
    """Record actions, close, send service referrals as the police: the assigned officer, or a supervisor of
    the case's unit, with the case's content in view."""
    if level is not CaseView.CONTENT:
        return False
    return referral.assigned_officer_id == actor.id or (
        actor.role is Role.supervisor and actor.unit_id == referral.unit_id)


def may_record_consent(actor: User, referral: Any, level: CaseView | None) -> bool:
    """The submitting focal point, or police with the case's content in view, record what the survivor said."""
    if actor.role is Role.focal_point:
        return referral.submitter_id == actor.id
    return level is CaseView.CONTENT and actor.role in (Role.officer, Role.supervisor)


def may_send_service_referral(actor: User, referral: Any, level: CaseView | None) -> bool:
    """Police with the case's content in view; the submitting focal point only for a case without police
    consent (services only), which no officer ever sees."""
    return (level is CaseView.CONTENT and actor.role in (Role.officer, Role.supervisor)) or (
        actor.role is Role.focal_point and referral.submitter_id == actor.id
        and referral.status.value == "services_only")


def supervises(actor: User, referral: Any, level: CaseView | None) -> bool:
    """Reassign a case, approve or send back its closure: the supervisor of the case's unit, with its
    content in view."""
    return (level is CaseView.CONTENT and actor.role is Role.supervisor and actor.unit_id is not None
            and actor.unit_id == referral.unit_id)


def closes_without_approval(actor: User, referral: Any) -> bool:
    """In a unit that requires it, an officer's closure waits for the supervisor; the supervisor's own
    does not, nor anyone's in a unit that does not require it."""
    unit = referral.unit
    return not (unit is not None and unit.closure_approval and actor.role is not Role.supervisor)


def may_override_consent(actor: User) -> bool:
    """A best-interest override for a child survivor: the unit's supervisor (``may_record_consent``
    already asked for the case's content in view)."""
    return actor.role is Role.supervisor


def is_submitter(actor: User, referral: Any) -> bool:
    """Withdraw a case or relay the survivor's request to erase it: the focal point who submitted it, to
    whom the survivor speaks."""
    return actor.role is Role.focal_point and referral.submitter_id == actor.id


def provider_may_see(actor: User, service_referral: Any) -> bool:
    """A service provider's user sees a service referral sent to their organisation (not the system's
    suggestion); the caller checks, at every access, that the survivor's consent to that service lasts."""
    return (actor.role is Role.service_provider and actor.organisation_id is not None
            and actor.organisation_id == service_referral.provider_id
            and service_referral.status.value != "suggested")


def provider_sees_where(actor: User) -> list[Any] | None:
    """``provider_may_see`` as a list's SQL filter: None when ``actor`` may see no service referral."""
    if actor.role is not Role.service_provider or actor.organisation_id is None:
        return None
    from referral.services_dir.models import ServiceReferral, ServiceReferralStatus

    return [ServiceReferral.provider_id == actor.organisation_id,
            ServiceReferral.status != ServiceReferralStatus.suggested]


def _has_offer(actor: User, referral: Any) -> bool:
    """An officer sees the summary of a case offered to them while the offer is open, and after another
    officer took it (to learn why their accept failed); not after a reassignment or withdrawal."""
    from sqlalchemy import select

    from referral.extensions import db
    from referral.referrals.workflow_models import Offer, OfferStatus

    return db.session.scalar(select(Offer.id).where(
        Offer.referral_id == referral.id, Offer.officer_id == actor.id,
        (Offer.status == OfferStatus.open) | ((Offer.status == OfferStatus.cancelled) & (Offer.reason == "taken"))
    ).limit(1)) is not None


# -- view declarations ------------------------------------------------------

ACCESS_ATTR = "_amanat_access"
PUBLIC = "public"


def requires(permission: Permission) -> Callable[[F], F]:
    def decorate(view: F) -> F:
        setattr(view, ACCESS_ATTR, permission)
        return view

    return decorate


def public(view: F) -> F:
    setattr(view, ACCESS_ATTR, PUBLIC)
    return view


def declared_access(view: Callable[..., Any] | None) -> Permission | str | None:
    return getattr(view, ACCESS_ATTR, None)


def guard_request():  # type: ignore[no-untyped-def]
    """``before_request``: enforce each view's declaration; none declared → refused."""
    if request.endpoint is None:
        return None  # 404/405 from routing itself
    view = current_app.view_functions.get(request.endpoint)
    access = declared_access(view)
    if request.endpoint == "static" or request.endpoint.endswith(".static"):
        access = PUBLIC  # stylesheets and scripts: public files, never case data
    if access == PUBLIC:
        return None
    if access is None:
        log.error("endpoint %s declares no access rule; refused", request.endpoint)
        raise NotFound()
    user = current_user._get_current_object() if current_user.is_authenticated else None
    if user is None:
        if request.path.startswith("/api/"):
            raise Unauthenticated()
        if request.method in ("POST", "PUT", "PATCH", "DELETE"):
            # Signed out while a page was open (the idle limit): what was sent is dropped, and must not
            # look as if it went through.
            from flask import flash
            from flask_babel import gettext

            flash(gettext("You were signed out, so what you sent was not saved. Sign in and send it again."))
        return redirect(url_for("web.login", next=request.full_path if request.method == "GET" else None))
    if not has_permission(user, access):
        from referral.audit.service import DENIED, record
        from referral.extensions import db

        from referral.referrals.models import parse_case_id

        case_id = parse_case_id(str((request.view_args or {}).get("referral_id", "")))
        record(db.session, user, "access.denied", object_type="referral" if case_id else "endpoint",
               object_id=case_id or request.endpoint, outcome=DENIED,
               reason=f"role lacks {access.value} ({request.endpoint})")
    require(user, access)
    return None
