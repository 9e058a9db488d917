"""No credentials in the repository or the template: every tracked file (`git ls-files`) is
scanned for AWS access key ids, private key blocks, AWS secret keys and passwords written into
URLs or `password=` settings. A test fixture that needs a fake password is allowed by name,
with the reason, below; anything else fails the check."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest

from conftest import ROOT

# A key id is AKIA (long-lived) or ASIA (temporary) and 16 more upper-case letters or digits.
ACCESS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY( BLOCK)?-----")
SECRET_ACCESS_KEY = re.compile(
    r"(?i)aws_?secret_?(?:access_?)?key[\"']?\s*[:=]\s*[\"']?(?P<secret>[A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])")
# A password in a URL's user info: scheme, '://', user (maybe empty), ':', password, '@'.
URL_PASSWORD = re.compile(r"[a-z][a-z0-9+.-]*://[^\s/:@'\"`]*:(?P<secret>[^\s@/'\"`]+)@")
# 'password', '=' and a value, in a connection string or a query (not code that reads one).
PASSWORD_SETTING = re.compile(r"(?i)\b(?:password|passwd|pwd)=(?P<secret>[^\s&;'\"`,)]+)")

# Values that name or hide a secret rather than being one.
PLACEHOLDER = re.compile(r"^(\*+|<[^>]*>|\$\{[^}]*\}|\{[^}]*\}|\$[A-Z_]+|\.\.\.)$")

# Fake passwords that tests need, by file, with the reason. Keep this short.
ALLOWED = {
    ("shared/src/adapters/cache/config.rs", "s3cret-token"):
        "unit test: a password in REDIS_URL never shows in Debug or in errors",
    ("shared/src/adapters/postgres/config.rs", "hunter2"):
        "unit test: a password in DATABASE_URL never shows in Debug",
    ("shared/src/adapters/postgres/connect.rs", "hunter2"):
        "unit test: a URL the driver rejects is reported without its password",
    ("functions/product-api/src/app.rs", "hunter2"):
        "unit test: a cold start that fails never shows the database password",
    ("functions/schema-migrate/src/migrator.rs", "hunter2"):
        "unit test: the migrator's Debug never shows the database URL",
    ("shared/src/redact.rs", "hunter2"):
        "unit test of the one URL redactor: the password becomes ***",
    ("shared/src/redact.rs", "s3cret"):
        "unit test of the one URL redactor: a Redis URL with only a password",
    ("shared/src/redact.rs", "a"):
        "unit test of the one URL redactor: a one-letter password replaced only where it is one",
    ("tests/integration/cache.rs", "count-only"):
        "local Redis stand-in that counts commands; the password is what it is told to expect",
    ("tests/integration/read_path.rs", "count-only"):
        "local Redis stand-in that counts commands; the password is what it is told to expect",
}

@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    kind: str
    secret: str

    def __str__(self) -> str:
        shown = self.secret[:4] + "..." if len(self.secret) > 4 else "..."
        return f"{self.path}:{self.line}: {self.kind} ({shown})"


def scan_text(path: str, text: str) -> list[Finding]:
    """What looks like a credential in `text`, minus placeholders and allowed fixtures."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for kind, pattern in (("AWS access key id", ACCESS_KEY_ID), ("private key", PRIVATE_KEY),
                              ("AWS secret access key", SECRET_ACCESS_KEY),
                              ("password in a URL", URL_PASSWORD), ("password setting", PASSWORD_SETTING)):
            for m in pattern.finditer(line):
                secret = m.groupdict().get("secret") or m.group(0)
                if PLACEHOLDER.match(secret) or (path, secret) in ALLOWED:
                    continue
                found.append(Finding(path, number, kind, secret))
    return found


def tracked_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [p for p in out.stdout.decode().split("\0") if p]


def test_no_tracked_file_holds_a_credential():
    files = tracked_files()
    assert len(files) > 50, "git ls-files should list the repository"

    findings = []
    for path in files:
        full = ROOT / path
        if not full.is_file():
            continue  # deleted in the working tree
        data = full.read_bytes()
        if b"\0" in data[:8192]:
            continue  # binary
        findings.extend(scan_text(path, data.decode("utf-8", errors="replace")))

    assert not findings, "credentials in tracked files:\n" + "\n".join(map(str, findings))


def test_every_allowed_fixture_is_still_there_so_the_list_stays_honest():
    for (path, secret), reason in ALLOWED.items():
        assert reason, path
        assert secret in (ROOT / path).read_text(), f"{path} no longer has {secret!r}: drop it from ALLOWED"


# Samples are assembled at run time, so this file holds none of them as literals.
@pytest.mark.parametrize("line, kind", [
    ("aws_access_key_id = " + "AKIA" + "Q" * 16, "AWS access key id"),
    ('"AccessKeyId": "' + "ASIA" + "7" * 16 + '"', "AWS access key id"),
    ("-----BEGIN " + "RSA PRIVATE KEY-----", "private key"),
    ("-----BEGIN " + "OPENSSH PRIVATE KEY-----", "private key"),
    ("AWS_SECRET_ACCESS_KEY=" + "wJalr" + "X" * 35, "AWS secret access key"),
    ("DATABASE_URL=postgres://app:" + "Tr0ub4dor" + "@db.internal/inventory", "password in a URL"),
    ("REDIS_URL=rediss://:" + "tok3n" + "@cache.internal:6379", "password in a URL"),
    ("host=db user=app password=" + "Tr0ub4dor", "password setting"),
])
def test_the_scanner_catches_each_kind_of_credential(line, kind):
    assert [f.kind for f in scan_text("somewhere.rs", line)] == [kind]


@pytest.mark.parametrize("line", [
    "MasterUserPassword: !Sub \"{{resolve:secretsmanager:${DbSecretArn}:SecretString:password}}\"",
    "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable",
    "rediss://***@cache.example:6379",
    "postgres://${DB_USER}:${DB_PASSWORD}@host/db",
    "let password = secret.field(\"password\")?;",
    "AKIAIOSFODNN7EXAMPLEX",  # 17 characters after the prefix: not a key id
])
def test_the_scanner_passes_placeholders_and_lookalikes(line):
    assert scan_text("somewhere.rs", line) == []


def test_an_allowed_fixture_is_allowed_only_in_its_own_file():
    line = 'config(&[("DATABASE_URL", "postgres://app:' + "hunter" + '2@127.0.0.1/inv")])'
    assert scan_text("shared/src/adapters/postgres/config.rs", line) == []
    assert [f.kind for f in scan_text("functions/persist/src/lib.rs", line)] == ["password in a URL"]
