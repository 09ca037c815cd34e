"""An attacker's review of sign-in (issue 10 §5): the password page's current password is throttled like a sign-in.

With a stolen session cookie, the change-password form would otherwise let anyone
guess the account's password (to reuse elsewhere) without limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from squads.settings.env import Settings
from tests.web import PASSWORD, as_user, site_with_users, web_client
from squads.accounts.models import Role


def test_wrong_current_passwords_are_throttled_and_a_right_one_resets_nothing_for_a_guesser(tmp_path: Path) -> None:
    context = site_with_users(tmp_path, {"eddie": Role.ENGINEER})
    context.settings = Settings(**{**context.settings.model_dump(), "signin_limit_account_address": 3})
    with web_client(context) as client:
        csrf = as_user(client, "eddie")
        codes = [client.post("/password", data={"csrf_token": csrf, "current": f"guess number {i}",
                                                "new": "another long passphrase"}).status_code for i in range(4)]
        assert codes == [400, 400, 400, 429]
        # even the right password waits now: the guesser cannot tell a right guess from a wrong one
        right = client.post("/password", data={"csrf_token": csrf, "current": PASSWORD, "new": "another long passphrase"},
                            follow_redirects=False)
        assert right.status_code == 429 and "too many failed sign-ins" in right.text.lower()


@pytest.mark.parametrize("value", ["0.0.0.0/0", "::/0", "127.0.0.1,0.0.0.0/0"])
def test_trusting_every_address_as_a_proxy_is_refused(value: str) -> None:
    """With every hop trusted, uvicorn believes the first X-Forwarded-For entry, which the client chose."""
    with pytest.raises(ValueError, match="trusts every address"):
        Settings(trusted_proxies=value)  # type: ignore[arg-type]
