"""Secret redaction: each kind is replaced, the text around it is kept, ordinary output is untouched."""

from __future__ import annotations

from collections import namedtuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from squads.textsafety.redact import KINDS, Redaction, find_secrets, redact, redact_value

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQifQ.c2lnbmF0dXJlLXBhcnQtMTIz"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
GCP_API_KEY = "AIzaSyD" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6"  # 39 characters
GH_TOKEN = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
SLACK_TOKEN = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
PEM_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA3Tz2mr7SZiAMfQyuvBjM9Oi1PZ2sT6yR0tZP0tV3mN1p0j5U\n"
    "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4n5m6==\n"
    "-----END RSA PRIVATE KEY-----"
)
OPENSSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBhc2RmYXNkZmFzZGZhc2RmYXNkZmFzZGZhc2RmYXNkZgAAAJg=\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
CERTIFICATE = (
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTES\n"
    "MBAGA1UEChMJQmFsdGltb3JlMRMwEQYDVQQLEwpDeWJlclRydXN0MSIwIAYDVQQD\n"
    "-----END CERTIFICATE-----"
)

KUBECTL_DESCRIBE = """\
Name:             web-7d4b9c8f6-x2x9k
Namespace:        default
Priority:         0
Service Account:  default
Node:             node-1/10.0.0.12
Start Time:       Tue, 26 Nov 2024 20:24:01 +0000
Labels:           app=web
                  pod-template-hash=7d4b9c8f6
Annotations:      kubectl.kubernetes.io/restartedAt: 2024-11-26T20:20:00Z
Status:           Running
IP:               10.244.1.17
Controlled By:  ReplicaSet/web-7d4b9c8f6
Containers:
  web:
    Container ID:   containerd://4f1c2a9e8b7d6c5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7a6f5e4d3c2b1a
    Image:          nginx:1.25
    Image ID:       docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31
    Port:           8080/TCP
    Host Port:      0/TCP
    State:          Running
      Started:      Tue, 26 Nov 2024 20:24:05 +0000
    Ready:          True
    Restart Count:  0
    Liveness:       http-get http://:8080/healthz delay=10s timeout=1s period=10s #success=1 #failure=3
    Environment:
      DB_HOST:      db.default.svc:5432
      DB_PASSWORD:  <set to the key 'password' in secret 'db-credentials'>  Optional: false
    Mounts:
      /var/run/secrets/kubernetes.io/serviceaccount from kube-api-access-9kq2z (ro)
Conditions:
  Type              Status
  Ready             True
Volumes:
  kube-api-access-9kq2z:
    Type:                    Projected (a volume that contains injected data from multiple sources)
    TokenExpirationSeconds:  3607
    ConfigMapName:           kube-root-ca.crt
    ConfigMapOptional:       <nil>
    DownwardAPI:             true
  tls:
    Type:        Secret (a volume populated by a Secret)
    SecretName:  web-tls
    Optional:    false
QoS Class:                   BestEffort
Node-Selectors:              <none>
Tolerations:                 node.kubernetes.io/not-ready:NoExecute op=Exists for 300s
Events:
  Type     Reason     Age   From               Message
  ----     ------     ----  ----               -------
  Normal   Scheduled  2m    default-scheduler  Successfully assigned default/web-7d4b9c8f6-x2x9k to node-1
  Warning  Unhealthy  1m    kubelet            Readiness probe failed: Get "http://10.244.1.17:8080/ready": dial tcp 10.244.1.17:8080: connect: connection refused
"""

SSHD_T = """\
port 22
permitrootlogin without-password
pubkeyauthentication yes
passwordauthentication yes
permitemptypasswords no
kbdinteractiveauthentication no
authorizedkeysfile .ssh/authorized_keys .ssh/authorized_keys2
"""

