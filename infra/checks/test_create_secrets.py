"""infra/scripts/create-secrets creates the three secrets the template finds by name, with the
JSON each reader expects, and leaves existing ones alone; run against a local moto server (the
Secrets Manager API on loopback) with the AWS CLI and jq of the deploy machine."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time

import boto3
import pytest

from conftest import INFRA, VENV_BIN

SCRIPT = INFRA / "scripts" / "create-secrets"
NAMES = {"db-master": {"username", "password"}, "db-app": {"username", "password"}, "cache-auth": {"auth_token"}}

needs_cli = pytest.mark.skipif(not (shutil.which("aws") and shutil.which("jq")),
                               reason="the AWS CLI and jq are not on this machine's PATH")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def moto_env():
    port = free_port()
    server = subprocess.Popen([str(VENV_BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.fail("moto_server did not start")
        env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="testing",
                   AWS_SECRET_ACCESS_KEY="testing", AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1")
        env.pop("AWS_PROFILE", None)
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)


def run(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def secrets(env: dict) -> dict[str, dict]:
    client = boto3.client("secretsmanager", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    names = [s["Name"] for s in client.list_secrets()["SecretList"]]
    return {n: json.loads(client.get_secret_value(SecretId=n)["SecretString"]) for n in names}


@needs_cli
def test_it_creates_the_three_secrets_by_name_then_leaves_them_alone(moto_env):
    first = run(moto_env, "ci1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.split("\n")[:3] == [f"created: inventory/ci1/{n}" for n in NAMES]
    made = secrets(moto_env)
    assert {f"inventory/ci1/{n}" for n in NAMES} <= set(made)
    for name, keys in NAMES.items():
        value = made[f"inventory/ci1/{name}"]
        assert set(value) == keys, (name, sorted(value))
    assert made["inventory/ci1/db-master"]["username"] != made["inventory/ci1/db-app"]["username"]
    assert len(made["inventory/ci1/db-app"]["password"]) == 32
    assert 16 <= len(made["inventory/ci1/cache-auth"]["auth_token"]) <= 128
    for value in made.values():
        for text in value.values():
            assert not set(text) & set('/@" '), "RDS and ElastiCache refuse these characters"

    again = run(moto_env, "ci1")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.split("\n")[:3] == [f"exists:  inventory/ci1/{n} (left unchanged)" for n in NAMES]
    assert {k: v for k, v in secrets(moto_env).items() if k.startswith("inventory/ci1/")} == {
        k: v for k, v in made.items() if k.startswith("inventory/ci1/")}


@needs_cli
def test_a_suffix_the_template_would_refuse_is_refused_before_any_call(moto_env):
    done = run(moto_env, "Dev-1")
    assert done.returncode == 2
    assert "suffix 'Dev-1' must be 1-10 lowercase letters or digits" in done.stderr
    assert not any(k.startswith("inventory/Dev-1/") for k in secrets(moto_env))
