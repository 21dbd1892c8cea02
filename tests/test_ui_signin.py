"""Researcher sign-in defences: a strong password rule, throttling (per client and global, with
lockouts that double), a log line per failed attempt without the password, and the same seen
through the app (AppTest): a lockout refuses even the right password and says when to retry."""

from __future__ import annotations

import logging

import pytest

import ui_fixtures as F
from cfviewer.ui import auth


# ------------------------------------------------------------------ the password rule
@pytest.mark.parametrize("weak", [
    "Kx81-tiny", "elevenchars", "aaaaaaaaaaaaaaaa", "abababababab", "hunter2hunter2", "123456789012",
    "839201746352", "abcdefghijklmn", "qwertyuiopasdf", "zyxwvutsrqponm", "Password1234!", "admin12345678",
    "Welcome2024!!", "passwordpassword", "iloveyou-letmein", "P@ssword_2024", "cfviewer123456",
])
def test_weak_passwords_are_refused_with_the_rule(weak):
    problem = auth.password_problem(weak)
    assert problem and "at least 12 characters" in problem and "simple pattern" in problem
    assert weak not in problem.replace("123456789012", "")  # the message never repeats the password


@pytest.mark.parametrize("strong", [
    F.ADMIN_PASSWORD, "a long enough password", "kX9-u2pQ_vL3wz", "radiology reading room 7",
    "Tr0ub4dor&3xyz", "vYirG9gRo1_Sz24agArv",
])
def test_strong_passwords_are_accepted(strong):
    assert auth.password_problem(strong) is None


def test_a_weak_configured_password_locks_the_researcher_pages():
    assert not auth.check_password("Password1234!", "Password1234!")


# ------------------------------------------------------------------ the throttle
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _throttle(**kw):
    clock = Clock()
    kw = {"client_failures": 3, "global_failures": 10, "window": 600.0, "base_lockout": 30.0,
          "max_lockout": 200.0, "global_lockout": 120.0, **kw}
    return auth.SignInThrottle(clock=clock, wall=lambda: 0.0, **kw), clock


def test_a_client_is_locked_out_after_n_failures_and_the_window_doubles():
    th, clock = _throttle(global_failures=100)
    wrong, right = (lambda: False), (lambda: True)
    assert [th.attempt("a", wrong).message for _ in range(2)] == [auth.WRONG_PASSWORD_MESSAGE] * 2
    v = th.attempt("a", wrong)  # the third failure starts a 30 s lockout
    assert not v and v.locked and v.retry_after == 30 and "Try again in 30 seconds" in v.message
    calls = []
    v = th.attempt("a", lambda: calls.append(1) or True)  # the right password, during the lockout
    assert not v.ok and v.locked and "Try again in 30 seconds" in v.message and "right password" in v.message
    assert calls == []  # the password is not even checked
    assert th.attempt("b", right).ok  # another client is not affected
    clock.t += 29
    assert th.attempt("a", right).locked and th.retry_after("a") == pytest.approx(1)
    clock.t += 1.5
    assert th.retry_after("a") == 0
    for _ in range(2):
        assert not th.attempt("a", wrong).locked
    v = th.attempt("a", wrong)  # the next lockout in a row: 60 s, then 120, then capped at 200
    assert v.retry_after == 60 and "60 seconds" in v.message
    clock.t += 61
    for _ in range(3):
        v = th.attempt("a", wrong)
    assert v.retry_after == 120
    clock.t += 121
    for _ in range(3):
        v = th.attempt("a", wrong)
    assert v.retry_after == 200
    clock.t += 201
    assert th.attempt("a", right).ok  # success clears the record
    for _ in range(2):
        assert not th.attempt("a", wrong).locked
    assert th.attempt("a", wrong).retry_after == 30


def test_failures_older_than_the_window_are_forgotten():
    th, clock = _throttle()
    for _ in range(2):
        th.attempt("a", lambda: False)
    clock.t += 601
    assert not th.attempt("a", lambda: False).locked  # only one recent failure now