# Password hashes as the review found them in `tail -n 3 /etc/shadow` output, and others.
YESCRYPT = "$y$j9T$Xd0.zmcGf8hCk1pF2U7sA1$WbQ0xJ3mBIRl2K0vYt5r9k4FqX7yZ8aB1cD2eF3gH4."
SHA512 = "$6$rounds=5000$saltsalt$Jf8H2l0K3pQ9rT5vW7xY1zA3bC5dE7fG9hI1jK3lM5nO7pQ9rS1tU3vW5xY7zA9bC1dE3fG5hI7jK9lM1nO3p"
BCRYPT = "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW"
ARGON2 = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
ENCRYPTED_KEY = (
    "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIFHDBOBgkqhkiG9w0BBQ0wQTApBgkqhkiG9w0BBQwwHAQI\n"
    "-----END ENCRYPTED PRIVATE KEY-----"
)

UNCHANGED = [
    # shadow and passwd lines without a hash (locked, no password, shadowed)
    "daemon:*:19700:0:99999:7:::\npostgres:!:19700::::::\neve:*LK*:19000:0:99999:7:::\nfrank:!!:19000::::::",
    "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
    "sudo:x:27:alice,bob",
    # ordinary dollars: shell, awk, prices, prompts
    "price $5$ and awk '{print $1$2}' HOME=$HOME/bin $6 $y$ echo \"$1$foo\" PS1='\\u@\\h:\\w\\$ '",
    "cost: $5.00, $6,000 and $2b per unit; regex ^[a-z]+$",
    "Nov 26 20:24:01 web-1 sshd[4242]: Failed password for root from 1.2.3.4 port 51234 ssh2",
    "Nov 26 20:24:02 web-1 sshd[4243]: Failed password for invalid user admin from 1.2.3.4 port 51235 ssh2",
    "passwordauthentication yes",
    "permitemptypasswords no",
    SSHD_T,
    CERTIFICATE,
    "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----",
    "psql -h db.internal -p 5432",
    "listening on host:5432",
    "redis at 10.0.0.5:6379, http://example.com:8080/path, [::1]:22",
    "postgresql://db.internal:5432/app",
    "ssh://git@github.com:22/org/repo.git and git@github.com:org/repo.git",
    KUBECTL_DESCRIBE,
    "passwd:         files systemd\ngroup:          files systemd\nshadow:         files",
    "/etc/passwd:root:x:0:0:root:/root:/bin/bash",
    "PWD=/root\nOLDPWD=/home/ops\nSHELL=/bin/bash\nHOME=/root",
    "Password for 'https://github.com': ",
    "[sudo] password for alice: ",
    "Last password change                                    : Nov 26, 2024\nPassword expires : never",
    "the API needs a bearer token in the header",
    "WWW-Authenticate: Bearer realm=\"api\", error=\"invalid_token\"",
    "Mountable secrets:   default-token-abcde\nTokens:              default-token-abcde",
    "max_tokens: 4096\ntoken_type: refresh",
    "enter password:\n",
    "password: \"\"",
    "git log --oneline\n3f2a1b9 rotate secrets (no values here)",
]


def assert_redacted(text: str, secret: str, kind: str) -> str:
    redacted, kinds = redact(text)
    assert secret not in redacted
    assert kinds == [kind]
    assert redacted == text.replace(secret, f"[REDACTED:{kind}]")
    return redacted


# ---------------------------------------------------------------- each kind


