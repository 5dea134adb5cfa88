"""The consent page and the facade's error page: small, self-contained HTML.

Everything shown is escaped; no script runs (CSP `default-src 'none'`), the page cannot
be framed (`frame-ancestors 'none'`, X-Frame-Options DENY) and the form posts only to
the facade and the two places its answer redirects to (`form-action`: browsers apply it
to a form's redirects).
"""

from __future__ import annotations

from html import escape

from starlette.responses import HTMLResponse

from authgate.urls import parse_url

_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'; base-uri 'none'"
SECURITY_HEADERS = {
    "Content-Security-Policy": _CSP.format("'none'"),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser's form POST carries
    # `Origin: null`, and the consent decision checks Origin. Other sites still get nothing.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;background:#f4f5f7;margin:0;color:#1f2328}
main{max-width:30rem;margin:4rem auto;background:#fff;border-radius:12px;padding:2rem;
box-shadow:0 1px 3px rgba(0,0,0,.12)}
h1{font-size:1.25rem;margin:0 0 1rem}p{line-height:1.5}code{background:#f0f1f3;padding:.1rem .3rem;border-radius:4px}
ul{padding-left:1.2rem}.actions{display:flex;gap:.75rem;margin-top:1.5rem}
button{font-size:1rem;padding:.6rem 1.2rem;border-radius:8px;border:1px solid #d0d7de;background:#fff;cursor:pointer}
button.approve{background:#1f6feb;border-color:#1f6feb;color:#fff}.muted{color:#59636e;font-size:.875rem}
"""


def _page(title: str, body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS | (headers or {}))


def consent_page(
    *,
    action: str,
    client_name: str,
    client_id_shown: str,
    redirect_uri: str,
    resource: str,
    scopes: tuple[str, ...],
    sealed_request: str,
    remember: bool,
    set_cookie: str,
    form_targets: tuple[str, ...],
    provenance: str,
) -> HTMLResponse:
    """`form_targets`: the origins the decision's redirect may lead to (the identity
    provider's, the client's): browsers apply CSP form-action to a form's redirects too."""
    redirect_host = parse_url(redirect_uri).host  # the strict parser that accepted it
    scope_items = "".join(f"<li><code>{escape(scope)}</code></li>" for scope in scopes) or "<li>basic access</li>"
    remember_note = (
        '<p class="muted">Your choice is remembered in this browser for this application.</p>' if remember else ""
    )
    body = (
        "<h1>Allow access?</h1>"
        f"<p><strong>{escape(client_name)}</strong> wants to access <code>{escape(resource)}</code> "
        "on your behalf.</p>"
        f'<p class="muted">Client: <code>{escape(client_id_shown)}</code> ({escape(provenance)})<br>'
        f"After you decide, you return to <strong>{escape(redirect_host)}</strong>.</p>"
        f"<p>It asks for:</p><ul>{scope_items}</ul>{remember_note}"
        f'<form method="post" action="{escape(action)}">'
        f'<input type="hidden" name="consent" value="{escape(sealed_request)}">'
        '<div class="actions">'
        '<button class="approve" type="submit" name="decision" value="approve">Allow</button>'
        '<button type="submit" name="decision" value="deny">Deny</button>'
        "</div></form>"
    )
    # CSP host-sources cannot name an IPv6 literal: such a target ([::1] loopback) is
    # allowed by its scheme.
    sources = [f"{parse_url(t).scheme}:" if "[" in t else t for t in form_targets]
    form_action = " ".join(["'self'", *dict.fromkeys(sources)])
    response = _page("Allow access?", body, headers={"Content-Security-Policy": _CSP.format(form_action)})
    response.headers.append("Set-Cookie", set_cookie)
    return response


def error_page(message: str, status: int = 400) -> HTMLResponse:
    body = f"<h1>This sign-in cannot continue</h1><p>{escape(message)}</p>"
    return _page("Sign-in error", body, status)
