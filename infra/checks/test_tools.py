"""The template and the state machine pass the linters and the security scanner, offline:
`sam validate --lint`, `cfn-lint`, `asl-validator` and `checkov` with 0 failed checks."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from conftest import ASL, INFRA, TEMPLATE, VENV_BIN

ASL_VALIDATOR_VERSION = "4.0.0"
TOOLS = INFRA / ".tools" / "asl"  # gitignored


def run(args: list, env: dict, cwd: Path = INFRA) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def asl_validator(tool_env) -> Path:
    """The pinned asl-validator, installed by npm into infra/.tools (no lock file is written)."""
    binary = TOOLS / "node_modules" / ".bin" / "asl-validator"
    installed = TOOLS / "node_modules" / "asl-validator" / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != ASL_VALIDATOR_VERSION:
        TOOLS.mkdir(parents=True, exist_ok=True)
        done = run(["npm", "install", "--no-package-lock", "--no-save", "--no-audit", "--no-fund",
                    "--prefix", TOOLS, f"asl-validator@{ASL_VALIDATOR_VERSION}"], tool_env)
        assert done.returncode == 0, done.stderr
    return binary


def test_sam_validate_with_lint_is_clean(tool_env):
    done = run([VENV_BIN / "sam", "validate", "--lint", "--template-file", TEMPLATE], tool_env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint_is_clean(tool_env):
    done = run([VENV_BIN / "cfn-lint", TEMPLATE], tool_env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_state_machine_definition_passes_asl_validator(asl_validator, tool_env):
    assert ASL.exists(), f"{ASL} is missing (the orchestration issue writes it)"
    done = run([asl_validator, "--json-path", ASL], tool_env)
    assert done.returncode == 0, done.stdout + done.stderr


def test_asl_validator_rejects_a_transition_to_a_missing_state(asl_validator, tool_env, tmp_path):
    bad = tmp_path / "bad.asl.json"
    bad.write_text(json.dumps({"StartAt": "Validate", "States": {
        "Validate": {"Type": "Task", "Resource": "${ValidateFunctionArn}", "Next": "Nowhere"}}}))
    done = run([asl_validator, "--json-path", bad], tool_env)
    assert done.returncode != 0
    assert "MISSING_TRANSITION_TARGET" in done.stdout + done.stderr


def test_the_definition_uses_exactly_the_substitutions_the_template_provides(template):
    assert ASL.exists(), f"{ASL} is missing (the orchestration issue writes it)"
    used = set(re.findall(r"\$\{([A-Za-z0-9_]+)\}", ASL.read_text()))
    given = set(template["Resources"]["PipelineStateMachine"]["Properties"]["DefinitionSubstitutions"])
    assert used == given


def test_checkov_reports_no_failed_checks(tool_env):
    done = run([VENV_BIN / "checkov", "--file", TEMPLATE, "--framework", "cloudformation", "--skip-download",
                "--quiet", "--compact", "--output", "json"], tool_env)
    report = json.loads(done.stdout)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 100  # the scanner really looked at the resources


def test_every_checkov_suppression_gives_a_reason(template):
    skips = [(logical, skip) for logical, res in template["Resources"].items()
             for skip in ((res.get("Metadata") or {}).get("checkov") or {}).get("skip", [])]
    assert skips, "expected the documented suppressions"
    for logical, skip in skips:
        assert re.fullmatch(r"CKV2?_AWS_\d+", skip.get("id", "")), (logical, skip)
        assert len(skip.get("comment", "")) >= 30, f"{logical} suppresses {skip.get('id')} without a reason"
