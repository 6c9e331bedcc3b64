"""API: tokens, the caller's own account, and admin account management."""
from __future__ import annotations

from flask import g, jsonify, url_for

from referral.accounts import auth, services
from referral.accounts.enrolment import IssuedLink
from referral.accounts.schemas import PasswordChange, TokenRequest, UserCreate, UserListArgs, UserOut
from referral.api import acting_user, api, load_args, load_json, page_body
from referral.errors import BadRequest
from referral.extensions import db
from referral.security.permissions import Permission, public, requires

user_out = UserOut()


def enrolment_url(link: IssuedLink) -> str:
    """The holder's set-up page; the admin hands it over out of band (it is in no log: see ops/logs.py)."""
    return url_for("web.enrol", token=link.token, _external=True)


def _with_link(user, link: IssuedLink) -> dict:  # type: ignore[no-untyped-def]
    return {**user_out.dump(user), "enrolment": {"url": enrolment_url(link), "kind": link.kind.value,
                                                "expires_at": link.expires_at.isoformat()}}


@api.post("/auth/tokens")
@public
def create_token():  # type: ignore[no-untyped-def]
    data = load_json(TokenRequest)
    try:
        user = auth.authenticate(data["email"], data["password"], data.get("otp"))
    except auth.AuthFailed:
        db.session.commit()  # keep the failure count: it drives the lockout
        raise
    raw, token = auth.issue_token(user)
    db.session.commit()
    return jsonify(token=raw, expires_at=token.expires_at.isoformat()), 201


@api.delete("/auth/tokens/current")
@requires(Permission.ACCOUNT_TOKEN_REVOKE)
def revoke_current_token():  # type: ignore[no-untyped-def]
    if g.get("auth_via") != "token":
        raise BadRequest("This request was not made with a token.", code="no_token")
    auth.revoke_token(g.api_token)
    db.session.commit()
    return "", 204


@api.get("/me")
@requires(Permission.ACCOUNT_SELF_READ)
def me():  # type: ignore[no-untyped-def]
    return jsonify(user_out.dump(acting_user()))


@api.post("/me/password")
@requires(Permission.ACCOUNT_PASSWORD_CHANGE)
def change_own_password():  # type: ignore[no-untyped-def]
    data = load_json(PasswordChange)
    keep = g.get("api_token") if g.get("auth_via") == "token" else g.get("user_session")
    try:
        auth.change_password(acting_user(), data["current_password"], data["new_password"], keep=keep)
    except auth.PasswordChangeRefused:
        db.session.commit()  # the denied event, and a wrong password's count towards the lockout
        raise
    db.session.commit()
    return "", 204


@api.post("/admin/users")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_create_user():  # type: ignore[no-untyped-def]
    data = load_json(UserCreate)
    user, link = services.invite_user(acting_user(), services.NewUser(**data))
    db.session.commit()
    return jsonify(_with_link(user, link)), 201


@api.get("/admin/users")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_list_users():  # type: ignore[no-untyped-def]
    args = load_args(UserListArgs)
    items, total = services.list_users(acting_user(), page=args["page"], per_page=args["per_page"], role=args["role"])
    body = page_body(user_out.dump(items, many=True), page=args["page"], per_page=args["per_page"], total=total)
    db.session.commit()
    return jsonify(body)


@api.get("/admin/users/<int:user_id>")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_get_user(user_id: int):  # type: ignore[no-untyped-def]
    body = user_out.dump(services.get_user(acting_user(), user_id))
    db.session.commit()
    return jsonify(body)


@api.post("/admin/users/<int:user_id>/deactivate")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_deactivate_user(user_id: int):  # type: ignore[no-untyped-def]
    user = services.deactivate_user(acting_user(), user_id)
    db.session.commit()
    return jsonify(user_out.dump(user))


@api.post("/admin/users/<int:user_id>/unlock")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_unlock_user(user_id: int):  # type: ignore[no-untyped-def]
    user = services.unlock_user(acting_user(), user_id)
    db.session.commit()
    return jsonify(user_out.dump(user))


@api.post("/admin/users/<int:user_id>/reset-totp")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_reset_totp(user_id: int):  # type: ignore[no-untyped-def]
    user, link = services.reset_totp(acting_user(), user_id)
    db.session.commit()
    return jsonify(_with_link(user, link))


@api.post("/admin/users/<int:user_id>/enrolment")
@requires(Permission.ADMIN_USERS_MANAGE)
def admin_reissue_enrolment(user_id: int):  # type: ignore[no-untyped-def]
    user, link = services.reissue_link(acting_user(), user_id)
    db.session.commit()
    return jsonify(_with_link(user, link)), 201
