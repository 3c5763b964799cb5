"""mitmproxy addon for scripts/bench: masks the same kinds of values Bordergate's detectors find
(e-mail addresses, card numbers, IBANs) in textual response bodies with Python `re`, so the two
masking proxies are compared doing comparable work. Not a faithful copy of the detectors (no
Luhn or mod-97 checks, which would only slow it further)."""
import re

from mitmproxy import http

PATTERNS = [
    (re.compile(rb"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), b"[EMAIL]"),
    (re.compile(rb"\b(?:\d[ -]?){13,19}\b"), b"[CREDIT-CARD]"),
    (re.compile(rb"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){3,7}(?: ?[A-Z0-9]{1,3})?\b"), b"[IBAN]"),
]


def response(flow: http.HTTPFlow) -> None:
    ctype = flow.response.headers.get("content-type", "")
    if not (ctype.startswith("text/") or "json" in ctype):
        return
    body = flow.response.content or b""
    for pattern, label in PATTERNS:
        body = pattern.sub(label, body)
    flow.response.content = body
