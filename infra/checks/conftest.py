"""Shared fixtures of the infrastructure checks: paths, the template as CloudFormation sees it,
and the tool binaries of the project venv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from cfnlint.decode import cfn_yaml

INFRA = Path(__file__).resolve().parent.parent
ROOT = INFRA.parent
TEMPLATE = INFRA / "template.yaml"
ASL = ROOT / "statemachines" / "inventory-pipeline.asl.json"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def template() -> dict:
    return cfn_yaml.load(str(TEMPLATE))


@pytest.fixture(scope="session")
def tool_env() -> dict:
    """Offline, no telemetry, the deploy region."""
    env = dict(os.environ)
    env.update({"AWS_DEFAULT_REGION": "us-east-1", "SAM_CLI_TELEMETRY": "0", "BC_SKIP_MAPPING": "TRUE",
                "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "false"})
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def load_snippet(text: str) -> dict:
    """A template fragment, loaded like the real template."""
    return cfn_yaml.loads(text)