@pytest.mark.parametrize(
    ("text", "secret", "kind"),
    [
        # private_key
        (f"$ cat id_rsa\n{PEM_KEY}\n$ echo done", PEM_KEY, "private_key"),
        (f"key:\n{OPENSSH_KEY}\ntrailer", OPENSSH_KEY, "private_key"),
        (f"$ cat k.pem\n{ENCRYPTED_KEY}\n", ENCRYPTED_KEY, "private_key"),
        # password_hash: shadow lines (the review's `tail -n 3 /etc/shadow`), passwd, htpasswd, LDAP, PHC
        (f"root:{YESCRYPT}:19700:0:99999:7:::\n", YESCRYPT, "password_hash"),
        (f"daemon:*:19700:0:99999:7:::\nalice:{SHA512}:19701:0:99999:7:::", SHA512, "password_hash"),
        ("bob:$5$saltsalt$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ:1:0:99999:7:::",
         "$5$saltsalt$abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQ", "password_hash"),
        ("carol:!$1$saltsalt$qwertyuiopasdfghjklzxc:19000:0:99999:7:::", "!$1$saltsalt$qwertyuiopasdfghjklzxc",
         "password_hash"),
        ("dave:abJnggxhB/yWI:19000:0:99999:7:::", "abJnggxhB/yWI", "password_hash"),  # DES crypt
        ("old:abJnggxhB/yWI:1001:1001:Old User,,,:/home/old:/bin/sh", "abJnggxhB/yWI", "password_hash"),
        (f"web {BCRYPT} end", BCRYPT, "password_hash"),
        (f"admin:{BCRYPT}\n", BCRYPT, "password_hash"),
        ("admin:$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/", "password_hash"),
        (f"hash: {ARGON2}", ARGON2, "password_hash"),
        ("userPassword: {SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "password_hash"),
        ("$7$CU..../....2PA/eT7hDi0Ez2Zk$Z8WZ7cj0yT8S1VcIZeqBQ0kxs4YySzBCfW5Kxe6E3nA:",
         "$7$CU..../....2PA/eT7hDi0Ez2Zk$Z8WZ7cj0yT8S1VcIZeqBQ0kxs4YySzBCfW5Kxe6E3nA", "password_hash"),
        ("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----",
         "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "private_key"),
        ("$ head -c 80 key.pem\n-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC",
         "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "private_key"),
        ('{"type": "service_account", "private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\nkqhkiG9w0==\\n'
         '-----END PRIVATE KEY-----\\n", "client_email": "x@p.iam.gserviceaccount.com"}',
         "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\nkqhkiG9w0==\\n-----END PRIVATE KEY-----\\n", "private_key"),
        ('{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\nkqhkiG9w0==\\n-----END PRIVATE KEY-----"}',
         "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBg\\nkqhkiG9w0==\\n-----END PRIVATE KEY-----", "private_key"),
        # bearer_token
        (f"> Authorization: Bearer {JWT}\n> Accept: */*", JWT, "bearer_token"),
        ("> Authorization: Bearer 2f9c8e7d6b5a4c3e2f1a0b9c8d7e6f5a\n", "2f9c8e7d6b5a4c3e2f1a0b9c8d7e6f5a", "bearer_token"),
        ("curl -H 'authorization: bearer s.Xy12Ab34Cd56Ef78' https://vault:8200", "s.Xy12Ab34Cd56Ef78", "bearer_token"),
        ("export TOKEN_HEADER='bearer abcdef0123456789'", "abcdef0123456789", "bearer_token"),
        ("> Authorization: Basic YWRtaW46aHVudGVy\n", "YWRtaW46aHVudGVy", "bearer_token"),
        (f"users:\n- name: admin\n  user:\n    token: {JWT}\n", JWT, "bearer_token"),
        ("users:\n- name: kubelet\n  user:\n    token: abcdef.0123456789abcdef\n", "abcdef.0123456789abcdef",
         "bearer_token"),
        (f"Data\n====\nca.crt:     1099 bytes\nnamespace:  7 bytes\ntoken:      {JWT}\n", JWT, "bearer_token"),
        ("    client-certificate-data: LS0tQ0VSVA==\n    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0t\n",
         "LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0t", "bearer_token"),
        (f"id_token={JWT}&state=1", JWT, "bearer_token"),
        (f"the cookie was {JWT}; expired", JWT, "bearer_token"),
        ('{"access_token": "ya29.a0AfH6SMBx3kPq9ZtY", "expires_in": 3599}', "ya29.a0AfH6SMBx3kPq9ZtY", "bearer_token"),
        ('"SessionToken": "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ",',
         "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ", "bearer_token"),
        # url_password
        ("DATABASE_URL=postgresql://app:s3cr3t-Pa55@db:5432/x", "s3cr3t-Pa55", "url_password"),
        ("connecting to redis://:hunter2@cache.internal:6379/0 ...", "hunter2", "url_password"),
        ("remote: https://deploy:p@ss:w0rd@git.example.com/org/repo.git", "p@ss:w0rd", "url_password"),
        ("amqp://guest:g0est@rabbit/", "g0est", "url_password"),
        # aws
        (f"aws_access_key_id = {AWS_KEY}\nregion = eu-west-1", AWS_KEY, "aws_access_key"),
        ("AccessKeyId: ASIAY34FZKBOKMUTVV7A (temporary)", "ASIAY34FZKBOKMUTVV7A", "aws_access_key"),
        (f"[default]\naws_secret_access_key = {AWS_SECRET}\n", AWS_SECRET, "aws_secret_key"),
        (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET, "aws_secret_key"),
        (f'"SecretAccessKey": "{AWS_SECRET}",', AWS_SECRET, "aws_secret_key"),
        # gcp
        (f"maps?key={GCP_API_KEY}&q=x", GCP_API_KEY, "gcp_key"),
        # github / slack
        (f"GITHUB_TOKEN={GH_TOKEN}", GH_TOKEN, "github_token"),
        (f"git clone https://{GH_TOKEN}@github.com/o/r", GH_TOKEN, "github_token"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz012345 used",
         "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz012345", "github_token"),
        (f"slack: {SLACK_TOKEN} posted", SLACK_TOKEN, "slack_token"),
        # password_assignment
        ("DB_PASSWORD=hunter2 ./run.sh", "hunter2", "password_assignment"),
        ("  password: Zx9!kq#2\n  user: app", "Zx9!kq#2", "password_assignment"),
        ("PASSWORD : 'correct horse battery'", "correct horse battery", "password_assignment"),
        ('{"user": "app", "password": "p a s s"}', "p a s s", "password_assignment"),
        ("mysqld --user=mysql --password=t0p;echo", "t0p", "password_assignment"),
        ("GET /login?user=bob&passwd=letmein&next=/ HTTP/1.1", "letmein", "password_assignment"),
        ("MYSQL_PWD=abc123 mysql -u root", "abc123", "password_assignment"),
        ("client_secret=8f7e6d5c4b3a", "8f7e6d5c4b3a", "password_assignment"),
        ("  clientSecret: shh-its-secret", "shh-its-secret", "password_assignment"),
        ("API_KEY=sk_live_abcdef", "sk_live_abcdef", "password_assignment"),
        ("x-apikey: 0a1b2c3d", "0a1b2c3d", "password_assignment"),
        ("PGPASSWORD=pgpass psql -h db", "pgpass", "password_assignment"),
        ("userPassword:: e1NTSEF9cXdlcnR5", "e1NTSEF9cXdlcnR5", "password_assignment"),
        ("SECRET_KEY=django-insecure-x1y2z3\nDEBUG=False", "django-insecure-x1y2z3", "password_assignment"),
        ("SECRET_KEY_BASE=0a1b2c3d4e5f", "0a1b2c3d4e5f", "password_assignment"),
        ("[Interface]\nPrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=\nListenPort = 51820",
         "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=", "password_assignment"),
        ("env:\n- name: DB_PASSWORD\n  value: hunter2\n- name: LOG_LEVEL\n  value: info\n", "hunter2",
         "password_assignment"),
        ('"env":[{"name":"API_TOKEN","value":"t0ken-value"},{"name":"X","value":"y"}]', "t0ken-value",
         "password_assignment"),
    ],
)
def test_each_kind_is_redacted_and_the_rest_is_intact(text: str, secret: str, kind: str) -> None:
    assert kind in KINDS
    assert_redacted(text, secret, kind)


def test_spans_point_into_the_original_text() -> None:
    text = f"user=app password=hunter2 key={AWS_KEY} url=postgresql://app:pw1@db/x"
    found = find_secrets(text)
    assert [(f.kind, text[f.start:f.end]) for f in found] == [
        ("password_assignment", "hunter2"), ("aws_access_key", AWS_KEY), ("url_password", "pw1"),
    ]
    assert all(isinstance(f, Redaction) for f in found)
    assert [f.start for f in found] == sorted(f.start for f in found)
    assert all(a.end <= b.start for a, b in zip(found, found[1:], strict=False))


def test_bearer_keeps_the_word_and_url_keeps_scheme_user_host() -> None:
    assert redact(f"Authorization: Bearer {JWT}")[0] == "Authorization: Bearer [REDACTED:bearer_token]"
    assert redact("postgresql://app:s3cret@db:5432/x")[0] == "postgresql://app:[REDACTED:url_password]@db:5432/x"


def test_several_secrets_in_one_text_in_order() -> None:
    text = (
        f"export AWS_ACCESS_KEY_ID={AWS_KEY}\nexport AWS_SECRET_ACCESS_KEY={AWS_SECRET}\n"
        f"export DB_PASSWORD=hunter2\n{PEM_KEY}\ncurl -H 'Authorization: Bearer {JWT}' https://api\n"
    )
    redacted, kinds = redact(text)
    assert kinds == ["aws_access_key", "aws_secret_key", "password_assignment", "private_key", "bearer_token"]
    for secret in (AWS_KEY, AWS_SECRET, "hunter2", "MIIEpAIBAAKCAQEA", JWT):
        assert secret not in redacted
    assert "export AWS_ACCESS_KEY_ID=[REDACTED:aws_access_key]\n" in redacted
    assert "curl -H 'Authorization: Bearer [REDACTED:bearer_token]' https://api\n" in redacted


def test_overlapping_matches_merge_into_one_span() -> None:
    # The JWT is found by the JWT rule, the `token:` rule and the `password:` rule at once.
    text = f"token: {JWT}\npassword: {GH_TOKEN}\nsecret: {PEM_KEY}\nend"
    redacted, kinds = redact(text)
    assert redacted == (
        "token: [REDACTED:bearer_token]\npassword: [REDACTED:github_token]\nsecret: [REDACTED:private_key]\nend"
    )
    assert kinds == ["bearer_token", "github_token", "private_key"]


def test_a_secret_glued_to_another_is_found_too() -> None:
    # The JWT rule wants a boundary before "eyJ"; the "-" of the PEM armour is not one, so the
    # JWT only shows once the key is replaced. The second pass finds it in the original text.
    text = f"{PEM_KEY}{JWT} tail"
    assert redact(text) == ("[REDACTED:private_key][REDACTED:bearer_token] tail", ["private_key", "bearer_token"])
    assert find_secrets(text) == [
        Redaction("private_key", 0, len(PEM_KEY)),
        Redaction("bearer_token", len(PEM_KEY), len(PEM_KEY) + len(JWT)),
    ]


def test_a_refused_value_is_not_retried_from_a_shorter_separator() -> None:
    assert redact("userPassword:: [REDACTED:password_assignment]") == (
        "userPassword:: [REDACTED:password_assignment]", [])


def test_unterminated_private_key_runs_to_end_of_text() -> None:
    text = "$ cat key\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\nQyNTUxOQ (truncated)"
    assert redact(text) == ("$ cat key\n[REDACTED:private_key]", ["private_key"])


def test_certificate_next_to_key_keeps_the_certificate() -> None:
    text = f"{CERTIFICATE}\n{PEM_KEY}\n{CERTIFICATE}"
    assert redact(text) == (f"{CERTIFICATE}\n[REDACTED:private_key]\n{CERTIFICATE}", ["private_key"])


# ---------------------------------------------------------------- left alone


@pytest.mark.parametrize("text", UNCHANGED)
def test_ordinary_output_is_unchanged(text: str) -> None:
    assert redact(text) == (text, [])
    assert find_secrets(text) == []


# ---------------------------------------------------------------- idempotence


SECRET_SNIPPETS = [
    PEM_KEY, OPENSSH_KEY, f"Authorization: Bearer {JWT}", f"token: {JWT}", JWT, AWS_KEY,
    f"aws_secret_access_key={AWS_SECRET}", GCP_API_KEY, GH_TOKEN, SLACK_TOKEN, "password=hunter2",
    "PASSWORD: 'a b c'", "postgresql://app:pw@db:5432/x", "https://u:p@ss@h/", "api_key: k3y", "secret=",
    "-----BEGIN PRIVATE KEY-----", "bearer ", "password", ":", "=", "@", "'", '"', "\n", " ", "://",
    "-----END PRIVATE KEY-----", "name: DB_PASSWORD\n  value: x", "[REDACTED:", "]", "\\",
    f"root:{YESCRYPT}:19700:0:99999:7:::", BCRYPT, "$6$", "$y$j9T$", ":19700:0:99999:7:::", "root:", "!",
]


@pytest.mark.parametrize("text", [*UNCHANGED, *SECRET_SNIPPETS])
def test_redact_is_idempotent_on_examples(text: str) -> None:
    once = redact(text)[0]
    assert redact(once)[0] == once


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(SECRET_SNIPPETS), st.text(max_size=12)), max_size=12))
def test_redact_is_idempotent(parts: list[str]) -> None:
    text = "".join(parts)
    once, _ = redact(text)
    assert redact(once)[0] == once


