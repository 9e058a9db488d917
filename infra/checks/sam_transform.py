"""The template as CloudFormation receives it: after the AWS::Serverless-2016-10-31 transform,
offline.

The transform is SAM's own translator (samtranslator, installed with the SAM CLI; CloudFormation
runs the same code as the hosted transform). Two things it would otherwise fetch or refuse are
stubbed, the way cfn-lint did before it stopped transforming: the AWS managed-policy list (an
IAM call; this template names no managed policy by its short name) and local code paths
(`CodeUri: ..`, which `sam package` would upload, become placeholder S3 URIs). What SAM adds
shows up only here: the AWS::Lambda::Version behind AutoPublishAlias (with its DeletionPolicy),
event source mappings, HTTP API stages and permissions, layer versions with hashed logical ids.

    transformed()            infra/template.yaml, transformed
    transformed(path)        another template file (a broken copy in a test)
    transform_dict(template) a template already loaded with cfnlint.decode.cfn_yaml
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import boto3
from cfnlint.decode import cfn_yaml
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

TEMPLATE = Path(__file__).resolve().parent.parent / "template.yaml"
REGION = "us-east-1"
ACCOUNT = "123456789012"

# Properties `sam package` uploads when they name a local path, per SAM resource type.
LOCAL_ARTIFACTS = {
    "AWS::Serverless::Function": ["CodeUri"],
    "AWS::Serverless::LayerVersion": ["ContentUri"],
    "AWS::Serverless::StateMachine": ["DefinitionUri"],
    "AWS::Serverless::HttpApi": ["DefinitionUri"],
    "AWS::Serverless::Api": ["DefinitionUri"],
}


class TransformError(Exception):
    """SAM refused the template (the message is SAM's)."""


def _no_managed_policies() -> dict[str, str]:
    """The managed-policy map SAM asks IAM for, only for policies named by short name."""
    return {}


def _package_locally(template: dict) -> None:
    """What `sam package` does to local paths, with placeholder S3 locations."""
    def placeholder(value: Any) -> Any:
        if isinstance(value, str) and not value.startswith("s3://"):
            return f"s3://sam-artifacts-placeholder/{value.strip('./') or 'root'}"
        return value

    for res in (template.get("Resources") or {}).values():
        if not isinstance(res, dict):
            continue
        for prop in LOCAL_ARTIFACTS.get(res.get("Type", ""), []):
            props = res.get("Properties") or {}
            if prop in props:
                props[prop] = placeholder(props[prop])
    function_globals = (template.get("Globals") or {}).get("Function") or {}
    if "CodeUri" in function_globals:
        function_globals["CodeUri"] = placeholder(function_globals["CodeUri"])


def transform_dict(template: dict, region: str = REGION) -> dict:
    """The template (as loaded by cfn_yaml) after the SAM transform; a template without the
    transform comes back unchanged. The input is not modified."""
    source = json.loads(json.dumps(template))  # plain dicts and strings, as CloudFormation sends them
    if "Transform" not in source:
        return source
    _package_locally(source)
    parameters = {name: p["Default"] for name, p in (source.get("Parameters") or {}).items() if "Default" in p}
    parameters.setdefault("EnvironmentSuffix", "dev")
    parameters.update({"AWS::Region": region, "AWS::AccountId": ACCOUNT, "AWS::Partition": "aws"})
    # A session object only names the region for SAM's ARN generator; nothing is called.
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        out = translator.translate(source, parameter_values=parameters, get_managed_policy_map=_no_managed_policies)
    except Exception as e:  # samtranslator raises InvalidDocumentException and friends
        causes = getattr(e, "causes", None) or []
        raise TransformError("; ".join(str(getattr(c, "message", c)) for c in causes) or str(e)) from e
    if "Transform" in out:
        raise TransformError("the SAM transform left the template untransformed")
    return out


@lru_cache(maxsize=8)
def _transformed_file(path: str, mtime: float) -> dict:
    return transform_dict(cfn_yaml.load(path))


def transformed(path=None) -> dict:
    """The template file at `path` (default infra/template.yaml) after the SAM transform.
    Each call returns a fresh copy, so a test may mutate it."""
    p = Path(path) if path is not None else TEMPLATE
    return copy.deepcopy(_transformed_file(str(p.resolve()), p.stat().st_mtime))
