"""cfviewer.ui.auth and cfviewer.ui.context."""

from __future__ import annotations

import pytest

from cfviewer.ui import auth, context


def test_password_from_env_first_then_secrets(monkeypatch):
    monkeypatch.delenv(auth.ENV_ADMIN_PASSWORD, raising=False)
    assert auth.configured_password(None) is None
    assert auth.configured_password({"admin_password": "from-secrets"}) == "from-secrets"
    monkeypatch.setenv(auth.ENV_ADMIN_PASSWORD, "from-the-env")
    assert auth.configured_password({"admin_password": "from-secrets"}) == "from-the-env"


def test_secrets_that_raise_mean_no_password(monkeypatch):
    monkeypatch.delenv(auth.ENV_ADMIN_PASSWORD, raising=False)

    class Broken:
        def get(self, key):
            raise FileNotFoundError("no secrets.toml")

    assert auth.configured_password(Broken()) is None


def test_password_check():
    good = "a long enough password"
    assert auth.check_password(good, good)
    assert not auth.check_password(good + " ", good)
    assert not auth.check_password("", good) and not auth.check_password(None, good)
    assert not auth.check_password("short", "short")  # unusable configured password: refuse all
    assert auth.password_problem(None) == auth.NO_PASSWORD_MESSAGE
    assert "shorter than" in auth.password_problem("short")
    assert auth.password_problem(good) is None


@pytest.mark.parametrize("params,expected", [
    ({}, None), ({"token": ""}, None), ({"token": "  abc "}, "abc"), ({"token": ["abc"]}, "abc"),
    ({"token": []}, None),
])
def test_token_from_query(params, expected):
    assert auth.token_from_query(params) == expected


@pytest.mark.parametrize("values", [["x", "y"], ["x", "x"], ["", "y"], ["x", "", "y"]])
def test_a_link_with_two_or_more_tokens_is_refused(values):
    # Streamlit's st.query_params["token"] is the last value: `?token=A&token=B` must not
    # sign the visitor in as B (nor as A). Exactly one token parameter is accepted.
    with pytest.raises(auth.AmbiguousTokenError, match=f"{len(values)} 'token' parameters"):
        auth.token_from_query({"token": values})


def test_token_from_streamlit_query_params_counts_every_value():
    from streamlit.runtime.state.query_params import QueryParams

    qp = QueryParams()
    qp.populate_from_query_string("token=first&token=second")
    assert qp["token"] == "second" and auth.token_values(qp) == ["first", "second"]
    with pytest.raises(auth.AmbiguousTokenError):
        auth.token_from_query(qp)
    qp.populate_from_query_string("token=%20only%20&other=1")
    assert auth.token_from_query(qp) == "only"


def test_context_defaults_to_the_demo_and_honours_env(monkeypatch, tmp_path):
    from cfviewer import paths

    monkeypatch.delenv(context.ENV_STUDY_DIR, raising=False)
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    monkeypatch.delenv(context.ENV_STUDY_NAME, raising=False)
    ctx = context.app_context()
    assert ctx.is_demo and ctx.study_dir == paths.demo_dir().resolve()
    assert ctx.db_url.endswith("study.db")
    monkeypatch.setenv(context.ENV_STUDY_DIR, str(tmp_path))
    monkeypatch.setenv(context.ENV_STUDY_NAME, "pilot")
    ctx = context.app_context()
    assert not ctx.is_demo and ctx.study_dir == tmp_path.resolve() and ctx.study_name == "pilot"
    assert ctx.sqlite_path == tmp_path.resolve() / "study.db" and not ctx.database_exists()
    assert "cfviewer study create" in ctx.empty_state_message()
    monkeypatch.setenv("CFVIEWER_DB_URL", "postgresql+psycopg://u@h/db")
    ctx = context.app_context()
    assert ctx.sqlite_path is None and ctx.database_exists()


def test_demo_empty_state_says_to_run_cfviewer_demo(monkeypatch, tmp_path):
    monkeypatch.delenv(context.ENV_STUDY_DIR, raising=False)
    monkeypatch.delenv("CFVIEWER_DB_URL", raising=False)
    monkeypatch.setenv("CFVIEWER_STUDY_DATA", str(tmp_path))
    ctx = context.app_context()
    assert not ctx.database_exists() and "`cfviewer demo`" in ctx.empty_state_message()
