"""What each API endpoint takes and answers, for the OpenAPI document.

The paths, methods, path parameters and access rules come from the app itself
(its URL map and each view's ``@requires``/``@public``), so they cannot drift;
this table adds what a URL map does not know: the body and query schemas the
view loads, the answer on success, and the refusals particular to the endpoint.
Refusals every endpoint shares (400, 401, 403, 404, 415, 422, 429) are added by
the builder from the endpoint's shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from referral.accounts.schemas import PasswordChange, TokenRequest, UserCreate, UserListArgs
from referral.api import PageArgs
from referral.oversight.views import AuditFilters, AuditSearchArgs, BreakGlassIn, ReviewIn, StatsArgs
from referral.referrals.schemas import ActionIn, CloseIn, DeclineIn, EmptyIn, NoteIn, ReassignIn, Submission
from referral.services_dir.views import ConsentIn, DirectoryArgs, RespondIn, ServiceReferralIn
from referral.standards.views import CertificationIn, CourseIn, SummaryArgs

from referral.openapi.shapes import page_of, ref

CSV = "text/csv"
SMS_HEADERS = (("X-Amanat-Timestamp", "Unix seconds; refused when over five minutes off"),
               ("X-Amanat-Signature", 'sha256=<hex HMAC-SHA256 of "<timestamp>.<raw body>" under the gateway secret>'))


@dataclass(frozen=True)
class Op:
    summary: str
    tag: str
    status: int = 200
    answer: dict[str, Any] | None = None      # JSON Schema of the success body; None: no body
    body: type[Schema] | None = None           # JSON request body, loaded with this schema
    body_optional: bool = False                # state changes that accept no body or ``{}``
    query: type[Schema] | None = None          # query string, loaded with this schema
    refusals: tuple[int, ...] = ()             # statuses beyond the shared ones
    also: dict[int, str] = field(default_factory=dict)  # other success statuses → description
    answer_type: str = "application/json"
    form: dict[str, Any] | None = None         # form-encoded request body (the SMS webhook)
    headers: tuple[tuple[str, str], ...] = ()  # required request headers: (name, description)
    optional_headers: tuple[tuple[str, str], ...] = ()  # request headers a client may send


def _state(summary: str, answer: str = "CaseState", **kw: Any) -> Op:
    """A workflow step on one case: refused with 409 when the case is not in a state that allows it."""
    return Op(summary, "referrals", answer=ref(answer), refusals=(409,), **kw)


OPERATIONS: dict[str, Op] = {
    "api.openapi_document": Op("This document", "meta", answer=ref("OpenApiDocument")),
    # accounts
    "api.create_token": Op("Sign in and get a personal bearer token", "accounts", status=201, answer=ref("Token"),
                           body=TokenRequest, refusals=(401,)),
    "api.revoke_current_token": Op("Revoke the token this request carries", "accounts", status=204),
    "api.me": Op("The caller's own account", "accounts", answer=ref("User")),
    "api.change_own_password": Op("Change one's own password, proving the current one; every other session and "
                                  "token of the account ends", "accounts", status=204, body=PasswordChange),
    "api.admin_create_user": Op("Create an account and a one-time link for its holder to set it up", "admin",
                                status=201, answer=ref("UserWithEnrolmentLink"), body=UserCreate, refusals=(409,)),
    "api.admin_list_users": Op("Accounts", "admin", answer=page_of(ref("User")), query=UserListArgs),
    "api.admin_get_user": Op("One account", "admin", answer=ref("User")),
    "api.admin_deactivate_user": Op("Deactivate an account", "admin", answer=ref("User"), refusals=(409,)),
    "api.admin_unlock_user": Op("Lift a lockout", "admin", answer=ref("User"), refusals=(409,)),
    "api.admin_reset_totp": Op("Remove an account's TOTP secret; a one-time link lets its holder set up a new one",
                               "admin", answer=ref("UserWithEnrolmentLink"), refusals=(409,)),
    "api.admin_reissue_enrolment": Op("A new set-up link for an account not yet set up (earlier ones stop working)",
                                      "admin", status=201, answer=ref("UserWithEnrolmentLink"), refusals=(409,)),
    # reference data and training
    "api.admin_list_areas": Op("The area tree, parents first", "admin", answer=page_of(ref("Area")), query=PageArgs),
    "api.admin_list_units": Op("Police units", "admin", answer=page_of(ref("Unit")), query=PageArgs),
    "api.admin_list_organisations": Op("Organisations", "admin", answer=page_of(ref("Organisation")),
                                       query=PageArgs),
    "api.admin_list_standards": Op("Handling standards, every version loaded (read-only)", "admin",
                                   answer=page_of(ref("Standard")), query=PageArgs),
    "api.list_courses": Op("Courses", "admin", answer=page_of(ref("Course")), query=PageArgs),
    "api.save_course": Op("Create (201) or update (200) a course", "admin", status=201, answer=ref("Course"),
                          body=CourseIn, also={200: "Updated"}, refusals=(409,)),
    "api.record_certification": Op("Record a completed course", "admin", status=201,
                                   answer=ref("CertificationRecorded"), body=CertificationIn, refusals=(404, 409)),
    # referrals
    "api.submit_referral": Op("Submit a referral (focal points)", "referrals", status=201,
                              answer=ref("CaseCreated"), body=Submission, refusals=(409,), optional_headers=(
                                  ("Idempotency-Key", "16 to 128 letters, digits, '-' or '_', new for each referral: "
                                   "the same submission sent again with it answers the case it filed (and "
                                   "Idempotent-Replayed: true); other answers with it are refused (409)"),)),
    "api.list_referrals": Op("Cases the caller may see, stage only, newest first", "referrals",
                             answer=page_of(ref("CaseStatus")), query=PageArgs),
    "api.read_referral": Op("One case, as much of it as the caller may see", "referrals", answer=ref("Case")),
    "api.add_information": Op("Add information to a submitted case (the submitter)", "referrals", status=201,
                              answer=ref("NoteCreated"), body=NoteIn, refusals=(409,)),
    "api.compliance": Op("How the case meets its handling standard", "referrals", answer=ref("CaseCompliance")),
    "api.accept": _state("Accept an offered case", body=EmptyIn, body_optional=True),
    "api.decline": _state("Decline an offered case with a reason", "CaseStage", body=DeclineIn),
    "api.recuse": Op("Hand back an accepted case with a reason", "referrals", status=204, body=DeclineIn,
                     refusals=(409,)),
    "api.add_action": Op("Record an action on the case", "referrals", status=201, answer=ref("ActionCreated"),
                         body=ActionIn, refusals=(409,)),
    "api.close": _state("Close the case with an outcome (may wait for approval)", body=CloseIn),
    "api.approve_closure": _state("Approve a closure waiting for the supervisor", body=EmptyIn, body_optional=True),
    "api.reject_closure": _state("Send a closure back to the officer", body=EmptyIn, body_optional=True),
    "api.reassign": _state("Give the case to another officer", body=ReassignIn),
    "api.withdraw": _state("Withdraw at the survivor's wish", "CaseStage", body=EmptyIn, body_optional=True),
    "api.request_erasure": _state("Erase the case's content at the survivor's request", "CaseErased", body=EmptyIn,
                                  body_optional=True),
    # consent and services
    "api.record_consent": Op("Record, change or withdraw a consent", "services", status=201,
                             answer=ref("ConsentRecorded"), body=ConsentIn, refusals=(409,)),
    "api.service_directory": Op("Providers serving an area (nearest first), or every active provider without one", "services", answer=page_of(ref("Provider")),
                                query=DirectoryArgs),
    "api.create_service_referral": Op("Refer the case to a provider, sharing consented fields", "services",
                                      status=201, answer=ref("ServiceReferralCreated"), body=ServiceReferralIn,
                                      refusals=(409,)),
    "api.list_service_referrals": Op("Service referrals sent to the caller's organisation", "services",
                                     answer=page_of(ref("ProviderServiceReferral")), query=PageArgs),
    "api.read_service_referral": Op("One service referral with the shared fields", "services",
                                    answer=ref("ProviderServiceReferral")),
    "api.accept_service_referral": Op("Accept a service referral", "services", answer=ref("ServiceReferralState"),
                                      body=RespondIn, body_optional=True, refusals=(409,)),
    "api.decline_service_referral": Op("Decline a service referral", "services",
                                       answer=ref("ServiceReferralState"), body=RespondIn, body_optional=True,
                                       refusals=(409,)),
    "api.complete_service_referral": Op("Record the service given (GBVIMS outcome)", "services",
                                        answer=ref("ServiceReferralState"), body=RespondIn, body_optional=True,
                                        refusals=(409,)),
    # oversight
    "api.verify_chain": Op("Recompute the audit hash chain", "oversight", answer=ref("ChainVerification")),
    "api.audit_search": Op("Search the audit log, newest first", "oversight", answer=page_of(ref("AuditEvent")),
                           query=AuditSearchArgs),
    "api.audit_export": Op("The filtered audit log as CSV", "oversight", answer={"type": "string"},
                           answer_type=CSV, query=AuditFilters),
    "api.case_disclosures": Op("Who saw or received which fields of a case", "oversight",
                               answer=page_of(ref("Disclosure")), query=PageArgs),
    "api.case_match_counts": Op("How many other cases share the survivor's phone or the perpetrator (counts only)",
                                "oversight", answer=ref("MatchCounts")),
    "api.break_glass": Op("Open time-limited access to one case, with a justification", "oversight", status=201,
                          answer=ref("BreakGlassGrant"), body=BreakGlassIn, refusals=(404, 409)),
    "api.break_glass_queue": Op("Break-glass grants to review", "oversight",
                                answer=page_of(ref("BreakGlassQueueItem")), query=PageArgs),
    "api.break_glass_review": Op("Judge another auditor's break-glass", "oversight", answer=ref("BreakGlassReview"),
                                 body=ReviewIn, refusals=(409,)),
    "api.oversight_anomalies": Op("Unusual access patterns", "oversight", answer=page_of(ref("Anomaly")),
                                   query=PageArgs),
    "api.stats_deidentified": Op("De-identified statistics, small cells suppressed", "oversight",
                                 answer=ref("DeidentifiedStatistics"), query=StatsArgs),
    "api.compliance_summary": Op("Compliance with the handling standards per step and officer", "oversight",
                                 answer=ref("ComplianceSummary"), query=SummaryArgs),
    # channels
    "api.sms_inbound": Op(
        "SMS gateway webhook, signed with HMAC-SHA256 (X-Amanat-Timestamp, X-Amanat-Signature)", "channels",
        answer=ref("SmsResult"), refusals=(401, 403, 409, 422, 503), headers=SMS_HEADERS,
        form={"type": "object", "required": ["from", "text"], "additionalProperties": False,
              "properties": {"from": {"type": "string", "maxLength": 32, "description": "E.164"},
                             "text": {"type": "string", "maxLength": 1600},
                             "message_id": {"type": "string", "maxLength": 128,
                                            "description": "the gateway's own id of the message: a retry it "
                                                           "signs afresh files no second case"}}}),
}
