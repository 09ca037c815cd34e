"""An attacker's review of redaction (issue 10 §2): secrets in the shapes real outputs give them.

Each case is what a permitted command can print: the end of a key without its
beginning (``tail``, output cut at the front), a key inside JSON, a PuTTY key,
``.pgpass`` lines, HTTP Basic credentials in an access log. Ordinary text of
the same shape must stay as it is.
"""

from __future__ import annotations

import pytest

from squads.textsafety.redact import redact

BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7q1w2e3r4t5y6"
BODY2 = "q1w2e3r4t5y6u7i8o9p0aAbBcCdDeEfFgGhHiIjJkKlLmMnNoOpPqQ=="
PUTTY = (
    "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-2026\nPublic-Lines: 2\n"
    "AAAAC3NzaC1lZDI1NTE5AAAAIBHnFq\nW9nS0yNVpb\nPrivate-Lines: 1\nAAAAIGBh0DQ1bXxkKq7lJvE1uKq1Z2w3\n"
    "Private-MAC: 8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b\n"
)


@pytest.mark.parametrize("text", [
    f"{BODY}\n{BODY2}\n-----END PRIVATE KEY-----\n",  # tail -n 3 key.pem
    f"==> /etc/ssl/x.pem <==\n{BODY2}\r\n-----END EC PRIVATE KEY-----\r\n",  # tail -v, CRLF
    f'{{"key": "{BODY}\\n{BODY2}\\n-----END RSA PRIVATE KEY-----\\n", "x": 1}}',  # JSON, escaped newlines
    f"Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0011\n\n{BODY}\n-----END RSA PRIVATE KEY-----",
    f"{BODY2}\n-----END OPENSSH PRIVATE KEY-----",
    f"{BODY2}\n-----END PGP PRIVATE KEY BLOCK-----",
])
def test_the_end_of_a_private_key_without_its_beginning_is_redacted(text: str) -> None:
    out, kinds = redact(text)
    assert "private_key" in kinds
    assert BODY2 not in out and BODY not in out and "q1w2e3r4" not in out


def test_a_key_tail_keeps_the_text_around_it() -> None:
    out, _ = redact(f"==> key.pem <==\n{BODY2}\n-----END PRIVATE KEY-----\nnext line\n")
    assert out == "==> key.pem <==\n[REDACTED:private_key]\nnext line\n"
    out, _ = redact(f'{{"k": "{BODY2}\\n-----END PRIVATE KEY-----\\n", "x": 1}}')
    assert out == '{"k": "[REDACTED:private_key]\\n", "x": 1}'


def test_a_putty_key_loses_its_private_lines_and_keeps_its_public_part() -> None:
    out, kinds = redact(PUTTY + "after\n")
    assert kinds == ["private_key"]
    assert "AAAAIGBh0DQ1bXxkKq7lJvE1uKq1Z2w3" not in out
    assert out.startswith("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-2026\n"
                          "Public-Lines: 2\nAAAAC3NzaC1lZDI1NTE5AAAAIBHnFq\nW9nS0yNVpb\n[REDACTED:private_key]")
    assert out.endswith("\nafter\n")
    cut = PUTTY.split("Private-MAC")[0]  # output cut before the MAC
    assert "AAAAIGBh0DQ1bXxkKq7lJvE1uKq1Z2w3" not in redact(cut)[0]
    tail = "AAAAIGBh0DQ1bXxkKq7lJvE1uKq1Z2w3\nPrivate-MAC: 8a7b6c5d4e3f\n"  # tail -n 2 key.ppk
    assert redact(tail)[0] == "[REDACTED:private_key]\n"


def test_pgpass_lines_lose_their_passwords() -> None:
    text = "localhost:5432:*:app:S3cr3tPass\n*:*:*:replicator:hunter2hunter2\n/run/postgresql:5432:app:app:p\\:w d\n"
    out, kinds = redact(text)
    assert out == ("localhost:5432:*:app:[REDACTED:password_assignment]\n"
                   "*:*:*:replicator:[REDACTED:password_assignment]\n"
                   "/run/postgresql:5432:app:app:[REDACTED:password_assignment]\n")
    assert kinds == ["password_assignment"] * 3


def test_basic_credentials_in_an_access_log_are_redacted() -> None:
    line = '10.0.0.1 - - [01/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 401 12 "-" "curl/8" "Basic YWRtaW46aHVudGVyMg=="\n'
    out, kinds = redact(line)
    assert "YWRtaW46aHVudGVyMg" not in out and kinds == ["bearer_token"]
    assert out.endswith('"Basic [REDACTED:bearer_token]"\n')


@pytest.mark.parametrize("text", [
    "-----END CERTIFICATE-----\n",
    "-----END PRIVATE KEY-----\n",  # a marker with no key before it (documentation, a grep)
    "The rotation finished at 10:20:30 on db-1:5432 for user app.\n",
    "root:x:0:0:root:/root:/bin/bash\nsudo:x:27:alice\n",
    "Basic authentication is configured; basic information follows.\nBasic QWxhZGRpbg\n",  # no user:password inside
    "Private-Lines are described in the PuTTY manual.\n",
    "12:00:00:01:02\n",  # a colon-separated value that is no .pgpass line (no port field)
])
def test_ordinary_text_of_the_same_shapes_is_left_alone(text: str) -> None:
    assert redact(text) == (text, [])


@pytest.mark.parametrize(("text", "kinds"), [
    ("QUFBQUFBQUFBQUFBQUFBQQ==\n" * 40_000 + "-----END PRIVATE KEY-----\n", ["private_key"]),
    ("QUFBQUFBQUFBQUFBQUFBQQ==\\n" * 40_000 + "-----END PRIVATE KEY-----", ["private_key"]),
    ("-----END PRIVATE KEY-----\n" * 40_000, []),
    ("A" * 1_000_000 + "!\n-----END PRIVATE KEY-----", []),
    ("Private-Lines: 1\n" * 60_000, ["private_key"]),
    ("Private-MAC: ab\n" * 60_000, []),
    ("Basic " + "A" * 1_000_000, []),
    ("a:1:b:c:" + "\\" * 1_000_000, ["password_assignment"]),
])
def test_adversarial_megabytes(text: str, kinds: list[str]) -> None:
    """Each walk back from a key's end stops at the previous one, so these finish (speed is in benchmarks)."""
    assert redact(text)[1] == kinds
