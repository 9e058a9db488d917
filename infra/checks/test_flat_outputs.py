"""infra/scripts/flat-outputs turns describe-stacks into the flat file the integration tests read."""

from __future__ import annotations

import json
import re
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



# ------------------------------------------------------------------ what the docs read from it

ROOT = INFRA.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]


def keys_read(text: str) -> set[str]:
    """The flat-outputs keys a document reads (`jq -r .Key "$OUT"`, `jq -r '.Key | ...'`)."""
    return set(re.findall(r"""jq -r '?\.([A-Za-z][A-Za-z0-9]*)""", text))


def missing_outputs(template: dict, docs: dict[str, str]) -> list[str]:
    """Keys a document reads that neither the template's Outputs nor the local stack (Local*) write."""
    outputs = set(template.get("Outputs") or {})
    return [f"{name} reads {key} from flat-outputs.json, which no output of the template provides"
            for name, text in sorted(docs.items()) for key in sorted(keys_read(text))
            if key not in outputs and not key.startswith("Local")]


def test_every_value_the_docs_read_from_the_outputs_is_an_output(template):
    docs = {str(p.relative_to(ROOT)): p.read_text() for p in DOCS}
    assert missing_outputs(template, docs) == []


def test_the_runbook_values_are_outputs(template):
    """What docs/runbooks.md takes from the stack: the state machine, the queues, the secrets,
    the instance and group to rotate, the mapping to pause, the operator policy."""
    for key in ("StateMachineArn", "FanoutDlqUrl", "LambdaDlqUrl", "DbSecretId", "AppDbSecretId",
                "CacheAuthSecretId", "DbInstanceId", "CacheReplicationGroupId", "FanoutEventSourceMappingId",
                "OperatorPolicyArn", "SchemaMigrateFunctionName", "FanoutFunctionName"):
        assert key in template["Outputs"], key


def test_a_doc_reading_a_key_no_output_provides_is_caught(template):
    docs = {"docs/runbooks.md": 'ARN=$(jq -r .StateMachineArn "$OUT")\nURL=$(jq -r .LocalEndpointUrl "$OUT")\n'
                                'SECRET=$(jq -r .DbSecretArn "$OUT")\nSUBNET=$(jq -r \'.PrivateSubnetIds | split(",")[0]\' "$OUT")'}
    assert missing_outputs(template, docs) == [
        "docs/runbooks.md reads DbSecretArn from flat-outputs.json, which no output of the template provides"]
