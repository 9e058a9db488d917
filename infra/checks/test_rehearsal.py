"""The first-deploy rehearsal (rehearsal.py) holds on infra/template.yaml after the SAM transform
and on infra/samconfig.toml, and each check catches a broken copy."""

from __future__ import annotations

import copy
import re

import pytest

import rehearsal
from conftest import TEMPLATE
from policy import check_destroyable
from sam_transform import transform_dict, transformed


@pytest.fixture(scope="module")
def out() -> dict:
    """The transformed template (a fresh copy per module: tests below mutate their own copies)."""
    return transformed()


@pytest.fixture(scope="module")
def config() -> dict:
    return rehearsal.load_samconfig()


# ------------------------------------------------------------------ the transform itself
def test_the_transform_expands_sam_resources(template, out):
    kinds = {r["Type"] for r in out["Resources"].values()}
    assert "Transform" not in out
    assert not any(k.startswith("AWS::Serverless::") for k in kinds)
    assert {"AWS::Lambda::Function", "AWS::Lambda::Version", "AWS::Lambda::Alias", "AWS::Lambda::EventSourceMapping",
            "AWS::ApiGatewayV2::Api", "AWS::Lambda::LayerVersion"} <= kinds
    # The source has no Version: only the transform shows what AutoPublishAlias creates.
    assert not any(r.get("Type") == "AWS::Lambda::Version" for r in template["Resources"].values())


# ------------------------------------------------------------------ capabilities
def test_samconfig_grants_every_capability_the_template_needs(template, out, config):
    need = rehearsal.needed_capabilities(template, out)
    assert "CAPABILITY_IAM" in need and "CAPABILITY_NAMED_IAM" not in need, need
    assert rehearsal.check_capabilities(template, out, config) == []


def test_a_named_managed_policy_needs_named_iam_which_samconfig_does_not_grant(template, out, config):
    broken = copy.deepcopy(out)
    broken["Resources"]["LambdaTracingPolicy"]["Properties"]["ManagedPolicyName"] = {
        "Fn::Sub": "inventory-lambda-tracing-${EnvironmentSuffix}"}
    problems = rehearsal.check_capabilities(template, broken, config)
    assert len(problems) == len(rehearsal.environments(config)), problems
    assert all("CAPABILITY_NAMED_IAM" in p and "LambdaTracingPolicy sets ManagedPolicyName" in p for p in problems)


def test_an_environment_that_grants_too_little_is_caught(template, out, config):
    broken = copy.deepcopy(config)
    broken["staging"]["deploy"]["parameters"]["capabilities"] = "CAPABILITY_AUTO_EXPAND"
    problems = rehearsal.check_capabilities(template, out, broken)
    assert problems and all(p.startswith("samconfig [staging]") and "CAPABILITY_IAM" in p for p in problems)


# ------------------------------------------------------------------ the literal command
def test_every_parameter_but_the_suffix_has_a_default(out):
    assert rehearsal.check_parameters_have_defaults(out) == []


def test_a_parameter_without_a_default_is_caught(out):
    broken = copy.deepcopy(out)
    del broken["Parameters"]["DbSecretArn"]["Default"]
    assert rehearsal.check_parameters_have_defaults(broken) == [
        "parameter DbSecretArn has no Default: `sam deploy --parameter-overrides EnvironmentSuffix=...` "
        "would be refused"]


# ------------------------------------------------------------------ nothing retained
def test_nothing_is_retained_or_protected_after_the_transform(out):
    assert check_destroyable(out) == []


def test_the_version_that_auto_publish_alias_adds_is_retained_unless_the_function_says_delete(tmp_path):
    text = TEMPLATE.read_text()
    head = "  SchemaMigrateFunction:\n    Type: AWS::Serverless::Function\n"
    assert head + "    DeletionPolicy: Delete\n    UpdateReplacePolicy: Delete\n" in text
    broken = tmp_path / "template.yaml"
    broken.write_text(text.replace(head + "    DeletionPolicy: Delete\n    UpdateReplacePolicy: Delete\n", head))
    problems = check_destroyable(transformed(broken))
    assert len(problems) == 1, problems
    assert re.fullmatch(r"SchemaMigrateFunctionVersion\w+ \(AWS::Lambda::Version\) has DeletionPolicy: Retain",
                        problems[0]), problems


def test_deletion_protection_anywhere_after_the_transform_is_caught(out):
    broken = copy.deepcopy(out)
    broken["Resources"]["Database"]["Properties"]["DeletionProtection"] = True
    assert any("Database" in p and "DeletionProtection" in p for p in check_destroyable(broken))


