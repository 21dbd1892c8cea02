"""Access control: reader tokens (``?token=...``) and the researcher password.

Reader tokens are checked by the study engine (`cfviewer.study.tokens.authenticate`: stored as
SHA-256, compared in constant time); a link must carry exactly one ``token`` parameter
(`token_from_query`). The researcher password comes from the environment
variable ``CFVIEWER_ADMIN_PASSWORD`` or ``admin_password`` in ``.streamlit/secrets.toml``;
without one, researcher pages stay locked and say how to set it. The password must be strong
(`password_problem`: at least 12 characters and no simple pattern).

Sign-in attempts are throttled (`SignInThrottle`, one store per server process): after a few
failures from one client, that client is locked out for a window that doubles with every
further failure, and many failures from all clients together lock the sign-in for everyone
for a while. During a lockout even the right password is refused, with the time to retry.
Every failed or refused attempt is logged (logger ``cfviewer.auth``: client and counts,
never the password).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from cfviewer.study.tokens import reader_for_token as _reader_for_token

ENV_ADMIN_PASSWORD = "CFVIEWER_ADMIN_PASSWORD"
SECRET_KEY = "admin_password"
MIN_PASSWORD_LENGTH = 12

NO_PASSWORD_MESSAGE = (
    "Researcher pages are locked because no admin password is configured. Set the "
    f"environment variable {ENV_ADMIN_PASSWORD} (at least {MIN_PASSWORD_LENGTH} characters, no simple pattern) "
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


PASSWORD_RULE = (
    f"at least {MIN_PASSWORD_LENGTH} characters, and not a simple pattern: not one character or one "
    "group repeated, not digits only, not a run such as 123456789012, abcdefghijkl or qwertyuiop, and "
    "not a common word (password, admin, welcome, ...) with only digits or symbols added"
)
# Words that make up most guessed passwords; a password that is one of them plus digits or
# symbols (or a few of them together) is refused. Compared in lower case, digits as letters.
COMMON_WORDS = (
    "password", "passwort", "passw0rd", "admin", "administrator", "root", "secret", "letmein", "welcome",
    "qwerty", "azerty", "qwertz", "iloveyou", "monkey", "dragon", "master", "login", "changeme", "default",
    "trustno1", "sunshine", "football", "baseball", "princess", "shadow", "superman", "starwars", "hello",
    "test", "guest", "user", "study", "reader", "researcher", "cfviewer", "radiology", "xray", "hospital",
    "streamlit",
)
_RUNS = ("abcdefghijklmnopqrstuvwxyz", "01234567890123456789", "qwertyuiopasdfghjklzxcvbnm", "qwertzuiopasdfghjklyxcvbnm",
         "azertyuiopqsdfghjklmwxcvbn", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p")


_LEET = str.maketrans("@4310$5!7", "aaeiossit")


def _is_run(text: str) -> bool:
    """`text` (lower case) is a stretch of one of the _RUNS, forwards or backwards."""
    return len(text) >= 3 and any(text in r or text in r[::-1] for r in _RUNS)


def _is_repetition(text: str) -> bool:
    """`text` is one group of characters repeated (aaaa..., abab..., hunter2hunter2)."""
    n = len(text)
    return any(n % k == 0 and text == text[:k] * (n // k) for k in range(1, n // 2 + 1))


def password_strength_problem(password: str) -> str | None:
    """Why `password` is too weak to protect researcher pages (None when it is strong enough)."""
    rule = f"The admin password must have {PASSWORD_RULE}."
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"The admin password is shorter than {MIN_PASSWORD_LENGTH} characters. {rule}"
    low = password.lower()
    if password.isdigit():
        return f"The admin password is digits only. {rule}"
    if len(set(low)) < 5 or _is_repetition(low):
        return f"The admin password repeats too few different characters. {rule}"
    if _is_run(low) or _is_run(re.sub(r"[^a-z0-9]", "", low)):
        return f"The admin password is a keyboard or alphabet run. {rule}"
    for text in (low, low.translate(_LEET)):  # P@ssw0rd counts as password
        rest = text
        for word in sorted(COMMON_WORDS, key=len, reverse=True):
            rest = rest.replace(word, "")
        if rest != text:  # built on common words: what is left must be strong by itself
            core = re.sub(r"[^a-z]", "", rest)
            if len(rest) < 8 or len(core) < 4 or _is_run(core) or _is_repetition(core):
                return f"The admin password is a common word with little added. {rule}"
    return None


def password_problem(password: str | None) -> str | None:
    """Why a configured password is unusable (None when it is fine): missing, or too weak
    (`password_strength_problem`)."""
    if not password:
        return NO_PASSWORD_MESSAGE
    problem = password_strength_problem(password)
    if problem:
        return f"{problem} Choose another in {ENV_ADMIN_PASSWORD} or secrets.toml, then restart the app."
    return None


def check_password(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison (both sides hashed first, so lengths leak nothing)."""
    if not given or not expected or password_problem(expected):
        return False
    a = hashlib.sha256(given.encode("utf-8")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


# ------------------------------------------------------------------ sign-in throttling ---

LOG = logging.getLogger("cfviewer.auth")


@dataclass
class _Record:
    failures: list[float] = field(default_factory=list)  # clock times of recent failures
    locked_until: float = 0.0
    lockouts: int = 0  # lockouts in a row (the window doubles with each)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one sign-in attempt: `ok`, or refused with `message` (and, during a
    lockout, `retry_after` seconds)."""

    ok: bool
    message: str = ""
    retry_after: float = 0.0

    @property
    def locked(self) -> bool:
        return self.retry_after > 0

    def __bool__(self) -> bool:
        return self.ok


WRONG_PASSWORD_MESSAGE = "Wrong password."


def _wait_text(seconds: float) -> str:
    s = max(1, math.ceil(seconds))
    if s < 90:
        return f"{s} second{'s' if s != 1 else ''}"
    m = math.ceil(s / 60)
    return f"{m} minute{'s' if m != 1 else ''}"


class SignInThrottle:
    """Failed sign-ins, per client and for the whole server, kept in this process.

    - per client: `client_failures` failures within `window` seconds lock that client out for
      `base_lockout` seconds; each further lockout in a row doubles it (up to `max_lockout`).
      A successful sign-in clears the client's record.
    - global: `global_failures` failures from all clients together within `window` lock the
      sign-in for everyone for `global_lockout` seconds (a guesser rotating addresses or
      sessions). This also locks the researcher out for that while: the price of a cap.

    During a lockout every attempt is refused, the right password too, and does not count as
    a new failure (so a lockout cannot be stretched by the attacker). `clock` (seconds,
    monotonic) can be injected for tests; `wall` gives the local time shown in messages.
    Thread-safe: Streamlit runs every session's script in its own thread."""

    def __init__(self, *, client_failures: int = 5, global_failures: int = 30, window: float = 900.0,
                 base_lockout: float = 30.0, max_lockout: float = 3600.0, global_lockout: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, wall: Callable[[], float] = time.time,
                 max_clients: int = 10_000):
        self.client_failures, self.global_failures, self.window = client_failures, global_failures, window
        self.base_lockout, self.max_lockout, self.global_lockout = base_lockout, max_lockout, global_lockout
        self.clock, self.wall, self.max_clients = clock, wall, max_clients
        self._lock = threading.Lock()
        self._clients: dict[str, _Record] = {}
        self._global = _Record()

    def _prune(self, rec: _Record, now: float) -> None:
        rec.failures = [t for t in rec.failures if now - t < self.window]
        if not rec.failures and now >= rec.locked_until and now - rec.locked_until > self.window:
            rec.lockouts = 0  # a quiet window forgives earlier lockouts

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again (0: now)."""
        with self._lock:
            now = self.clock()
            rec = self._clients.get(client)
            return max(0.0, self._global.locked_until - now, (rec.locked_until - now) if rec else 0.0)

    def _locked_message(self, wait: float) -> str:
        at = time.strftime("%H:%M:%S", time.localtime(self.wall() + wait))
        return (f"Too many failed sign-in attempts: sign-in is locked. Try again in {_wait_text(wait)} "
                f"(after {at} server time). Until then even the right password is refused.")

    def attempt(self, client: str, check: Callable[[], bool]) -> Verdict:
        """One sign-in by `client`: refused without calling `check` during a lockout, else
        `check()` (the password comparison) decides; failures are counted and logged."""
        with self._lock:
            now = self.clock()
            rec = self._clients.get(client)
            if rec is None:
                if len(self._clients) >= self.max_clients:  # bounded memory: forget the quietest
                    for key in [k for k, r in self._clients.items() if r.locked_until <= now][: self.max_clients // 10]:
                        del self._clients[key]
                rec = self._clients[client] = _Record()
            wait = max(self._global.locked_until - now, rec.locked_until - now)
            if wait > 0:
                scope = "all clients" if self._global.locked_until - now >= wait else "this client"
                LOG.warning("researcher sign-in refused during a lockout of %s (client %s, %.0f s left)",
                            scope, client, wait)
                return Verdict(False, self._locked_message(wait), wait)
            ok = bool(check())
            if ok:
                rec.failures.clear()
                rec.lockouts = 0
                return Verdict(True)
            self._prune(rec, now)
            self._prune(self._global, now)
            rec.failures.append(now)
            self._global.failures.append(now)
            wait, recent = 0.0, len(rec.failures)
            if recent >= self.client_failures:
                wait = min(self.max_lockout, self.base_lockout * 2 ** rec.lockouts)
                rec.locked_until, rec.lockouts = now + wait, rec.lockouts + 1
                rec.failures.clear()
            if len(self._global.failures) >= self.global_failures:
                self._global.locked_until = now + self.global_lockout
                self._global.failures.clear()
                wait = max(wait, self.global_lockout)
                LOG.warning("researcher sign-in locked for all clients for %.0f s after %d failures within %.0f s",
                            self.global_lockout, self.global_failures, self.window)
            LOG.warning("researcher sign-in failed (client %s, %d recent failure(s) from it%s)", client,
                        recent,
                        f"; locked out for {wait:.0f} s" if wait else "")
            if wait:
                return Verdict(False, f"{WRONG_PASSWORD_MESSAGE} {self._locked_message(wait)}", wait)
            return Verdict(False, WRONG_PASSWORD_MESSAGE)

    def reset(self) -> None:
        with self._lock:
            self._clients.clear()
            self._global = _Record()


THROTTLE = SignInThrottle()  # the server's store (module level: one per Streamlit process)


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
