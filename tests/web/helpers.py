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
