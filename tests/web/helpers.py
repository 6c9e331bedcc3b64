import re

CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def web_login(client, email, password, otp=None, *, follow=False):
    page = client.get("/login")
    data = {"email": email, "password": password, "otp": otp or "", "csrf_token": csrf_token(page.get_data(as_text=True))}
    return client.post("/login", data=data, follow_redirects=follow)


TOTP_SECRET = re.compile(r'id="totp-secret" value="([A-Z2-7]+)"')


def link_path(url: str) -> str:
    """The path of a set-up link as the admin was given it (an absolute URL)."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    assert parts.path.startswith("/enrol/") and not parts.query, url
    return parts.path


def open_link(client, url):
    """The holder opens the set-up link: (page, TOTP secret shown or None)."""
    page = client.get(link_path(url))
    match = TOTP_SECRET.search(page.get_data(as_text=True))
    return page, match.group(1) if match else None


def enrol(client, url, password="", *, current_password="", code=None, when=None):
    """The holder opens the link and finishes the set-up: (final answer, TOTP secret or None).

    ``code`` defaults to the secret's code at ``when`` (now); the code is then used up, so a sign-in
    right after needs the next one (``next_code``).
    """
    import datetime as dt

    import pyotp

    page, secret = open_link(client, url)
    assert page.status_code == 200, page.status_code
    if code is None:
        code = pyotp.TOTP(secret).at(when or dt.datetime.now(dt.UTC)) if secret else ""
    data = {"csrf_token": csrf_token(page.get_data(as_text=True)), "password": password, "password_again": password,
            "current_password": current_password, "otp": code}
    return client.post(link_path(url), data=data), secret


def next_code(secret, when=None):
    """The code of the next 30-second step, which the service accepts (one step of drift) once the
    current one is used up."""
    import datetime as dt

    import pyotp

    return pyotp.TOTP(secret).at((when or dt.datetime.now(dt.UTC)) + dt.timedelta(seconds=30))
