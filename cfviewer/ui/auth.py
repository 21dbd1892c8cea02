"""Access control: reader tokens (``?token=...``) and the researcher password.

Reader tokens are checked by the study engine (`cfviewer.study.tokens.authenticate`: stored as
SHA-256, compared in constant time); a link must carry exactly one ``token`` parameter
(`token_from_query`). The researcher password comes from the environment
variable ``CFVIEWER_ADMIN_PASSWORD`` or ``admin_password`` in ``.streamlit/secrets.toml``;
without one, researcher pages stay locked and say how to set it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import Any, Mapping

from cfviewer.study.tokens import reader_for_token as _reader_for_token

ENV_ADMIN_PASSWORD = "CFVIEWER_ADMIN_PASSWORD"
SECRET_KEY = "admin_password"
MIN_PASSWORD_LENGTH = 8

NO_PASSWORD_MESSAGE = (
    "Researcher pages are locked because no admin password is configured. Set the "
    f"environment variable {ENV_ADMIN_PASSWORD} (at least {MIN_PASSWORD_LENGTH} characters) "
    f"or `{SECRET_KEY} = \"...\"` in .streamlit/secrets.toml, then restart the app."
)


def configured_password(secrets: Mapping[str, Any] | None = None) -> str | None:
    """The admin password: the environment first, then the secrets mapping (st.secrets)."""
    env = os.environ.get(ENV_ADMIN_PASSWORD)
    if env:
        return env
    if secrets is None:
        return None
    try:
        value = secrets.get(SECRET_KEY)
    except Exception:  # st.secrets raises when no secrets.toml exists
        return None
    return str(value) if value else None


def password_problem(password: str | None) -> str | None:
    """Why a configured password is unusable (None when it is fine)."""
    if not password:
        return NO_PASSWORD_MESSAGE
    if len(password) < MIN_PASSWORD_LENGTH:
        return (f"The configured admin password is shorter than {MIN_PASSWORD_LENGTH} characters; "
                f"choose a longer one in {ENV_ADMIN_PASSWORD} or secrets.toml.")
    return None


def check_password(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (both sides hashed first, so lengths leak nothing)."""
    if not given or not expected or password_problem(expected):
        return False
    a = hashlib.sha256(given.encode("utf-8")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


class AmbiguousTokenError(ValueError):
    """The link carries the ``token`` query parameter more than once."""


def token_values(query_params: Mapping[str, Any]) -> list[str]:
    """Every value of the ``token`` query parameter, in order (``st.query_params.get_all``
    when the mapping has it, else a str or a list/tuple value)."""
    get_all = getattr(query_params, "get_all", None)
    if callable(get_all):
        values = list(get_all("token"))
    else:
        value = query_params.get("token")
        values = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
    return [str(v) for v in values]


def token_from_query(query_params: Mapping[str, Any]) -> str | None:
    """The ``token`` query parameter, stripped; None when absent or empty.

    Exactly one is accepted: a link with two or more ``token`` parameters (even equal ones)
    raises :class:`AmbiguousTokenError`, so it can never sign a visitor in as whichever one a
    parser happens to keep (Streamlit's ``st.query_params["token"]`` is the last)."""
    values = token_values(query_params)
    if len(values) > 1:
        raise AmbiguousTokenError(f"the link has {len(values)} 'token' parameters; exactly one is accepted")
    if not values:
        return None
    value = values[0].strip()
    return value or None


def reader_for_token(db, token: str | None, study_id: int | None = None):
    """The Reader of this token, or None for an unknown / malformed one (the study engine's
    `tokens.reader_for_token`)."""
    return _reader_for_token(db, token, study_id)
