"""Keep credentials out of what catalogcap prints and logs.

Secrets belong in the environment, but people paste them into config files and URLs
anyway; whatever catalogcap shows (`config show`, `status`, setting errors, plugin
failures in the logs) goes through here first. A value is hidden when its setting's name
says it is a secret: the words of the last dotted part (split at ``_`` and ``-``) include
``token``, ``secret``, ``password``, ``passwd``, ``credential(s)`` or ``api key`` /
``private key`` (so ``api_token`` and ``webhook.secret`` are hidden, ``max_new_tokens``
is not). A name ending in ``_env``, ``_file`` or ``_path`` names where a secret is kept,
not the secret, and is shown. A URL keeps its user name but loses its password
(``postgresql://cc:***@db/cc``), and query values named like secrets
(``?token=***``) are hidden too.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from sqlalchemy.engine import make_url

HIDDEN = "***"
_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "credential", "credentials"})
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("client", "secret")})
_POINTER_WORDS = frozenset({"env", "file", "path"})
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.I)
# SQLAlchemy's own URL grammar: the user name stops at ':' or '/', the password runs to the
# first '@' (so a password holding '/', '?' or '#' is still all of the password)
_USERINFO = re.compile(r"^(?P<head>[a-z][a-z0-9+.-]*://[^:/@?#]*:)(?P<password>[^@]*)@", re.I)
_QUERY_ITEM = re.compile(r"(?P<sep>[?&;])(?P<name>[^=&;#]+)=(?P<value>[^&;#]*)")
_URL_IN_TEXT = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.I)


def _words(name: str) -> list[str]:
    leaf = str(name).rsplit(".", 1)[-1]
    return [word for word in re.split(r"[^a-z0-9]+", leaf.lower()) if word]


def secret_name(name: str) -> bool:
    """Whether a setting called `name` (dotted or not) holds a secret, judged by the words of its last part."""
    words = _words(name)
    if not words or words[-1] in _POINTER_WORDS:
        return False
    return bool(_SECRET_WORDS.intersection(words)) or any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def _hide_query(text: str) -> str:
    def hide(match: re.Match[str]) -> str:
        if not secret_name(match.group("name")) or not match.group("value"):
            return match.group(0)
        return f"{match.group('sep')}{match.group('name')}={HIDDEN}"

    base, mark, rest = text.partition("?")
    return base + mark + _QUERY_ITEM.sub(hide, "?" + rest)[1:] if mark else text


def url(text: str) -> str:
    """`text` with the password of a ``scheme://user:password@host`` URL and secret-named query values
    hidden; text that is not a URL is returned as is.

    The password is found as SQLAlchemy's `make_url` finds it; a URL it cannot parse (an
    unclosed ``[``, a bad port) loses its password by the same grammar, never shown raw."""
    if not isinstance(text, str) or not _SCHEME.match(text):
        return text
    try:
        password = make_url(text).password
    except Exception:  # malformed: the same grammar by hand, still hiding what would be the password
        password = None
    found = _USERINFO.match(text)
    if found is not None and (password is not None or found.group("password")):
        rest = text[found.end():]
        # an unencoded '@' in the password: the host is after the last '@' of the authority
        authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
        rest = rest[authority.rindex("@") + 1:] if "@" in authority else rest
        text = f"{found.group('head')}{HIDDEN}@{rest}"
    return _hide_query(text)


def database_url(text: str) -> str:
    """A database URL as shown to people: rendered by SQLAlchemy with the password hidden."""
    try:
        parsed = make_url(text)
    except Exception:  # not parseable: hide by the same grammar, never echo it raw
        return url(text)
    return _hide_query(parsed.render_as_string(hide_password=True))


def value(name: str, item: Any) -> Any:
    """`item` as it may be shown for the setting `name`: hidden, URL-redacted, or walked into."""
    if secret_name(name) and item not in (None, "", [], {}):
        return HIDDEN
    if isinstance(item, str):
        return url(item)
    if isinstance(item, dict):
        return {key: value(str(key), sub) for key, sub in item.items()}
    if isinstance(item, (list, tuple)):
        return [value(name, sub) for sub in item]
    return item


def text(message: str) -> str:
    """Free text (an exception message) with every URL's password and secret query values hidden."""
    return _URL_IN_TEXT.sub(lambda m: url(m.group(0)), message)
