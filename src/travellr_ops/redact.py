"""Masking of secrets (passwords in URIs, tokens) before anything is printed or logged."""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host  ->  scheme://user:***@host
_URI_PASSWORD = re.compile(
    r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<secret>[^@\s]+)(?=@)"
)
# scheme://password@host (redis://:pw@ is covered above; redis://pw@host is redis-py's user form)
_SECRET_ARG = re.compile(
    r"(?P<head>--?(?:password|passwd|pass|token|secret|api-key|auth)[= ]|"
    r"\b(?:password|passwd|token|secret|api_key|apikey)[=:]\s*)(?P<secret>[^\s&;,]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<head>\bBearer\s+)(?P<secret>[A-Za-z0-9._~+/=-]+)")
_AUTH_HEADER = re.compile(r"(?P<head>\bauthorization:\s*)(?P<secret>(?!Bearer\b)[^\r\n]+)", re.I)


def mask(text: str) -> str:
    """Replace every secret found in ``text`` with ``***``."""
    for pattern in (_URI_PASSWORD, _SECRET_ARG, _BEARER, _AUTH_HEADER):
        text = pattern.sub(lambda m: m.group("head") + MASK, text)
    return text


def mask_argv(argv: list[str]) -> str:
    """A command line, secrets masked, as one string for the audit log."""
    masked: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            masked.append(MASK)
            hide_next = False
            continue
        if re.fullmatch(r"--?(password|passwd|pass|token|secret|api-key)", arg, re.IGNORECASE):
            hide_next = True
        masked.append(mask(arg))
    return " ".join(masked)
