"""infra/scripts/flat-outputs turns describe-stacks into the flat file the integration tests read."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import INFRA

SCRIPT = INFRA / "scripts" / "flat-outputs"


def describe(status: str = "UPDATE_COMPLETE") -> dict:
    return {"Stacks": [{
        "StackName": "inventory-dev",
        "StackStatus": status,
        "Outputs": [
            {"OutputKey": "StreamName", "OutputValue": "inventory-updates-dev"},
            {"OutputKey": "FanoutDlqUrl", "OutputValue": "https://sqs.us-east-1.amazonaws.com/1/inventory-fanout-dlq-dev"},
        ],
    }]}


def run(tmp_path, answer: dict) -> subprocess.CompletedProcess:
    saved = tmp_path / "describe.json"
    saved.write_text(json.dumps(answer))
    out = tmp_path / "cfn-outputs" / "flat-outputs.json"
    return subprocess.run([sys.executable, str(SCRIPT), "--from-json", str(saved), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)


def test_a_deployed_stacks_outputs_become_a_flat_object(tmp_path):
    done = run(tmp_path, describe())

    assert done.returncode == 0, done.stderr
    written = json.loads((tmp_path / "cfn-outputs" / "flat-outputs.json").read_text())
    assert written == {"StreamName": "inventory-updates-dev",
                       "FanoutDlqUrl": "https://sqs.us-east-1.amazonaws.com/1/inventory-fanout-dlq-dev"}


def test_a_stack_that_rolled_back_writes_nothing(tmp_path):
    done = run(tmp_path, describe("UPDATE_ROLLBACK_COMPLETE"))

    assert done.returncode != 0
    assert "UPDATE_ROLLBACK_COMPLETE" in done.stderr
    assert not (tmp_path / "cfn-outputs" / "flat-outputs.json").exists()

