"""Keep credentials out of what catalogcap prints and logs.

Secrets belong in the environment, but people paste them into config files and URLs
anyway; whatever catalogcap shows (`config show`, `status`, setting errors, plugin
failures in the logs) goes through here first. A value is hidden when its setting's name
looks secret (``secret``, ``token``, ``password``, ``api_key``...), and a URL keeps its
user name but loses its password (``postgresql://cc:***@db/cc``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

HIDDEN = "***"
_SECRET_NAME = re.compile(r"secret|token|passw(or)?d|passwd|api[_-]?key|private[_-]?key|credential|^key$", re.I)
_URL_WITH_USER = re.compile(r"^[a-z][a-z0-9+.-]*://[^/?#]*@", re.I)


def secret_name(name: str) -> bool:
    """Whether a setting called `name` (dotted or not) holds a secret, judged by its last part."""
    return bool(_SECRET_NAME.search(str(name).rsplit(".", 1)[-1]))


def url(text: str) -> str:
    """`text` with the password of a ``scheme://user:password@host`` URL hidden; other text as is."""
    if not _URL_WITH_USER.match(text):
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return HIDDEN
    if parts.password is None:
        return text
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN}@{host}"))


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
    """Free text (an exception message) with every URL's password hidden."""
    return re.sub(r"[a-z][a-z0-9+.-]*://[^\s'\"/?#]*@[^\s'\"]*", lambda m: url(m.group(0)), message, flags=re.I)
