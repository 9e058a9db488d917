"""Each function's role against what its code and configuration need (least_privilege.py), on the
template after the SAM transform, and each rule shown catching a broken copy."""

from __future__ import annotations

import pytest

import least_privilege as lp
import rust_code
import sam_transform


@pytest.fixture
def post() -> dict:
    return sam_transform.transformed()


def policy(template: dict, role: str) -> list[dict]:
    return template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def statement(template: dict, role: str, sid: str) -> dict:
    return next(s for s in policy(template, role) if s.get("Sid") == sid)


# ------------------------------------------------------------------ the real template

def test_every_role_allows_exactly_what_its_function_needs(post):
    assert lp.check_roles_match_code(post) == []


def test_put_and_get_object_are_limited_to_the_prefixes_the_code_writes(post):
    assert lp.check_put_prefixes(post) == []


def test_each_function_reaches_only_the_prefixes_it_writes(post):
    assert lp.check_prefix_writers(post) == []


def test_schema_migrate_reaches_only_the_event_store_exports(post):
    """Retention puts each old day under event-store/ and reads it back; nothing else of S3
    (no listing, no delete, no other prefix), and the endpoint lets exactly that through."""
    s3 = [s for s in policy(post, "SchemaMigrateRole") if any(a.startswith("s3:") for a in lp._as_list(s["Action"]))]
    assert [(sorted(s["Action"]), s["Resource"]) for s in s3] == [
        (["s3:GetObject", "s3:PutObject"], {"Fn::Sub": "${ArchiveBucket.Arn}/event-store/*"})]
    endpoint = post["Resources"]["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]["Statement"]
    assert next(s for s in endpoint if s["Sid"] == "SchemaMigrateExportsTheEventStore")["Resource"] == s3[0]["Resource"]


def test_the_s3_endpoint_allows_only_what_the_vpc_functions_do(post):
    assert lp.check_s3_endpoint(post) == []


def test_the_state_machine_role_invokes_exactly_its_tasks(post):
    assert lp.check_state_machine_roles(post) == []


def test_no_unused_database_login_path(post):
    assert lp.check_iam_database_auth(post) == []


def test_the_calls_are_read_from_the_code():
    """The derivation finds the calls each crate makes (so the comparison above is not vacuous)."""
    calls = {c: sorted(op for _, op in rust_code.sdk_calls(c)) for c in
             ("archive", "fanout", "bucket-emptier", "schema-migrate", "validate")}
    assert calls == {"archive": ["PutObject"], "fanout": ["PutObject", "StartExecution"],
                     "bucket-emptier": ["DeleteObjects", "ListObjectVersions"],
                     "schema-migrate": ["GetObject", "GetSecretValue", "PutObject"],
                     "validate": ["GetSecretValue", "PutObject"]}
    assert lp.key_prefixes() == {"raw/", "oversized/", "rejections/", "event-store/"}
    assert set(lp.PREFIX_WRITERS) == lp.key_prefixes()  # every prefix the code writes has its writer


def test_test_code_does_not_count():
    """fanout's tests call S3 and Step Functions stubs; only production code is read."""
    files = {p.name for p in rust_code.production_sources("fanout")}
    assert "stub_http.rs" not in files and "tests.rs" not in files
    handler = next(t for p, t in rust_code.production_sources("fanout").items() if p.name == "sfn.rs")
    assert "mod tests" not in handler


# ------------------------------------------------------------------ broken copies

def test_an_action_the_code_never_makes_is_caught(post):
    """archive's old role: GetObject and ListBucket, which archive never calls."""
    st = statement(post, "ArchiveRole", "WriteArchiveObjects")
    st["Action"] = ["s3:PutObject", "s3:GetObject"]
    policy(post, "ArchiveRole").append({"Sid": "List", "Effect": "Allow", "Action": "s3:ListBucket",
                                        "Resource": {"Fn::GetAtt": ["ArchiveBucket", "Arn"]}})
    assert lp.check_roles_match_code(post) == [
        "ArchiveFunction: ArchiveRole allows s3:GetObject, which its code and configuration never need",
        "ArchiveFunction: ArchiveRole allows s3:ListBucket, which its code and configuration never need"]


def test_describe_execution_on_the_fanout_is_caught(post):
    policy(post, "FanoutRole").append({"Sid": "CompareAnExistingExecutionsInput", "Effect": "Allow",
                                       "Action": "states:DescribeExecution", "Resource": "arn:aws:states:::x"})
    assert lp.check_roles_match_code(post) == [
        "FanoutFunction: FanoutRole allows states:DescribeExecution, which its code and configuration never need"]


def test_an_action_the_code_makes_but_the_role_lacks_is_caught(post):
    st = statement(post, "FanoutRole", "StartPipelineExecutions")
    policy(post, "FanoutRole").remove(st)
    found = lp.check_roles_match_code(post)
    assert len(found) == 1
    assert found[0].startswith("FanoutFunction: FanoutRole lacks states:StartExecution, needed for StartExecution "
                               "in functions/fanout/src/sfn.rs")


def test_the_old_environment_decrypt_condition_is_caught(post):
    """kms:EncryptionContext:LambdaFunctionName is a context Lambda never sets."""
    st = statement(post, "ValidateRole", "DecryptOwnEnvironment")
    st["Condition"] = {"StringEquals": {"kms:EncryptionContext:LambdaFunctionName": {
        "Fn::Sub": "inventory-validate-${EnvironmentSuffix}"}}}
    assert lp.check_roles_match_code(post) == [
        "ValidateFunction: ValidateRole allows kms:Decrypt (other:kms:EncryptionContext:LambdaFunctionName), "
        "which its code and configuration never need",
        "ValidateFunction: ValidateRole lacks kms:Decrypt (lambda-env:inventory-validate-${EnvironmentSuffix}), "
        "needed for KmsKeyArn (Lambda decrypts its environment)"]


def test_decrypting_another_functions_environment_is_caught(post):
    st = statement(post, "PersistRole", "DecryptOwnEnvironment")
    st["Condition"]["ArnEquals"]["kms:EncryptionContext:aws:lambda:FunctionArn"] = [{
        "Fn::Sub": "arn:${AWS::Partition}:lambda:${AWS::Region}:${AWS::AccountId}:function:inventory-validate-${EnvironmentSuffix}"}]
    found = lp.check_roles_match_code(post)
    assert "PersistFunction: PersistRole allows kms:Decrypt (lambda-env:inventory-validate-${EnvironmentSuffix}), " \
           "which its code and configuration never need" in found


def test_a_vpc_permission_on_a_function_outside_the_vpc_is_caught(post):
    post["Resources"]["ArchiveRole"]["Properties"]["ManagedPolicyArns"].append({"Ref": "LambdaVpcPolicy"})
    found = lp.check_roles_match_code(post)
    assert "ArchiveFunction: ArchiveRole allows ec2:CreateNetworkInterface, which its code and configuration never need" in found
    assert len(found) == 6


def test_a_new_sdk_call_in_the_code_needs_a_grant(post, monkeypatch):
    """A call added to the code (here: archive reading objects back) fails until the role allows it."""
    real = rust_code.sdk_calls

    def with_get(crate):
        calls = dict(real(crate))
        if crate == "archive":
            calls[("s3", "GetObject")] = [rust_code.FUNCTIONS / "archive" / "src" / "lib.rs"]
        return calls

    monkeypatch.setattr(rust_code, "sdk_calls", with_get)
    assert lp.check_roles_match_code(post) == [
        "ArchiveFunction: ArchiveRole lacks s3:GetObject, needed for GetObject in functions/archive/src/lib.rs"]


def test_put_object_on_the_whole_bucket_is_caught(post):
    statement(post, "FanoutRole", "OversizedRecordsByReference")["Resource"] = {"Fn::Sub": "${ArchiveBucket.Arn}/*"}
    assert lp.check_put_prefixes(post) == [
        "FanoutRole (OversizedRecordsByReference): s3:PutObject on ${ArchiveBucket.Arn}/* is not limited to a key "
        "prefix the code writes (['event-store/', 'oversized/', 'raw/', 'rejections/'])"]


def test_schema_migrate_on_the_whole_archive_bucket_is_caught(post):
    """Retention's grant widened to the bucket: it could overwrite the raw archive."""
    statement(post, "SchemaMigrateRole", "ExportEventStoreDays")["Resource"] = {"Fn::Sub": "${ArchiveBucket.Arn}/*"}
    assert lp.check_prefix_writers(post) == [
        "SchemaMigrateRole (ExportEventStoreDays): s3:PutObject on ${ArchiveBucket.Arn}/* reaches more than "
        "schema-migrate's own prefixes ['event-store/']",
        "SchemaMigrateRole (ExportEventStoreDays): s3:GetObject on ${ArchiveBucket.Arn}/* reaches more than "
        "schema-migrate's own prefixes ['event-store/']"]


def test_schema_migrate_on_another_functions_prefix_is_caught(post):
    """A prefix the code writes, but archive's: the generic prefix rule alone would pass it."""
    statement(post, "SchemaMigrateRole", "ExportEventStoreDays")["Resource"] = {"Fn::Sub": "${ArchiveBucket.Arn}/raw/*"}
    assert lp.check_prefix_writers(post) == [
        "SchemaMigrateRole (ExportEventStoreDays): s3:PutObject on ${ArchiveBucket.Arn}/raw/*: raw/ is written by "
        "archive, not schema-migrate (its own: ['event-store/'])",
        "SchemaMigrateRole (ExportEventStoreDays): s3:GetObject on ${ArchiveBucket.Arn}/raw/*: raw/ is written by "
        "archive, not schema-migrate (its own: ['event-store/'])"]


def test_an_endpoint_that_blocks_what_a_vpc_function_calls_is_caught(post):
    """schema-migrate runs in the VPC: without the endpoint's statement its exports are denied there."""
    doc = post["Resources"]["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]
    doc["Statement"] = [s for s in doc["Statement"] if s["Sid"] != "SchemaMigrateExportsTheEventStore"]
    assert lp.check_s3_endpoint(post) == [
        "S3GatewayEndpoint does not allow s3:GetObject on ${ArchiveBucket.Arn}/event-store/*, which a function in "
        "the VPC calls: denied at the endpoint",
        "S3GatewayEndpoint does not allow s3:PutObject on ${ArchiveBucket.Arn}/event-store/*, which a function in "
        "the VPC calls: denied at the endpoint"]


def test_an_endpoint_allowing_calls_no_vpc_function_makes_is_caught(post):
    doc = post["Resources"]["S3GatewayEndpoint"]["Properties"]["PolicyDocument"]
    doc["Statement"].append({"Sid": "ArchiveBucketFromTheVpc", "Effect": "Allow", "Principal": "*",
                             "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
                             "Resource": {"Fn::Sub": "arn:${AWS::Partition}:s3:::inventory-archive-${EnvironmentSuffix}-${AWS::AccountId}/*"}})
    bucket = "arn:${AWS::Partition}:s3:::inventory-archive-${EnvironmentSuffix}-${AWS::AccountId}/*"
    assert lp.check_s3_endpoint(post) == [
        "S3GatewayEndpoint (ArchiveBucketFromTheVpc) allows s3:DeleteObject, which no function in the VPC calls",
        f"S3GatewayEndpoint (ArchiveBucketFromTheVpc) allows s3:GetObject on {bucket}, where no function in the VPC "
        "may call it",
        f"S3GatewayEndpoint (ArchiveBucketFromTheVpc) allows s3:PutObject on {bucket}, where no function in the VPC "
        "may call it"]


def test_iam_database_authentication_nobody_uses_is_caught(post):
    post["Resources"]["Database"]["Properties"]["EnableIAMDatabaseAuthentication"] = True
    assert lp.check_iam_database_auth(post) == [
        "Database enables IAM database authentication, a login path no role uses (no rds-db:connect)"]


def test_a_state_machine_role_invoking_a_function_no_task_calls_is_caught(post):
    st = statement(post, "PipelineRole", "InvokeOnlyThePipelineFunctions")
    st["Resource"].append({"Fn::GetAtt": ["ProductApiFunction", "Arn"]})
    assert lp.check_state_machine_roles(post) == [
        "PipelineStateMachine: PipelineRole may invoke ProductApiFunction, which no task of the definition calls"]


def test_a_state_machine_role_with_an_extra_action_is_caught(post):
    statement(post, "PipelineRole", "InvokeOnlyThePipelineFunctions")["Action"] = [
        "lambda:InvokeFunction", "lambda:InvokeAsync"]
    assert lp.check_state_machine_roles(post) == [
        "PipelineStateMachine: PipelineRole allows lambda:InvokeAsync, which the state machine never needs"]


# ------------------------------------------------------------------ the operator's policy

def operator_statement(template: dict, sid: str) -> dict:
    doc = template["Resources"]["OperatorPolicy"]["Properties"]["PolicyDocument"]
    return next(s for s in doc["Statement"] if s.get("Sid") == sid)


def test_the_operator_policy_allows_exactly_what_redrive_and_the_cli_need(post):
    assert lp.check_operator_policy(post) == []


def test_the_clis_calls_are_read_from_its_code():
    """Including a call made through a client helper (reingest-archive lists the archive with
    target::s3_client's client, a file that never names aws_sdk_s3)."""
    assert sorted(rust_code.sdk_calls("cli")) == [
        ("cloudwatch", "DescribeAlarms"), ("cloudwatch", "GetMetricData"),
        ("kinesis", "GetRecords"), ("kinesis", "GetShardIterator"), ("kinesis", "PutRecords"),
        ("s3", "GetObject"), ("s3", "ListObjectsV2"), ("secretsmanager", "GetSecretValue"),
        ("sfn", "DescribeExecution"), ("sfn", "GetExecutionHistory"), ("sfn", "ListExecutions"),
        ("sfn", "RedriveExecution"), ("sfn", "StartExecution"),
        ("sqs", "ChangeMessageVisibility"), ("sqs", "DeleteMessage"), ("sqs", "GetQueueAttributes"),
        ("sqs", "ReceiveMessage")]
    need = lp.operator_needs(sam_transform.transformed())
    assert need[("s3:ListBucket", None)] == ("ListObjectsV2 in cli/src/commands/reingest_archive.rs, "
                                             "cli/src/commands/rejections.rs")
    assert need[("states:RedriveExecution", None)] == "the Redrive button"


def test_an_operator_action_nothing_needs_is_caught(post):
    """sqs:PurgeQueue would let an operator drop the DLQ's records unreplayed."""
    operator_statement(post, "ReplayTheFanoutDlq")["Action"].append("sqs:PurgeQueue")
    assert lp.check_operator_policy(post) == [
        "OperatorPolicy allows sqs:PurgeQueue, which neither console redrive nor the CLI needs"]


def test_a_missing_redrive_permission_is_caught(post):
    """The pain point: a role written before redrive existed."""
    operator_statement(post, "InspectAndRedrivePipelineExecutions")["Action"] = [
        "states:DescribeExecution", "states:GetExecutionHistory"]
    assert lp.check_operator_policy(post) == [
        "OperatorPolicy lacks states:RedriveExecution, needed for the Redrive button"]


def test_decrypt_without_the_step_functions_condition_is_caught(post):
    operator_statement(post, "ExecutionDataThroughStepFunctions").pop("Condition")
    assert lp.check_operator_policy(post) == [
        "OperatorPolicy allows kms:Decrypt (any), which neither console redrive nor the CLI needs",
        "OperatorPolicy allows kms:GenerateDataKey (any), which neither console redrive nor the CLI needs",
        "OperatorPolicy lacks kms:Decrypt (via:states), needed for reading an execution's input and history "
        "(customer-key state machine)",
        "OperatorPolicy lacks kms:GenerateDataKey (via:states), needed for StartExecution of a customer-key "
        "state machine"]


def test_a_new_cli_call_needs_a_grant(post, monkeypatch):
    """A call added to the CLI (here: deleting archive objects) fails until the policy allows it."""
    real = rust_code.sdk_calls

    def with_delete(crate):
        calls = dict(real(crate))
        if crate == "cli":
            calls[("s3", "DeleteObject")] = [rust_code.ROOT / "cli" / "src" / "commands" / "reingest_archive.rs"]
        return calls

    monkeypatch.setattr(rust_code, "sdk_calls", with_delete)
    assert lp.check_operator_policy(post) == [
        "OperatorPolicy lacks s3:DeleteObject, needed for DeleteObject in cli/src/commands/reingest_archive.rs"]


def test_a_named_operator_policy_or_none_is_caught(post):
    post["Resources"]["OperatorPolicy"]["Properties"]["ManagedPolicyName"] = "inventory-operator"
    assert lp.check_operator_policy(post) == [
        "OperatorPolicy has a ManagedPolicyName (deploying it would need CAPABILITY_NAMED_IAM)"]
    del post["Outputs"]["OperatorPolicyArn"]
    assert lp.check_operator_policy(post) == [
        "the output OperatorPolicyArn does not name an AWS::IAM::ManagedPolicy of this template"]


def test_an_sdk_the_derivation_cannot_read_is_reported(post, monkeypatch):
    """A CLI command on an SDK without a service model mapping would otherwise be invisible."""
    real = rust_code.production_sources

    def with_unknown(crate):
        out = dict(real(crate))
        if crate == "cli":
            out[rust_code.ROOT / "cli" / "src" / "commands" / "traces.rs"] = (
                "use aws_sdk_xray::Client;\nasync fn f(c: &aws_sdk_xray::Client) { c.get_trace_summaries().send().await; }")
        return out

    monkeypatch.setattr(rust_code, "production_sources", with_unknown)
    assert lp.check_operator_policy(post) == [
        "the CLI uses aws_sdk_xray (cli/src/commands/traces.rs), which rust_code.SDK_MODELS does not map: "
        "its calls cannot be checked"]


def test_a_cloudwatch_call_in_the_cli_is_read():
    """The models the CLI's health command is likely to use are mapped."""
    calls = rust_code.sdk_calls_in("let c = aws_sdk_cloudwatch::Client::new(&conf);\n"
                                   "c.describe_alarms().send().await; c.get_metric_data().send().await;")
    assert calls == {("cloudwatch", "DescribeAlarms"), ("cloudwatch", "GetMetricData")}


# ------------------------------------------------------------------ inventory status's reads

def test_the_status_commands_reads_are_what_the_operator_policy_names(post):
    assert lp.status_reads() == ({"FanoutDlqUrl", "LambdaDlqUrl", "AlarmDeliveryDlqUrl"}, "inventory-")
    assert lp.check_operator_status_resources(post) == []


def test_a_dlq_the_status_command_reads_but_the_policy_omits_is_caught(post):
    operator_statement(post, "ReadDlqDepths")["Resource"].pop(1)
    assert lp.check_operator_status_resources(post) == [
        "OperatorPolicy lacks sqs:GetQueueAttributes on LambdaAsyncDlq, whose depth inventory status reads"]


def test_a_queue_the_status_command_does_not_read_is_caught(post):
    reads = ({"FanoutDlqUrl"}, "inventory-")
    assert lp.check_operator_status_resources(post, reads) == [
        "OperatorPolicy allows sqs:GetQueueAttributes on AlarmDeliveryDlq, which inventory status does not read",
        "OperatorPolicy allows sqs:GetQueueAttributes on LambdaAsyncDlq, which inventory status does not read"]


def test_an_alarm_outside_the_describe_alarms_pattern_is_caught(post):
    post["Resources"]["FanoutErrorsAlarm"]["Properties"]["AlarmName"] = {"Fn::Sub": "pipeline-fanout-errors-${EnvironmentSuffix}"}
    pattern = "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:inventory-*-${EnvironmentSuffix}"
    assert lp.check_operator_status_resources(post) == [
        f"OperatorPolicy: cloudwatch:DescribeAlarms on {pattern} does not cover FanoutErrorsAlarm "
        "(pipeline-fanout-errors-${EnvironmentSuffix})"]


def test_a_pattern_narrower_than_the_status_prefix_or_a_composite_alarm_is_caught(post):
    operator_statement(post, "ReadThePipelinesAlarms")["Resource"] = {"Fn::Sub": "arn:aws:cloudwatch:r:1:alarm:inventory-fanout-*"}
    post["Resources"]["Composite"] = {"Type": "AWS::CloudWatch::CompositeAlarm", "Properties": {}}
    found = lp.check_operator_status_resources(post)
    assert "OperatorPolicy: cloudwatch:DescribeAlarms on arn:aws:cloudwatch:r:1:alarm:inventory-fanout-* does not cover " \
        "ExecutionsFailedAlarm (inventory-executions-failed-${EnvironmentSuffix})" in found
    assert found[-1] == 'Composite is a composite alarm: DescribeAlarms returns it only with Resource "*"'