# Letters, digits, blanks and punctuation, but no ':', '=', '@' (no key/value, no URL
# credentials) and no upper case (no AKIA.../AIza.../PEM armour/eyJ...).
SAFE_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 \t\n.,;/_-()[]{}#%+*!?<>'\"\\"


@settings(max_examples=400)
@given(st.text(alphabet=SAFE_ALPHABET, max_size=300))
def test_text_without_secret_looking_substrings_is_unchanged(text: str) -> None:
    assert redact(text) == (text, [])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=SAFE_ALPHABET, max_size=40),
    st.sampled_from([(AWS_KEY, "aws_access_key"), (GH_TOKEN, "github_token"), (JWT, "bearer_token"),
                     (SLACK_TOKEN, "slack_token"), (GCP_API_KEY, "gcp_key"), (PEM_KEY, "private_key")]),
    st.text(alphabet=SAFE_ALPHABET, max_size=40),
)
def test_a_secret_between_safe_text_is_always_removed(before: str, secret_kind: tuple[str, str], after: str) -> None:
    secret, kind = secret_kind
    text = f"{before} {secret} {after}"
    redacted, kinds = redact(text)
    assert secret not in redacted
    assert kind in kinds
    assert redacted.startswith(before) and redacted.endswith(after)


# ---------------------------------------------------------------- redact_value


