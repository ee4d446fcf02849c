"""Who may contribute drawings: the modes of `serve.feedback`, the token, loopback-only by default."""

from __future__ import annotations

from http import HTTPStatus

import pytest

from digitops.errors import DigitopsError
from digitops.serve.contributors import TOKEN_ENV, ContributionPolicy, NotAllowedError

TOKEN = "s3cret-token-for-tests"


def _refused(policy: ContributionPolicy, authorization: str | None, host: str) -> HTTPStatus:
    with pytest.raises(NotAllowedError) as refusal:
        policy.contributor(authorization, host)
    return refusal.value.status


def test_auto_without_a_token_takes_loopback_clients_only():
    policy = ContributionPolicy.from_setting("auto", environ={})
    assert policy.mode == "loopback"
    assert policy.contributor(None, "127.0.0.1") == "127.0.0.1"
    assert policy.contributor(None, "::1") == "::1"
    assert _refused(policy, None, "10.0.0.5") == HTTPStatus.FORBIDDEN
    assert _refused(policy, None, "100.64.1.1") == HTTPStatus.FORBIDDEN
    assert _refused(policy, None, None) == HTTPStatus.FORBIDDEN


@pytest.mark.parametrize("setting", ["auto", "token"])
def test_with_a_token_only_its_bearer_may_contribute(setting):
    policy = ContributionPolicy.from_setting(setting, environ={TOKEN_ENV: TOKEN})
    assert policy.mode == "token"
    assert policy.contributor(f"Bearer {TOKEN}", "10.0.0.5") == "10.0.0.5"
    assert policy.contributor(f"bearer {TOKEN}", "10.0.0.5") == "10.0.0.5"
    for wrong in (None, "", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer ", f"Bearer {TOKEN[:-1]}"):
        assert _refused(policy, wrong, "127.0.0.1") == HTTPStatus.UNAUTHORIZED  # loopback needs it too


def test_open_takes_anyone_and_off_no_one():
    assert (
        ContributionPolicy.from_setting("open", environ={}).contributor(None, "203.0.113.7") == "203.0.113.7"
    )
    off = ContributionPolicy.from_setting("off", environ={TOKEN_ENV: TOKEN})
    assert _refused(off, f"Bearer {TOKEN}", "127.0.0.1") == HTTPStatus.FORBIDDEN


def test_token_mode_without_a_token_and_an_unknown_mode_are_configuration_errors():
    with pytest.raises(DigitopsError, match=f"{TOKEN_ENV} is not set"):
        ContributionPolicy.from_setting("token", environ={TOKEN_ENV: "  "})
    with pytest.raises(DigitopsError, match="'everyone' is not one of auto, token, open, off"):
        ContributionPolicy.from_setting("everyone", environ={})