def test_many_clients_together_lock_everyone_out():
    th, clock = _throttle(client_failures=100)
    for i in range(9):
        assert not th.attempt(f"c{i}", lambda: False).locked  # a guesser rotating addresses
    v = th.attempt("c9", lambda: False)
    assert v.locked and v.retry_after == 120
    v = th.attempt("researcher", lambda: True)
    assert not v.ok and v.locked and "Try again in 2 minutes" in v.message
    clock.t += 121
    assert th.attempt("researcher", lambda: True).ok


def test_each_failed_attempt_is_logged_without_the_password(caplog):
    th, _ = _throttle()
    secret = "my-guess-Kx81"
    with caplog.at_level(logging.WARNING, logger="cfviewer.auth"):
        for _ in range(4):
            th.attempt("ip:10.0.0.7", lambda: auth.check_password(secret, F.ADMIN_PASSWORD))
    lines = [r.getMessage() for r in caplog.records if r.name == "cfviewer.auth"]
    assert sum("sign-in failed" in m for m in lines) == 3 and sum("refused during a lockout" in m for m in lines) == 1
    assert all("10.0.0.7" in m for m in lines) and "locked out for 30 s" in lines[2]
    assert not any(secret in m or F.ADMIN_PASSWORD in m for m in lines)


def test_the_throttle_is_thread_safe():
    import threading

    th, _ = _throttle(client_failures=10_000, global_failures=10_000)
    def hammer():
        for _ in range(200):
            th.attempt("x", lambda: False)
    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(th._clients["x"].failures) == 1600


# ------------------------------------------------------------------ through the app
@pytest.fixture()
def fx(tmp_path_factory, tmp_path):
    return F.fresh_copy(F.template(tmp_path_factory), tmp_path / "db")


@pytest.fixture()
def fresh_throttle(monkeypatch):
    th = auth.SignInThrottle()  # the app's defaults: 5 failures per client, 30 s first lockout
    monkeypatch.setattr(auth, "THROTTLE", th)
    return th


def _sign_in(at, password):
    at.text_input(key="cfv_password").input(password)
    next(b for b in at.button if b.label == "Sign in").click().run()
    return [e.value for e in at.error]


@pytest.mark.slow
def test_the_app_locks_out_after_five_wrong_passwords_even_for_the_right_one(fx, monkeypatch, fresh_throttle,
                                                                              caplog):
    at = F.app_test(fx, monkeypatch)
    at.run()
    with caplog.at_level(logging.WARNING, logger="cfviewer.auth"):
        for _ in range(4):
            assert _sign_in(at, "not the password") == [auth.WRONG_PASSWORD_MESSAGE]
        errors = _sign_in(at, "not the password")
        assert len(errors) == 1 and "Too many failed sign-in attempts" in errors[0] and "30 seconds" in errors[0]
        errors = _sign_in(at, F.ADMIN_PASSWORD)  # right, but locked out
    assert len(errors) == 1 and "Try again in" in errors[0] and "right password is refused" in errors[0]
    assert not any(b.label == "Sign out" for b in at.button) and at.text_input(key="cfv_password")
    assert sum("sign-in failed" in r.getMessage() for r in caplog.records) == 5
    assert not any(F.ADMIN_PASSWORD in r.getMessage() for r in caplog.records)
    fresh_throttle.clock = lambda: __import__("time").monotonic() + 31  # the lockout is over
    assert _sign_in(at, F.ADMIN_PASSWORD) == []
    assert any(b.label == "Sign out" for b in at.button)


def test_visitors_get_the_empty_state_without_server_paths(tmp_path, monkeypatch):
    from cfviewer.ui import context

    monkeypatch.setenv(context.ENV_STUDY_DIR, str(tmp_path))
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    ctx = context.app_context()
    assert str(tmp_path) in ctx.empty_state_message()  # the researcher's page says where
    guest = ctx.empty_state_message(show_path=False)
    assert str(tmp_path) not in guest and "No study database yet" in guest
