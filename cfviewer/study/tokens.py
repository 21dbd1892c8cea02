"""Reader tokens: random, shown once (in the reader's link), stored only as a SHA-256 hash.

A token is 32 bytes from `secrets` (URL-safe base64), so a plain SHA-256 is enough (no slow KDF
is needed against guessing 256 bits). Lookups go through the hash index; the final comparison
uses `hmac.compare_digest`, so timing does not reveal how much of a hash matched.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from cfviewer.errors import CfviewerError
from cfviewer.study.schema import Reader

TOKEN_BYTES = 32


class InvalidTokenError(CfviewerError):
    """The reader link's token is unknown (mistyped, revoked, or for another study)."""

    def __init__(self) -> None:
        super().__init__(
            "this reader link is not valid (mistyped, or for another study): ask the study's "
            "researcher for your link; for the demo study, `cfviewer demo` prints the links again"
        )


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def tokens_match(token: str, token_hash: str) -> bool:
    """Constant-time check of a token against a stored hash."""
    return hmac.compare_digest(hash_token(token).encode(), token_hash.encode())


def authenticate(session: Session, token: str | None, study_id: int | None = None) -> Reader:
    """The reader whose token this is; raises InvalidTokenError otherwise."""
    if not token or not isinstance(token, str) or len(token) > 200:
        raise InvalidTokenError()
    digest = hash_token(token.strip())
    q = select(Reader).where(Reader.token_hash == digest)
    if study_id is not None:
        q = q.where(Reader.study_id == study_id)
    reader = session.scalars(q).first()
    if reader is None or not tokens_match(token.strip(), reader.token_hash):
        raise InvalidTokenError()
    return reader


def reader_for_token(db, token: str | None, study_id: int | None = None) -> Reader | None:
    """The Reader of this token (read in its own transaction), or None for a missing, unknown
    or malformed one: what the app signs a reader in with."""
    if not token:
        return None
    with db.read() as s:
        try:
            return authenticate(s, token, study_id)
        except InvalidTokenError:
            return None


def reader_link(token: str, base_url: str = "http://localhost:8501/") -> str:
    sep = "&" if "?" in base_url else "?"
    return f"{base_url}{sep}token={token}"