# ------------------------------------------------------------------ storage, shards, version
def test_every_deploy_configuration_is_accepted_and_consistent(out, config):
    configurations = rehearsal.deploy_configurations(out, config)
    assert len(configurations) == 1 + len(rehearsal.environments(config))
    assert rehearsal.check_deploy_values(out, config) == []


def test_a_suffix_passed_into_another_suffixs_stack_is_refused_by_the_template_rules(out, config):
    broken_config = copy.deepcopy(config)
    broken_config["default"]["deploy"]["parameters"]["parameter_overrides"] = "EnvironmentSuffix=staging"
    problems = rehearsal.check_deploy_values(out, broken_config)
    assert sorted(problems) == sorted([
        "samconfig [default]: rule StackNameMatchesSuffixDev refuses it: Stack inventory-dev takes EnvironmentSuffix=dev "
        "and nothing else; for another suffix use its samconfig environment (sam deploy --config-env <suffix>).",
        "samconfig [default]: rule StackNameMatchesSuffixStaging refuses it: Stack inventory-staging takes "
        "EnvironmentSuffix=staging and nothing else (sam deploy --config-env staging).",
    ]), problems


def test_an_rds_proxy_without_the_app_secret_arn_is_refused_by_the_template_rules(out, config):
    broken_config = copy.deepcopy(config)
    broken_config["staging"]["deploy"]["parameters"]["parameter_overrides"] += " DbProxy=true"
    problems = rehearsal.check_deploy_values(out, broken_config)
    assert len(problems) == 1 and problems[0].startswith(
        "samconfig [staging]: rule DbProxyNeedsTheAppSecretArn refuses it: DbProxy=true needs AppDbSecretArn"), problems
    broken_config["staging"]["deploy"]["parameters"]["parameter_overrides"] += (
        " AppDbSecretArn=arn:aws:secretsmanager:us-east-1:123456789012:secret:inventory/staging/db-app-AbCdEf")
    assert rehearsal.check_deploy_values(out, broken_config) == []


def test_a_fixed_storage_ceiling_below_a_larger_allocation_is_caught(out, config):
    broken = copy.deepcopy(out)
    broken["Resources"]["Database"]["Properties"]["MaxAllocatedStorage"] = 100
    broken_config = copy.deepcopy(config)
    broken_config["prod"]["deploy"]["parameters"]["parameter_overrides"] += " DbAllocatedStorageGiB=200"
    problems = rehearsal.check_deploy_values(broken, broken_config)
    assert any(p.startswith("samconfig [prod]") and "ceiling 100 GiB" in p and "allocated 200" in p for p in problems)
    assert any("fixed 100" in p for p in problems)


def test_a_ceiling_parameter_too_close_to_the_allocation_is_caught(out, config):
    broken_config = copy.deepcopy(config)
    broken_config["staging"]["deploy"]["parameters"]["parameter_overrides"] += (
        " DbAllocatedStorageGiB=100 DbMaxAllocatedStorageGiB=110")
    problems = rehearsal.check_deploy_values(out, broken_config)
    assert problems == ["samconfig [staging]: storage autoscaling ceiling 110 GiB is not at least 1.26 x the "
                        "allocated 100 GiB (RDS refuses a ceiling that is not above the allocation)"]


def test_a_pinned_minor_without_minor_upgrades_and_a_family_of_another_major_are_caught(out, config):
    broken = copy.deepcopy(out)
    broken["Parameters"]["DbEngineVersion"]["Default"] = "16.8"
    broken["Resources"]["Database"]["Properties"]["AutoMinorVersionUpgrade"] = False
    broken["Resources"]["DbParameterGroup"]["Properties"]["Family"] = "postgres15"
    problems = rehearsal.check_deploy_values(broken, config)
    assert any("defaults to the minor version 16.8" in p for p in problems)
    assert any("pins a minor version without AutoMinorVersionUpgrade" in p for p in problems)
    assert any("Family postgres15 does not match engine version 16.8" in p for p in problems)


def test_a_minor_version_default_is_caught_even_with_minor_upgrades(out, config):
    broken = copy.deepcopy(out)
    broken["Parameters"]["DbEngineVersion"]["Default"] = "16.8"
    assert broken["Resources"]["Database"]["Properties"]["AutoMinorVersionUpgrade"] is True
    problems = rehearsal.check_deploy_values(broken, config)
    assert problems and all("defaults to the minor version 16.8" in p for p in problems), problems