def test_redact_value_on_nested_structures() -> None:
    Point = namedtuple("Point", ["label", "n"])
    value = {
        "password=hunter2": "password=hunter2",
        "argv": ["psql", "postgresql://app:pw@db/x", 5432, None],
        "nested": {"env": ("DB_PASSWORD=hunter2", True, 1.5), "point": Point(f"token: {JWT}", 3)},
        "bytes": b"password=hunter2",
        "count": 3,
    }
    result = redact_value(value)
    assert result == {
        "password=hunter2": "password=[REDACTED:password_assignment]",
        "argv": ["psql", "postgresql://app:[REDACTED:url_password]@db/x", 5432, None],
        "nested": {
            "env": ("DB_PASSWORD=[REDACTED:password_assignment]", True, 1.5),
            "point": Point("token: [REDACTED:bearer_token]", 3),
        },
        "bytes": b"password=hunter2",
        "count": 3,
    }
    assert isinstance(result, dict)
    assert isinstance(result["nested"]["env"], tuple)
    assert isinstance(result["nested"]["point"], Point)
    # the input is not modified
    assert value["argv"] == ["psql", "postgresql://app:pw@db/x", 5432, None]


def test_redact_value_scalars() -> None:
    assert redact_value("x password=1 y") == "x password=[REDACTED:password_assignment] y"
    assert redact_value(7) == 7
    assert redact_value(None) is None
    assert redact_value([]) == []


