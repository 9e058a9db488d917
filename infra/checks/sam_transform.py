"""The template as CloudFormation deploys it: after the SAM transform, done offline with the SAM
translator (the `aws-sam-translator` package that `sam` itself runs, in the project venv;
cfn-lint up to 1.5x ran the same translator, newer releases only merge Globals). Rules that
must see what SAM generates (AWS::Lambda::Function with its role, versions, the HTTP API's
AWS::ApiGatewayV2 resources, event source mappings...) run on this.

No AWS call is made: local paths (CodeUri, ContentUri) are replaced by placeholder S3 URIs the
way `sam validate` does, and the template names no SAM policy template or AWS managed policy
by name, so the translator needs no IAM look-up."""

from __future__ import annotations

import copy
import functools
import json
import os
from pathlib import Path

from cfnlint.decode import cfn_yaml

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
PLACEHOLDER_S3 = "s3://offline-transform/placeholder"


class TransformError(Exception):
    """The SAM translator refused the template; the message lists its reasons."""


def _plain(value):
    """cfn-lint's YAML nodes as plain dicts/lists (the translator copies and compares them)."""
    return json.loads(json.dumps(value))


def _local_uris_to_s3(template: dict) -> None:
    for res in (template.get("Resources") or {}).values():
        p = res.get("Properties")
        if not isinstance(p, dict):
            continue
        kind = res.get("Type")
        if kind == "AWS::Serverless::Function" and isinstance(p.get("CodeUri"), str) \
                and not p["CodeUri"].startswith("s3://"):
            p["CodeUri"] = PLACEHOLDER_S3
        if kind == "AWS::Serverless::LayerVersion" and isinstance(p.get("ContentUri"), str) \
                and not p["ContentUri"].startswith("s3://"):
            p["ContentUri"] = PLACEHOLDER_S3
        if kind == "AWS::Serverless::StateMachine" and isinstance(p.get("DefinitionUri"), str) \
                and not p["DefinitionUri"].startswith("s3://"):
            p["DefinitionUri"] = PLACEHOLDER_S3


def transform_dict(template: dict, filename: str = "template.yaml") -> dict:
    """A transformed copy of a template dict (as loaded by cfn-lint); `template` is not changed."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = _plain(template)
    if "Transform" not in sam:
        return sam
    _local_uris_to_s3(sam)
    os.environ.setdefault("AWS_DEFAULT_REGION", REGION)
    try:
        out = Translator(managed_policy_map={}, sam_parser=Parser()).translate(
            sam_template=sam, parameter_values={}, passthrough_metadata=True,
            get_managed_policy_map=lambda: {})
    except InvalidDocumentException as e:
        raise TransformError(f"{filename}: " + "; ".join(c.message for c in e.causes)) from e
    return _plain(out)


@functools.lru_cache(maxsize=4)
def _transformed_file(path: str) -> str:
    return json.dumps(transform_dict(cfn_yaml.load(path), filename=path))


def transformed(path=None) -> dict:
    """The template at `path` (default infra/template.yaml) after the SAM transform. Each call
    returns a fresh copy, so a caller may mutate it."""
    return json.loads(_transformed_file(str(Path(path) if path else TEMPLATE)))