def test_a_hard_coded_stream_mode_and_shards_in_on_demand_mode_are_caught(out, config):
    broken = copy.deepcopy(out)
    stream = broken["Resources"]["InventoryStream"]["Properties"]
    stream["StreamModeDetails"] = {"StreamMode": "PROVISIONED"}
    assert any("mode is hard-coded" in p for p in rehearsal.check_deploy_values(broken, config))
    broken = copy.deepcopy(out)
    broken["Resources"]["InventoryStream"]["Properties"]["ShardCount"] = {"Ref": "StreamShardCount"}
    broken_config = copy.deepcopy(config)
    broken_config["staging"]["deploy"]["parameters"]["parameter_overrides"] += " StreamMode=ON_DEMAND"
    problems = rehearsal.check_deploy_values(broken, broken_config)
    assert problems == ["samconfig [staging]: InventoryStream sets ShardCount in ON_DEMAND mode (Kinesis refuses it)"]


def test_an_override_outside_the_parameters_constraints_is_caught(out, config):
    broken_config = copy.deepcopy(config)
    broken_config["prod"]["deploy"]["parameters"]["parameter_overrides"] += (
        " StreamShardCount=100 StreamMode=SOMETIMES DbEngineVersion=sixteen Nonsense=1")
    problems = rehearsal.check_deploy_values(out, broken_config)
    assert "samconfig [prod]: StreamShardCount=100 is above MaxValue 64" in problems
    assert any(p.startswith("samconfig [prod]: StreamMode='SOMETIMES' is not one of") for p in problems)
    assert any(p.startswith("samconfig [prod]: DbEngineVersion='sixteen' does not match") for p in problems)
    assert "samconfig [prod]: Nonsense is not a parameter of the template" in problems


# ------------------------------------------------------------------ references
def test_every_reference_of_the_transformed_template_resolves(out):
    assert rehearsal.check_references(out) == []


def test_unresolved_references_are_caught(out):
    broken = copy.deepcopy(out)
    res = broken["Resources"]
    res["Database"]["Properties"]["DBName"] = {"Ref": "DatabaseName"}
    res["InventoryStream"]["Properties"]["Name"] = {"Fn::Sub": "inventory-updates-${Suffix}"}
    broken["Outputs"]["DbEndpoint"]["Value"] = {"Fn::GetAtt": ["Database", "Endpoint.Hostname"]}
    broken["Outputs"]["StreamArn"]["Value"] = {"Fn::GetAtt": ["Stream", "Arn"]}
    broken["Outputs"]["CacheEndpoint"]["Value"] = {"Fn::Sub": "${Cache.PrimaryEndpoint.Address}"}
    res["Database"]["DependsOn"] = ["DbPostgresLogGroup", "DbLogGroup"]
    res["Database"]["Properties"]["MultiAZ"] = {"Fn::If": ["IsProd", True, False]}
    problems = rehearsal.check_references(broken)
    assert sorted(problems) == sorted([
        "Resources/Database: Ref DatabaseName: no parameter or resource of that name",
        "Resources/InventoryStream: Fn::Sub ${Suffix}: no parameter or resource of that name",
        "Outputs/DbEndpoint: Fn::GetAtt Database.Endpoint.Hostname: AWS::RDS::DBInstance has no attribute "
        "Endpoint.Hostname",
        "Outputs/StreamArn: Fn::GetAtt Stream.Arn: no resource Stream",
        "Outputs/CacheEndpoint: Fn::GetAtt Cache.PrimaryEndpoint.Address: AWS::ElastiCache::ReplicationGroup has no "
        "attribute PrimaryEndpoint.Address",
        "Resources/Database: DependsOn DbLogGroup: no such resource",
        "Resources/Database: Fn::If on unknown condition IsProd",
    ]), problems


# ------------------------------------------------------------------ one stack per suffix
def test_each_samconfig_environment_is_its_own_guarded_stack(out, config):
    assert set(rehearsal.environments(config)) >= {"default", "staging"}
    assert rehearsal.check_samconfig_environments(out, config) == []


def test_an_environment_that_updates_another_suffixs_stack_is_caught(out, config):
    broken = copy.deepcopy(config)
    broken["staging"]["global"]["parameters"]["stack_name"] = "inventory-dev"
    broken["staging"]["deploy"]["parameters"]["tags"] = "Project=inventory-pipeline Environment=dev"
    problems = rehearsal.check_samconfig_environments(out, broken)
    assert "samconfig [staging] deploys suffix staging into stack inventory-dev, not inventory-staging" in problems
    assert "samconfig [staging] tags Environment=dev, not staging" in problems
    assert "samconfig [staging] and [default] share stack inventory-dev" in problems


def test_an_environment_without_its_stack_name_rule_is_caught(out, config):
    broken = copy.deepcopy(out)
    del broken["Rules"]["StackNameMatchesSuffixStaging"]
    assert rehearsal.check_samconfig_environments(broken, config) == [
        "no template rule refuses a suffix other than staging in stack inventory-staging (samconfig [staging]); "
        "add a StackNameMatchesSuffix rule"]


def test_the_transform_of_a_template_without_sam_is_the_template():
    plain = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}
    assert transform_dict(plain) == plain
