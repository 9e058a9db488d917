"""The project's template policy: each rule holds on infra/template.yaml, and each rule
catches a small bad snippet (so the test can fail)."""

from __future__ import annotations

import pytest
from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

import policy
from conftest import load_snippet

SAM_TAGGABLE = {"AWS::Serverless::Function", "AWS::Serverless::HttpApi", "AWS::Serverless::StateMachine"}


def taggable_types(template: dict) -> set[str]:
    """Types of this template whose CloudFormation schema has a Tags property."""
    out = set()
    for _, res in policy.resources(template):
        kind = res.get("Type", "")
        if kind in SAM_TAGGABLE:
            out.add(kind)
        elif kind.startswith("AWS::") and not kind.startswith("AWS::Serverless::"):
            schema = PROVIDER_SCHEMA_MANAGER.get_resource_schema("us-east-1", kind)
            if "Tags" in schema.schema.get("properties", {}):
                out.add(kind)
    return out


# ------------------------------------------------------------------ the real template
@pytest.mark.parametrize("rule", policy.ALL_RULES, ids=lambda r: r.__name__)
def test_the_template_follows_the_rule(template, rule):
    assert rule(template) == []


def test_every_taggable_resource_of_the_template_is_tagged(template):
    taggable = taggable_types(template)
    assert "AWS::CloudWatch::Alarm" in taggable  # the schema lookup works
    assert policy.check_tags(template, taggable) == []


def test_the_template_declares_every_function_of_the_contract(template):
    binaries = {
        res["Metadata"]["BuildProperties"]["Binary"]
        for _, res in policy.resources(template)
        if res.get("Type") == "AWS::Serverless::Function"
    }
    assert binaries == {"validate", "archive", "persist", "cache-invalidate", "schema-migrate", "fanout",
                        "bucket-emptier", "product-api"}


def test_the_stream_mapping_reports_item_failures_and_bounds_retries(template):
    stream = template["Resources"]["FanoutFunction"]["Properties"]["Events"]["Stream"]["Properties"]
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["MaximumRetryAttempts"] == {"Ref": "FanoutMaximumRetryAttempts"}
    assert stream["MaximumRecordAgeInSeconds"] == {"Ref": "FanoutMaximumRecordAgeSeconds"}
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {"Fn::GetAtt": ["FanoutDlq", "Arn"]}


