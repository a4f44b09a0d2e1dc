"""Signed-in users for the replicas: a sign-in page that sets a session cookie, and the accounts behind it.

`/_replica/signin` (on every replica host: a cookie belongs to the host that set it, so a sign-in on
meet.google.com signs in to Meet, one on zoom.us to Zoom) shows a form like an account provider's: email,
name, "Next". Posting it creates the account and sets a persistent `SID` cookie (a year, Secure, HttpOnly),
which a browser profile keeps: `meeting-bot login` saves such a profile, and a bot started on a copy of it
is signed in. The platform pages read the cookie (`of_request`): the account's name replaces the guest's
typed name, and the room may let the account in without asking (`RoomConfig.admit_signed_in`).
"""

from __future__ import annotations

import html
import secrets
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web

COOKIE = "SID"
_YEAR_S = 365 * 24 * 3600

_FORM = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in - Replica Accounts</title></head>
<body>
<h1>Sign in</h1>
<p>to continue to __SERVICE__</p>
<form method="post" action="/_replica/signin">
  <input type="hidden" name="continue" value="__CONTINUE__">
  <input type="email" name="email" aria-label="Email or phone" autocomplete="off" autofocus>
  <input type="text" name="name" aria-label="Your name" autocomplete="off">
  <button type="submit">Next</button>
</form>
<script>
  // Tells the replica the form is on screen with the email field focused (tests type into it blind).
  addEventListener("load", () => {
    document.querySelector("[name=email]").focus();
    fetch("/_replica/signin/ready", { method: "POST" });
  });
</script>
</body></html>"""

_DONE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signed in</title></head>
<body><h1>Signed in as __NAME__</h1><p>__EMAIL__</p><p>You can close this window.</p></body></html>"""


@dataclass(frozen=True)
class Account:
    email: str
    name: str


@dataclass
class Accounts:
    """The replica's accounts and their sessions. `sign_ins` lists every successful sign-in, in order."""

    sessions: dict[str, Account] = field(default_factory=dict)
    sign_ins: list[Account] = field(default_factory=list)
    form_loads: int = 0  # how often the sign-in page was served
    forms_ready: int = 0  # how often it was on screen with its email field focused

    def sign_in(self, email: str, name: str = "") -> str:
        """Creates (or reuses) the account and a session for it; returns the session token."""
        account = Account(email.strip().lower(), name.strip() or email.split("@")[0])
        token = secrets.token_urlsafe(24)
        self.sessions[token] = account
        self.sign_ins.append(account)
        return token

    def of_request(self, request: web.Request) -> Account | None:
        """The signed-in account of a page load or WebSocket, from its cookie."""
        token = request.cookies.get(COOKIE, "")
        return self.sessions.get(token) if token else None

    def routes(self) -> list[web.RouteDef]:
        async def form(request: web.Request) -> web.Response:
            self.form_loads += 1
            host = request.host.split(":")[0]
            service = "Zoom" if "zoom" in host else "Microsoft Teams" if "teams" in host else "Google Meet"
            target = _safe_continue(request.query.get("continue", ""))
            page = _FORM.replace("__SERVICE__", service).replace("__CONTINUE__", html.escape(target))
            return web.Response(text=page, content_type="text/html", headers={"Cache-Control": "no-store"})

        async def submit(request: web.Request) -> web.Response:
            data = await request.post()
            email = str(data.get("email", "")).strip()
            if "@" not in email:
                raise web.HTTPFound("/_replica/signin")
            token = self.sign_in(email, str(data.get("name", "")))
            account = self.sessions[token]
            target = _safe_continue(str(data.get("continue", "")))
            if target:
                response = web.Response(status=303, headers={"Location": target})
            else:
                page = _DONE.replace("__NAME__", html.escape(account.name)).replace(
                    "__EMAIL__", html.escape(account.email)
                )
                response = web.Response(text=page, content_type="text/html")
            response.set_cookie(
                COOKIE, token, max_age=_YEAR_S, path="/", secure=True, httponly=True, samesite="Lax"
            )
            return response

        async def ready(request: web.Request) -> web.Response:
            self.forms_ready += 1
            return web.Response(status=204)

        return [
            web.get("/_replica/signin", form),
            web.post("/_replica/signin", submit),
            web.post("/_replica/signin/ready", ready),
        ]


def _safe_continue(target: str) -> str:
    """Only a path on the same host (no open redirect, even in a replica)."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return ""
    return target