# ---------------------------------------------------------------- speed


MB = 1_000_000
ADVERSARIAL = {
    "plain": ("kubectl describe pod web-1 -n default\n" * 30000),
    "letters": "a" * MB,
    "jwt_prefixes": "eyJ" * (MB // 3),
    "jwt_no_dots": "eyJ" + "a" * MB,
    "slack_dashes": "xoxb-" * (MB // 5),
    "github_runs": ("ghp_" + "a" * 30 + "_") * (MB // 35),
    "url_schemes": "a://b:" * (MB // 6),
    "url_no_at": "http://u:" + "p" * MB,
    "url_many_at": "http://u:" + "p@" * (MB // 2),
    "pem_begins": "-----BEGIN PRIVATE KEY-----" * (MB // 27),
    "hash_dollars": "$" * MB,
    "hash_ids": "$6$" * (MB // 3),
    "hash_params": "$argon2id$" + "v=19$" * (MB // 5),
    "hash_long": "$6$salt$" + "a" * MB,
    "shadow_lines": "root:x:0:0:root:/root:/bin/bash\n" * (MB // 32),
    "shadow_colons": "u:" + "h:" * (MB // 2),
    "pem_no_private": "-----BEGIN " + "A" * MB,
    "dashes": "-" * MB,
    "password_values": "password=x," * (MB // 11),
    "password_dq": 'password="' + "x" * MB,
    "password_mixed_quotes": 'password="x ' + "password='x " * (MB // 12),
    "password_spaces": "password:" + " " * MB,
    "bearer_spaces": "Bearer" + " " * MB + "[",
    "bearer_words": "bearer " * (MB // 7),
    "token_words": "token: token " * (MB // 13),
    "pwd_paths": "pwd=/x," * (MB // 7),
    "env_names": "name: " + "password" * (MB // 8),
    "json_env": '"name":"PASSWORD","value":"' + "\\x" * (MB // 2),
    "colons": ":" * MB,
    "equals": "=" * MB,
    "base64": ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkw" * (MB // 44)),
    "secrets_everywhere": (f"password=hunter2 {AWS_KEY} {JWT} http://u:p@h/ " * (MB // 150)),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_one_megabyte_adversarial_input_completes_and_is_stable(name: str) -> None:
    # A backtracking regex would not finish on these inputs; speed itself is not asserted here.
    text = ADVERSARIAL[name]
    assert len(text) >= MB * 0.9
    redacted, _kinds = redact(text)
    assert redact(redacted)[0] == redacted


def test_short_values_are_redacted_every_time_they_repeat() -> None:
    # Short event fields are remembered (they repeat in every transcript event): a repeat of a secret
    # must come back redacted too, and a long value is searched as before.
    event = {"argv": ["aws", "--key", AWS_KEY], "node": "web-1", "output": "x" * 300 + " " + AWS_KEY}
    for _ in range(3):
        clean = redact_value(event)
        assert isinstance(clean, dict)
        assert AWS_KEY not in repr(clean) and clean["node"] == "web-1"
        assert clean["argv"][:2] == ["aws", "--key"] and clean["argv"][2].startswith("[REDACTED")