def test_the_state_machine_role_may_invoke_only_the_four_task_functions(template):
    statements = template["Resources"]["PipelineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    invoking = [s for s in statements if "lambda" in str(s["Action"])]
    assert len(invoking) == 1 and invoking[0]["Action"] == "lambda:InvokeFunction"
    targets = {r["Fn::GetAtt"][0] for r in invoking[0]["Resource"]}
    assert targets == {"ValidateFunction", "ArchiveFunction", "PersistFunction", "CacheInvalidateFunction"}


def test_the_outputs_carry_the_keys_the_integration_tests_read(template):
    required = {"StreamName", "StreamArn", "ArchiveBucketName", "StateMachineArn", "FanoutDlqUrl", "AlarmTopicArn",
                "ProductApiUrl", "DbEndpoint", "CacheEndpoint", "KmsKeyArn"}
    assert required <= set(template["Outputs"])


SECRET_NAMES = {"DbSecretArn": "db-master", "AppDbSecretArn": "db-app", "CacheAuthSecretArn": "cache-auth"}


def secret_id(parameter: str) -> dict:
    """The override ARN if given, else the secret's conventional name."""
    return {"Fn::If": [f"Has{parameter}", {"Ref": parameter},
                       {"Fn::Sub": f"inventory/${{EnvironmentSuffix}}/{SECRET_NAMES[parameter]}"}]}


def secret_resource(parameter: str) -> dict:
    """The override ARN if given, else the ARN pattern of the conventional name."""
    return {"Fn::If": [f"Has{parameter}", {"Ref": parameter}, {"Fn::Sub": (
        "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:"
        f"inventory/${{EnvironmentSuffix}}/{SECRET_NAMES[parameter]}-??????")}]}


def test_the_database_and_cache_take_credentials_only_from_the_existing_secrets(template):
    db = template["Resources"]["Database"]["Properties"]
    cache = template["Resources"]["Cache"]["Properties"]
    for prop, key in (("MasterUsername", "username"), ("MasterUserPassword", "password")):
        assert db[prop]["Fn::Sub"] == [f"{{{{resolve:secretsmanager:${{Secret}}:SecretString:{key}}}}}",
                                       {"Secret": secret_id("DbSecretArn")}]
    assert cache["AuthToken"]["Fn::Sub"] == ["{{resolve:secretsmanager:${Secret}:SecretString:auth_token}}",
                                             {"Secret": secret_id("CacheAuthSecretArn")}]


def test_the_functions_log_in_with_their_own_secret_and_only_schema_migrate_reads_the_masters(template):
    res = template["Resources"]
    for function in ("ValidateFunction", "PersistFunction", "ProductApiFunction"):
        env = res[function]["Properties"]["Environment"]["Variables"]
        assert env["DB_SECRET_ARN"] == secret_id("AppDbSecretArn"), function
        depends = res[function]["DependsOn"]
        assert "SchemaMigration" in (depends if isinstance(depends, list) else [depends]), \
            f"{function} starts before its login exists"
    migrate_env = res["SchemaMigrateFunction"]["Properties"]["Environment"]["Variables"]
    assert migrate_env["DB_SECRET_ARN"] == secret_id("DbSecretArn")
    assert migrate_env["APP_DB_SECRET_ARN"] == secret_id("AppDbSecretArn")
    statements = res["SchemaMigrateRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    readable = [s["Resource"] for s in statements if s["Action"] == "secretsmanager:GetSecretValue"]
    assert readable == [secret_resource("DbSecretArn"), secret_resource("AppDbSecretArn")]
    # Every function role that reads a database secret reads the functions' one, with nothing wider.
    for role in ("ValidateRole", "PersistRole", "ProductApiRole"):
        statements = res[role]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        reads = [s for s in statements if "secretsmanager" in str(s["Action"])]
        assert len(reads) == 1 and reads[0]["Action"] == "secretsmanager:GetSecretValue", role
        assert policy.mentions_parameter(reads[0]["Resource"], "AppDbSecretArn"), role
        assert not policy.mentions_parameter(reads[0]["Resource"], "DbSecretArn"), role


# ------------------------------------------------------------------ each rule can fail
KEY = """
  Key:
    Type: AWS::KMS::Key
    DeletionPolicy: Delete
    Properties: {}
"""


def resources_snippet(body: str) -> dict:
    return load_snippet("Resources:\n" + KEY + body)


def test_a_name_without_the_suffix_is_caught():
    t = resources_snippet("""
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: inventory-dlq
      KmsMasterKeyId: !GetAtt Key.Arn
  Vpc:
    Type: AWS::EC2::VPC
    Properties:
      CidrBlock: 10.0.0.0/16
""")
    problems = policy.check_suffix(t)
    assert any("Queue" in p and "QueueName" in p for p in problems)
    assert any("Vpc" in p and "Name tag" in p for p in problems)


def test_a_name_with_the_suffix_passes():
    t = resources_snippet("""
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub inventory-dlq-${EnvironmentSuffix}
""")
    assert policy.check_suffix(t) == []


def test_a_retain_policy_a_default_snapshot_and_deletion_protection_are_caught():
    t = resources_snippet("""
  Bucket:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
  Db:
    Type: AWS::RDS::DBInstance
    Properties:
      DeletionProtection: true
""")
    problems = policy.check_destroyable(t)
    assert any("Bucket" in p and "Retain" in p for p in problems)
    assert any("Db" in p and "snapshot" in p for p in problems)
    assert any("Db" in p and "DeletionProtection" in p for p in problems)


def test_data_stores_without_the_customer_key_are_caught():
    t = resources_snippet("""
  Stream:
    Type: AWS::Kinesis::Stream
    Properties:
      StreamEncryption: { EncryptionType: KMS, KeyId: alias/aws/kinesis }
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      BucketEncryption:
        ServerSideEncryptionConfiguration:
          - ServerSideEncryptionByDefault: { SSEAlgorithm: AES256 }
  Redis:
    Type: AWS::ElastiCache::CacheCluster
    Properties: { Engine: redis }
  Group:
    Type: AWS::ElastiCache::ReplicationGroup
    Properties: { KmsKeyId: !Ref Key, AtRestEncryptionEnabled: true, TransitEncryptionEnabled: false }
""")
    problems = policy.check_customer_key(t)
    assert any(p.startswith("Stream ") for p in problems)
    assert any(p.startswith("Bucket ") for p in problems)
    assert any(p.startswith("Redis ") for p in problems)
    assert any(p.startswith("Group ") and "TransitEncryptionEnabled" in p for p in problems)


def test_a_created_secret_is_caught():
    t = resources_snippet("""
  DbSecret:
    Type: AWS::SecretsManager::Secret
    Properties:
      GenerateSecretString: { SecretStringTemplate: '{"username":"postgres"}', GenerateStringKey: password }
""")
    assert len(policy.check_no_secret_created(t)) == 1


def test_a_function_other_than_schema_migrate_that_can_read_the_master_secret_is_caught():
    t = resources_snippet("""
  MigrateRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: migrate
          PolicyDocument:
            Statement:
              - Sid: ReadMasterDbSecret
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Ref DbSecretArn
  Migrate:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: schema-migrate } }
    Properties:
      Role: !GetAtt MigrateRole.Arn
      Environment: { Variables: { DB_SECRET_ARN: !Ref DbSecretArn } }
  PersistRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: persist
          PolicyDocument:
            Statement:
              - Sid: ReadBothDbSecrets
                Effect: Allow
                Action: [secretsmanager:GetSecretValue]
                Resource: [!Ref AppDbSecretArn, !Sub "${DbSecretArn}"]
              - Sid: ReadAppDbSecretOnly
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Ref AppDbSecretArn
  Persist:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: persist } }
    Properties:
      Role: !GetAtt PersistRole.Arn
      Environment: { Variables: { DB_SECRET_ARN: !Ref DbSecretArn } }
  Shared:
    Type: AWS::IAM::ManagedPolicy
    Properties:
      PolicyDocument:
        Statement:
          - Sid: AnySecret
            Effect: Allow
            Action: "secretsmanager:Get*"
            Resource: "*"
          - Sid: Denied
            Effect: Deny
            Action: secretsmanager:GetSecretValue
            Resource: !Ref DbSecretArn
""")
    problems = policy.check_master_secret_only_for_migrations(t)
    assert len(problems) == 3, problems
    assert any(p.startswith("Persist gets the master") for p in problems)
    assert any(p.startswith("PersistRole ") and "ReadBothDbSecrets" in p for p in problems)
    assert any(p.startswith("Shared ") and "AnySecret" in p for p in problems)


def test_the_master_secret_by_its_conventional_name_is_caught_too():
    t = resources_snippet("""
  PersistRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: persist
          PolicyDocument:
            Statement:
              - Sid: ReadMasterByName
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Sub "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:inventory/${EnvironmentSuffix}/db-master-??????"
              - Sid: ReadAppByName
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Sub "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:inventory/${EnvironmentSuffix}/db-app-??????"
  Persist:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: persist } }
    Properties:
      Role: !GetAtt PersistRole.Arn
      Environment: { Variables: { DB_SECRET_ARN: !Sub "inventory/${EnvironmentSuffix}/db-master" } }
""")
    problems = policy.check_master_secret_only_for_migrations(t)
    assert sorted(problems) == [
        "Persist gets the master database secret (DbSecretArn) in its environment",
        "PersistRole (AWS::IAM::Role) statement ReadMasterByName can read the master database secret (DbSecretArn); "
        "only schema-migrate's own role may",
    ], problems


def test_a_role_shared_by_schema_migrate_and_another_function_may_not_read_the_master_secret():
    t = resources_snippet("""
  SharedRole:
    Type: AWS::IAM::Role
    Properties:
      Policies:
        - PolicyName: both
          PolicyDocument:
            Statement:
              - Sid: ReadMasterDbSecret
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Ref DbSecretArn
  Migrate:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: schema-migrate } }
    Properties: { Role: !GetAtt SharedRole.Arn }
  Validate:
    Type: AWS::Serverless::Function
    Metadata: { BuildProperties: { Binary: validate } }
    Properties: { Role: !GetAtt SharedRole.Arn }
""")
    problems = policy.check_master_secret_only_for_migrations(t)
    assert len(problems) == 1 and problems[0].startswith("SharedRole "), problems


def test_a_function_without_its_own_log_group_is_caught():
    t = resources_snippet("""
  Logs:
    Type: AWS::Logs::LogGroup
    Properties: { KmsKeyId: !GetAtt Key.Arn }
  One:
    Type: AWS::Serverless::Function
    Properties:
      LoggingConfig: { LogGroup: !Ref Logs }
  Two:
    Type: AWS::Serverless::Function
    Properties:
      LoggingConfig: { LogGroup: !Ref Logs }
  Three:
    Type: AWS::Serverless::Function
    Properties: {}
""")
    problems = policy.check_function_log_groups(t)
    assert any("RetentionInDays" in p for p in problems)
    assert any("DeletionPolicy" in p for p in problems)
    assert any(p.startswith("Two shares") for p in problems)
    assert any(p.startswith("Three ") for p in problems)


def test_a_wildcard_without_a_reason_is_caught_and_one_with_a_reason_passes():
    t = resources_snippet("""
  Role:
    Type: AWS::IAM::Role
    Metadata:
      WildcardReasons:
        Tracing: X-Ray supports no resource-level permissions at all.
    Properties:
      Policies:
        - PolicyName: p
          PolicyDocument:
            Statement:
              - Sid: Tracing
                Effect: Allow
                Action: xray:PutTraceSegments
                Resource: "*"
              - Sid: Everything
                Effect: Allow
                Action: "s3:*"
                Resource: !Sub "arn:aws:s3:::bucket-${EnvironmentSuffix}/*"
              - Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: "*"
              - Sid: OneBucketsObjects
                Effect: Allow
                Action: s3:GetObject
                Resource: !Sub "arn:aws:s3:::bucket-${EnvironmentSuffix}/*"
""")
    problems = policy.check_wildcards(t)
    assert len(problems) == 2, problems
    assert any("Everything" in p and "Action" in p for p in problems)
    assert any("(no Sid)" in p and "Resource" in p for p in problems)


def test_a_lifecycle_that_deletes_data_before_three_years_is_caught():
    t = resources_snippet("""
  Bucket:
    Type: AWS::S3::Bucket
    Properties:
      LifecycleConfiguration:
        Rules:
          - Id: short
            Status: Enabled
            ExpirationInDays: 365
          - Id: noncurrent
            Status: Enabled
            ExpirationInDays: 1096
            NoncurrentVersionExpiration: { NoncurrentDays: 30 }
          - Id: disabled
            Status: Disabled
            ExpirationInDays: 1
""")
    problems = policy.check_retention(t)
    assert len(problems) == 2, problems
    assert any("short" in p for p in problems)
    assert any("noncurrent" in p for p in problems)


def test_an_untagged_resource_is_caught():
    t = resources_snippet("""
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      Tags: [{ Key: Project, Value: inventory-pipeline }]
""")
    assert policy.check_tags(t, {"AWS::SQS::Queue"}) == ["Queue (AWS::SQS::Queue) lacks tags ['Environment']"]


EVENT_RULE = """
  Topic:
    Type: AWS::SNS::Topic
  Machine:
    Type: AWS::StepFunctions::StateMachine
  Rule:
    Type: AWS::Events::Rule
    Properties:
      EventPattern:
        source: [aws.states]
        detail-type: [Step Functions Execution Status Change]
        detail: { status: [FAILED], stateMachineArn: [!Ref Machine] }
      Targets:
        - Id: alarm-topic
          Arn: !Ref Topic
"""
EVENT_DLQ = """
  RuleDlq:
    Type: AWS::SQS::Queue
    Properties: { KmsMasterKeyId: !GetAtt Key.Arn }
  RuleDlqPolicy:
    Type: AWS::SQS::QueuePolicy
    Properties:
      Queues: [!Ref RuleDlq]
      PolicyDocument:
        Statement:
          - Effect: Allow
            Principal: { Service: events.amazonaws.com }
            Action: sqs:SendMessage
            Resource: !GetAtt RuleDlq.Arn
            Condition: { ArnEquals: { aws:SourceArn: !GetAtt Rule.Arn } }
"""


def test_the_per_execution_email_rule_is_caught():
    """The rule this template had: every failed execution e-mailed, no retry policy, no DLQ."""
    assert policy.check_event_targets(resources_snippet(EVENT_RULE)) == [
        "Rule target alarm-topic sends every failed execution to the topic Topic; alarm on the "
        "failed-execution count instead",
        "Rule target alarm-topic has no RetryPolicy",
        "Rule target alarm-topic has no DeadLetterConfig"]


def test_an_event_target_needs_an_encrypted_dlq_that_eventbridge_may_write():
    rule = EVENT_RULE.replace("Arn: !Ref Topic", "Arn: !GetAtt Queue.Arn\n"
                              "          RetryPolicy: { MaximumRetryAttempts: 10, MaximumEventAgeInSeconds: 3600 }\n"
                              "          DeadLetterConfig: { Arn: !GetAtt RuleDlq.Arn }")
    queue = "\n  Queue:\n    Type: AWS::SQS::Queue\n"
    assert policy.check_event_targets(resources_snippet(rule + queue + EVENT_DLQ)) == []
    unencrypted = EVENT_DLQ.replace("Properties: { KmsMasterKeyId: !GetAtt Key.Arn }", "Properties: {}")
    assert policy.check_event_targets(resources_snippet(rule + queue + unencrypted)) == [
        "Rule target alarm-topic: its dead-letter queue RuleDlq is not encrypted with the customer key"]
    other_rule = EVENT_DLQ.replace("!GetAtt Rule.Arn", "!GetAtt OtherRule.Arn")
    assert policy.check_event_targets(resources_snippet(rule + queue + other_rule)) == [
        "Rule target alarm-topic: no queue policy lets events.amazonaws.com SendMessage to RuleDlq for this "
        "rule (aws:SourceArn)"]


def event_store_functions(persist_depends_on: str, api_binary: str = "product-api") -> dict:
    return resources_snippet(f"""
  Migrate:
    Type: AWS::Serverless::Function
    Metadata: {{ BuildProperties: {{ Binary: schema-migrate }} }}
  Migration:
    Type: Custom::SchemaMigration
    Properties: {{ ServiceToken: !GetAtt Migrate.Arn }}
  Api:
    Type: AWS::Serverless::Function
    DependsOn: Migration
    Metadata: {{ BuildProperties: {{ Binary: {api_binary} }} }}
  Gate:
    Type: AWS::SQS::Queue
    Properties: {{ QueueName: !If [Never, !GetAtt Api.Arn, plain] }}
  Persist:
    Type: AWS::Serverless::Function
    DependsOn: {persist_depends_on}
    Metadata: {{ BuildProperties: {{ Binary: persist }} }}
""")


def test_persist_updated_before_a_reader_of_its_events_is_caught():
    check = policy.check_event_store_readers_before_writer
    assert check(event_store_functions("Migration")) == [
        "Persist may be updated before Api, which reads the events it writes: add Api to its DependsOn"]
    # A reference under Fn::If is not a dependency: its branch may not be taken.
    assert len(check(event_store_functions("Gate"))) == 1
    # Directly, or through others, it holds.
    assert check(event_store_functions("[Migration, Api]")) == []
    assert check(event_store_functions("[Migration, Gate, Api]")) == []


def test_a_template_without_its_reader_or_with_no_persist_fails_the_rule():
    check = policy.check_event_store_readers_before_writer
    assert check(event_store_functions("Migration", api_binary="something-else")) == [
        "no function with the binary product-api, which reads the events"]
    assert check(resources_snippet("")) == ["expected one function with the binary persist, found []"]
