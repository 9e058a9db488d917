"""The project's template rules: each function takes a template (as loaded by cfn-lint's
CloudFormation-aware YAML loader: `!Sub x` becomes {"Fn::Sub": "x"}) and returns the list of
violations, one readable line each. An empty list means the rule holds."""

from __future__ import annotations

import fnmatch
import json
import re
from typing import Any, Iterator

SUFFIX = "EnvironmentSuffix"

# The property that names the resource itself, per type.
NAME_PROPERTY = {
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Serverless::StateMachine": "Name",
    "AWS::StepFunctions::StateMachine": "StateMachineName",
    "AWS::Serverless::HttpApi": "Name",
    "AWS::Serverless::LayerVersion": "LayerName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SNS::Topic": "TopicName",
    "AWS::S3::Bucket": "BucketName",
    "AWS::Kinesis::Stream": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::CloudWatch::Alarm": "AlarmName",
    "AWS::CloudWatch::Dashboard": "DashboardName",
    "AWS::Events::Rule": "Name",
    "AWS::EC2::SecurityGroup": "GroupName",
    "AWS::RDS::DBInstance": "DBInstanceIdentifier",
    "AWS::RDS::DBSubnetGroup": "DBSubnetGroupName",
    "AWS::RDS::DBParameterGroup": "DBParameterGroupName",
    "AWS::ElastiCache::ReplicationGroup": "ReplicationGroupId",
    "AWS::ElastiCache::CacheCluster": "ClusterName",
    "AWS::ElastiCache::SubnetGroup": "CacheSubnetGroupName",
    "AWS::IAM::Role": "RoleName",
    "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
    "AWS::KMS::Alias": "AliasName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::DynamoDB::Table": "TableName",
}
# Resources named only by their Name tag.
NAMED_BY_TAG = {"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::RouteTable"}
# Properties ending in "Name" that name something else than the resource.
NOT_A_NAME = {"ServiceName", "DBName", "LogGroupName", "EngineName", "KeyName",
              "TargetGroupName"}  # an RDS Proxy's target group is always named "default"

# Types whose DeletionPolicy defaults to Snapshot: they must say Delete explicitly.
SNAPSHOT_BY_DEFAULT = {
    "AWS::RDS::DBInstance",
    "AWS::RDS::DBCluster",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::CacheCluster",
    "AWS::Neptune::DBCluster",
    "AWS::Redshift::Cluster",
    "AWS::DocDB::DBCluster",
}
KEEPING_POLICIES = {"Retain", "RetainExceptOnCreate", "Snapshot"}

# Data stores, and where each must name the customer-managed key (and what else must hold).
DATA_STORE_KEY = {
    "AWS::Kinesis::Stream": [("StreamEncryption", "KeyId")],
    "AWS::S3::Bucket": [
        ("BucketEncryption", "ServerSideEncryptionConfiguration", 0, "ServerSideEncryptionByDefault", "KMSMasterKeyID")
    ],
    "AWS::RDS::DBInstance": [("KmsKeyId",)],
    "AWS::RDS::DBCluster": [("KmsKeyId",)],
    "AWS::ElastiCache::ReplicationGroup": [("KmsKeyId",)],
    "AWS::SQS::Queue": [("KmsMasterKeyId",)],
    "AWS::SNS::Topic": [("KmsMasterKeyId",)],
    "AWS::Logs::LogGroup": [("KmsKeyId",)],
    "AWS::StepFunctions::StateMachine": [("EncryptionConfiguration", "KmsKeyId")],
    "AWS::DynamoDB::Table": [("SSESpecification", "KMSMasterKeyId")],
}
DATA_STORE_FLAGS = {
    "AWS::RDS::DBInstance": [("StorageEncrypted", True)],
    "AWS::RDS::DBCluster": [("StorageEncrypted", True)],
    "AWS::ElastiCache::ReplicationGroup": [("AtRestEncryptionEnabled", True), ("TransitEncryptionEnabled", True)],
}
# Data stores that cannot take a customer key at all.
NO_CUSTOMER_KEY_POSSIBLE = {"AWS::ElastiCache::CacheCluster"}

MIN_RETENTION_DAYS = 1095


def resources(template: dict) -> Iterator[tuple[str, dict]]:
    for logical, resource in (template.get("Resources") or {}).items():
        yield logical, resource


def props(resource: dict) -> dict:
    return resource.get("Properties") or {}


def mentions_suffix(value: Any) -> bool:
    """Whether a name is built with the suffix as `...-${EnvironmentSuffix}`."""
    if isinstance(value, dict):
        if "Fn::Sub" in value:
            text = value["Fn::Sub"] if isinstance(value["Fn::Sub"], str) else value["Fn::Sub"][0]
            return "-${" + SUFFIX + "}" in text
        if "Fn::Join" in value:
            sep, parts = value["Fn::Join"]
            return any(p == {"Ref": SUFFIX} for p in parts) and (sep == "-" or any(
                isinstance(p, str) and p.endswith("-") for p in parts))
    return False


def check_suffix(template: dict) -> list[str]:
    """Every named resource carries `-${EnvironmentSuffix}` in its name."""
    out = []
    for logical, res in resources(template):
        p, kind = props(res), res.get("Type", "")
        names = {}
        if kind in NAME_PROPERTY and NAME_PROPERTY[kind] in p:
            names[NAME_PROPERTY[kind]] = p[NAME_PROPERTY[kind]]
        elif kind not in NAME_PROPERTY:
            names.update({k: v for k, v in p.items() if k.endswith("Name") and k not in NOT_A_NAME
                          and not (isinstance(v, dict) and ("Ref" in v or "Fn::GetAtt" in v))})
        if kind in NAMED_BY_TAG or any(t.get("Key") == "Name" for t in tag_list(p)):
            name_tags = [t.get("Value") for t in tag_list(p) if t.get("Key") == "Name"]
            if not name_tags:
                out.append(f"{logical} ({kind}) has no Name tag")
            names.update({"Tag Name": v for v in name_tags})
        for key, value in names.items():
            if not mentions_suffix(value):
                out.append(f"{logical} ({kind}) {key} {json.dumps(value)} lacks -${{{SUFFIX}}}")
    return out


def tag_list(p: dict) -> list[dict]:
    tags = p.get("Tags")
    return tags if isinstance(tags, list) else []


def check_destroyable(template: dict) -> list[str]:
    """No Retain/Snapshot policies, no deletion protection anywhere."""
    out = []
    for logical, res in resources(template):
        kind = res.get("Type", "")
        for policy in ("DeletionPolicy", "UpdateReplacePolicy"):
            if res.get(policy) in KEEPING_POLICIES:
                out.append(f"{logical} ({kind}) has {policy}: {res.get(policy)}")
        if kind in SNAPSHOT_BY_DEFAULT and res.get("DeletionPolicy") != "Delete":
            out.append(f"{logical} ({kind}) defaults to a snapshot on deletion: set DeletionPolicy: Delete")
        if props(res).get("RetentionPolicy") == "Retain":
            out.append(f"{logical} ({kind}) has RetentionPolicy: Retain")
        for path, value in walk(props(res)):
            if path and path[-1] in ("DeletionProtection", "DeletionProtectionEnabled") and value in (True, "true"):
                out.append(f"{logical} ({kind}) enables {'.'.join(map(str, path))}")
    return out


def walk(value: Any, path: tuple = ()) -> Iterator[tuple[tuple, Any]]:
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from walk(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from walk(v, path + (i,))


def dig(value: Any, path: tuple) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def refers_to_kms_key(template: dict, value: Any) -> bool:
    """`!Ref Key` or `!GetAtt Key.Arn` where Key is an AWS::KMS::Key of this template."""
    keys = {l for l, r in resources(template) if r.get("Type") == "AWS::KMS::Key"}
    if isinstance(value, dict):
        if value.get("Ref") in keys:
            return True
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt and getatt[0] in keys:
            return True
        if isinstance(getatt, str) and getatt.split(".")[0] in keys:
            return True
    return False


def check_customer_key(template: dict) -> list[str]:
    """Every data store is encrypted with this template's customer-managed key."""
    out = []
    for logical, res in resources(template):
        kind, p = res.get("Type", ""), props(res)
        if kind in NO_CUSTOMER_KEY_POSSIBLE:
            out.append(f"{logical} ({kind}) cannot be encrypted with a customer key: use a replication group")
            continue
        for path in DATA_STORE_KEY.get(kind, []):
            if not refers_to_kms_key(template, dig(p, path)):
                out.append(f"{logical} ({kind}) {'.'.join(map(str, path))} does not name the customer key")
        for flag, expected in DATA_STORE_FLAGS.get(kind, []):
            if p.get(flag) not in (expected, str(expected).lower()):
                out.append(f"{logical} ({kind}) {flag} is not {expected}")
    return out


def check_no_secret_created(template: dict) -> list[str]:
    """The stack reads existing secrets; it creates none."""
    return [f"{logical} creates a secret ({res['Type']}): pass an existing one as a parameter"
            for logical, res in resources(template)
            if res.get("Type", "").startswith("AWS::SecretsManager::Secret")]


def check_function_log_groups(template: dict) -> list[str]:
    """Every function and state machine logs to its own log group of this template, which has a
    retention and DeletionPolicy: Delete."""
    out = []
    groups = {l: r for l, r in resources(template) if r.get("Type") == "AWS::Logs::LogGroup"}
    for logical, group in groups.items():
        if "RetentionInDays" not in props(group):
            out.append(f"{logical} (log group) has no RetentionInDays")
        if group.get("DeletionPolicy") != "Delete":
            out.append(f"{logical} (log group) does not set DeletionPolicy: Delete")
    used: dict[str, str] = {}
    for logical, res in resources(template):
        kind, p = res.get("Type", ""), props(res)
        if kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            ref = dig(p, ("LoggingConfig", "LogGroup"))
        elif kind == "AWS::StepFunctions::StateMachine":
            ref = dig(p, ("LoggingConfiguration", "Destinations", 0, "CloudWatchLogsLogGroup", "LogGroupArn"))
        else:
            continue
        target = None
        if isinstance(ref, dict):
            target = ref.get("Ref") or (ref.get("Fn::GetAtt") or [None])[0]
        if target not in groups:
            out.append(f"{logical} ({kind}) does not log to a log group of this template")
        elif target in used:
            out.append(f"{logical} shares log group {target} with {used[target]}")
        else:
            used[target] = logical
    return out


POLICY_PATHS = {
    "AWS::IAM::Role": [("Policies", "*", "PolicyDocument")],
    "AWS::IAM::ManagedPolicy": [("PolicyDocument",)],
    "AWS::IAM::Policy": [("PolicyDocument",)],
    "AWS::KMS::Key": [("KeyPolicy",)],
    "AWS::S3::BucketPolicy": [("PolicyDocument",)],
    "AWS::SQS::QueuePolicy": [("PolicyDocument",)],
    "AWS::SNS::TopicPolicy": [("PolicyDocument",)],
    "AWS::EC2::VPCEndpoint": [("PolicyDocument",)],
    "AWS::Serverless::Function": [("Policies", "*")],
    "AWS::Serverless::StateMachine": [("Policies", "*")],
}


def documents(p: dict, path: tuple) -> Iterator[Any]:
    if not path:
        yield p
        return
    head, rest = path[0], path[1:]
    if head == "*":
        for item in p if isinstance(p, list) else []:
            yield from documents(item, rest)
    elif isinstance(p, dict) and head in p:
        yield from documents(p[head], rest)


def strings(value: Any) -> list[str]:
    """The literal text of a policy value (Fn::Sub templates included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return [sub if isinstance(sub, str) else sub[0]]
    if isinstance(value, dict) and "Fn::Join" in value:
        return ["".join(s for s in strings(value["Fn::Join"][1]))]
    return []


def is_wide_resource(arn: str) -> bool:
    """`*`, or a wildcard anywhere but a trailing `/*` or `:*` under one named resource."""
    trimmed = re.sub(r"(/\*|:\*)$", "", arn)
    return "*" in trimmed or arn == "*"


def check_wildcards(template: dict) -> list[str]:
    """A statement with `*` in Action, a wide `*` Resource, or an Allow to Principal `*` has its
    Sid listed with a reason in the resource's Metadata.WildcardReasons."""
    out = []
    for logical, res in resources(template):
        kind = res.get("Type", "")
        reasons = (res.get("Metadata") or {}).get("WildcardReasons") or {}
        for path in POLICY_PATHS.get(kind, []):
            for doc in documents(props(res), path):
                statements = doc.get("Statement", []) if isinstance(doc, dict) else []
                for st in statements if isinstance(statements, list) else [statements]:
                    if not isinstance(st, dict):
                        continue
                    wild = []
                    if any("*" in a for a in strings(st.get("Action")) + strings(st.get("NotAction"))):
                        wild.append("Action")
                    if any(is_wide_resource(r) for r in strings(st.get("Resource")) + strings(st.get("NotResource"))):
                        wild.append("Resource")
                    principal = st.get("Principal")
                    if st.get("Effect") == "Allow" and (principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*")):
                        wild.append("Principal")
                    if not wild:
                        continue
                    sid = st.get("Sid")
                    reason = reasons.get(sid) if sid else None
                    if not isinstance(reason, str) or len(reason.strip()) < 20:
                        out.append(f"{logical} ({kind}) statement {sid or '(no Sid)'} uses * in {'/'.join(wild)} "
                                   f"without a reason in Metadata.WildcardReasons")
    return out


def check_retention(template: dict) -> list[str]:
    """No lifecycle rule deletes data (current or noncurrent versions) before 1095 days."""
    out = []
    for logical, res in resources(template):
        if res.get("Type") != "AWS::S3::Bucket":
            continue
        rules = dig(props(res), ("LifecycleConfiguration", "Rules")) or []
        for rule in rules:
            if rule.get("Status") != "Enabled":
                continue
            rid = rule.get("Id", "(no Id)")
            days = rule.get("ExpirationInDays")
            if days is not None and int(days) < MIN_RETENTION_DAYS:
                out.append(f"{logical} rule {rid} expires objects after {days} days (< {MIN_RETENTION_DAYS})")
            if "ExpirationDate" in rule:
                out.append(f"{logical} rule {rid} expires objects on a fixed date")
            noncurrent = dig(rule, ("NoncurrentVersionExpiration", "NoncurrentDays"))
            if noncurrent is None:
                noncurrent = rule.get("NoncurrentVersionExpirationInDays")
            if noncurrent is not None and int(noncurrent) < MIN_RETENTION_DAYS:
                out.append(f"{logical} rule {rid} expires noncurrent versions after {noncurrent} days (< {MIN_RETENTION_DAYS})")
    return out


TAGS = ("Project", "Environment")


def check_tags(template: dict, taggable: set[str]) -> list[str]:
    """Every resource of a type that takes tags carries the Project and Environment tags (SAM
    functions get them from Globals)."""
    out = []
    global_tags = dig(template, ("Globals", "Function", "Tags")) or {}
    for logical, res in resources(template):
        kind, p = res.get("Type", ""), props(res)
        if kind not in taggable:
            continue
        tags = p.get("Tags")
        if kind == "AWS::Serverless::Function":
            names = set(global_tags) | set(tags or {})
        elif isinstance(tags, dict):
            names = set(tags)
        else:
            names = {t.get("Key") for t in tags or [] if isinstance(t, dict)}
        missing = [t for t in TAGS if t not in names]
        if missing:
            out.append(f"{logical} ({kind}) lacks tags {missing}")
    return out


MASTER_SECRET = "DbSecretArn"
# The master secret's conventional name (inventory/<suffix>/db-master), used when DbSecretArn is empty.
MASTER_SECRET_NAME = "/db-master"
MIGRATOR_BINARY = "schema-migrate"
FUNCTION_TYPES = ("AWS::Serverless::Function", "AWS::Lambda::Function")
IDENTITY_POLICY_PATHS = {
    "AWS::IAM::Role": [("Policies", "*", "PolicyDocument")],
    "AWS::IAM::ManagedPolicy": [("PolicyDocument",)],
    "AWS::IAM::Policy": [("PolicyDocument",)],
    "AWS::Serverless::Function": [("Policies", "*")],
}


def mentions_parameter(value: Any, name: str) -> bool:
    """Whether `!Ref name` or `${name}` (in a !Sub) appears anywhere in value."""
    for _, v in walk(value):
        if isinstance(v, dict) and v.get("Ref") == name:
            return True
        if isinstance(v, dict) and "Fn::Sub" in v and any("${" + name + "}" in t for t in strings(v)):
            return True
    return False


def mentions_master_secret(value: Any) -> bool:
    """The master secret by its parameter (`DbSecretArn`) or by its conventional name."""
    if mentions_parameter(value, MASTER_SECRET):
        return True
    return any(MASTER_SECRET_NAME in t for _, v in walk(value) if isinstance(v, (str, dict)) for t in strings(v))


def may_read_secret(statement: dict, secret_parameter: str) -> bool:
    """An Allow whose actions include secretsmanager:GetSecretValue and whose resources name the
    secret or are wide enough to cover it."""
    if not isinstance(statement, dict) or statement.get("Effect") != "Allow":
        return False
    # A NotAction allows everything else: taken as covering reads.
    actions = strings(statement.get("Action"))
    if "NotAction" not in statement and not any(
            fnmatch.fnmatch("secretsmanager:getsecretvalue", a.lower()) for a in actions):
        return False
    if "NotResource" in statement:
        return True
    resource = statement.get("Resource")
    wide = any(r == "*" or ("secretsmanager" in r and "*" in r) for r in strings(resource))
    if secret_parameter == MASTER_SECRET:
        return wide or mentions_master_secret(resource)
    return wide or mentions_parameter(resource, secret_parameter)


def logical_of(value: Any) -> str | None:
    """X of `!GetAtt X.Attr` or `!Ref X`: the resource a value refers to."""
    if isinstance(value, dict):
        if "Ref" in value:
            return value["Ref"]
        getatt = value.get("Fn::GetAtt")
        if isinstance(getatt, list) and getatt:
            return getatt[0]
        if isinstance(getatt, str):
            return getatt.split(".")[0]
    return None


def check_master_secret_only_for_migrations(template: dict) -> list[str]:
    """Only schema-migrate can read the database master user's secret (`DbSecretArn`): no other
    function gets it in its environment, and no identity policy lets anyone else read it. The
    functions log in as a member of the least-privilege writer role instead."""
    out = []
    migrator_roles, other_roles = set(), set()
    for logical, res in resources(template):
        if res.get("Type") not in FUNCTION_TYPES:
            continue
        p = props(res)
        is_migrator = dig(res, ("Metadata", "BuildProperties", "Binary")) == MIGRATOR_BINARY
        (migrator_roles if is_migrator else other_roles).add(logical_of(p.get("Role")))
        if not is_migrator and mentions_master_secret(dig(p, ("Environment", "Variables"))):
            out.append(f"{logical} gets the master database secret ({MASTER_SECRET}) in its environment")
    for logical, res in resources(template):
        kind = res.get("Type", "")
        if logical in migrator_roles and logical not in other_roles:
            continue
        for path in IDENTITY_POLICY_PATHS.get(kind, []):
            for doc in documents(props(res), path):
                statements = doc.get("Statement", []) if isinstance(doc, dict) else []
                for st in statements if isinstance(statements, list) else [statements]:
                    if may_read_secret(st, MASTER_SECRET):
                        sid = st.get("Sid", "(no Sid)") if isinstance(st, dict) else "(no Sid)"
                        out.append(f"{logical} ({kind}) statement {sid} can read the master database secret "
                                   f"({MASTER_SECRET}); only {MIGRATOR_BINARY}'s own role may")
    return out


def check_event_targets(template: dict) -> list[str]:
    """EventBridge delivers to a target with a retry policy and keeps what it could not deliver:
    every target of an AWS::Events::Rule has a RetryPolicy and a DeadLetterConfig naming an SQS
    queue of the template, encrypted with the customer key, whose queue policy lets
    events.amazonaws.com SendMessage for that rule (EventBridge user guide, "Retry policies and
    dead-letter queues"). And no rule sends each execution's status change to an SNS topic: a
    database outage fails thousands of executions, and the ExecutionsFailed alarm says it once."""
    rs = template.get("Resources") or {}
    out = []
    for logical, res in resources(template):
        if res.get("Type") != "AWS::Events::Rule":
            continue
        p = props(res)
        per_execution = "Step Functions Execution Status Change" in strings(
            dig(p, ("EventPattern", "detail-type")))
        for target in p.get("Targets") or []:
            tid = f"{logical} target {target.get('Id')}"
            if per_execution and (rs.get(logical_of(target.get("Arn")) or "") or {}).get("Type") == "AWS::SNS::Topic":
                out.append(f"{tid} sends every failed execution to the topic {logical_of(target.get('Arn'))}; "
                           "alarm on the failed-execution count instead")
            if not target.get("RetryPolicy"):
                out.append(f"{tid} has no RetryPolicy")
            queue = logical_of(dig(target, ("DeadLetterConfig", "Arn")))
            if not queue:
                out.append(f"{tid} has no DeadLetterConfig")
                continue
            q = rs.get(queue) or {}
            if q.get("Type") != "AWS::SQS::Queue":
                out.append(f"{tid}: its dead-letter queue {queue} is not an SQS queue of the template")
                continue
            if not props(q).get("KmsMasterKeyId"):
                out.append(f"{tid}: its dead-letter queue {queue} is not encrypted with the customer key")
            allowed = False
            for _, qp in resources(template):
                if qp.get("Type") != "AWS::SQS::QueuePolicy" or queue not in {logical_of(x) for x in props(qp).get("Queues") or []}:
                    continue
                for st in dig(props(qp), ("PolicyDocument", "Statement")) or []:
                    if (isinstance(st, dict) and st.get("Effect") == "Allow"
                            and "events.amazonaws.com" in strings(dig(st, ("Principal", "Service")))
                            and "sqs:SendMessage" in strings(st.get("Action"))
                            and logical in {logical_of(v) for op in (st.get("Condition") or {}).values()
                                            if isinstance(op, dict) for v in [op.get("aws:SourceArn")]}):
                        allowed = True
            if not allowed:
                out.append(f"{tid}: no queue policy lets events.amazonaws.com SendMessage to {queue} "
                           f"for this rule (aws:SourceArn)")
    return out


# The functions that decode the events Persist writes, by their binaries: the read API's history.
# (schema-migrate copies rows and the projection without decoding events; the other reader is
# the operator's `inventory rebuild-projection`, upgraded with the stack, docs/deploy.md.)
EVENT_STORE_WRITER = "persist"
EVENT_STORE_READERS = ("product-api",)


def depends_on(template: dict) -> dict[str, set[str]]:
    """Each resource's direct dependencies: its DependsOn, and every resource it names with
    Ref or Fn::GetAtt (CloudFormation orders those the same way). A name under Fn::If is not
    counted: the branch that names it may not be the one taken."""
    names = dict(resources(template))
    out = {}
    for logical, res in names.items():
        direct = res.get("DependsOn") or []
        deps = set([direct] if isinstance(direct, str) else direct)
        for path, value in walk(res.get("Properties") or {}):
            target = logical_of(value)
            if isinstance(target, str) and target in names and "Fn::If" not in path:
                deps.add(target)
        out[logical] = deps
    return out


def check_event_store_readers_before_writer(template: dict) -> list[str]:
    """A release may change how Persist stores an event (migration 10 moved it from a JSON
    payload to typed columns), and the previous release's readers cannot read the new form. So
    on an update CloudFormation must update every function that reads events before Persist:
    Persist depends, directly or through others, on each of them. A template without exactly
    one Persist, or without a reader, fails: the rule would otherwise pass for want of them."""
    graph = depends_on(template)
    binary = {logical: dig(res, ("Metadata", "BuildProperties", "Binary"))
              for logical, res in resources(template) if res.get("Type") in FUNCTION_TYPES}
    writers = sorted(l for l, b in binary.items() if b == EVENT_STORE_WRITER)
    if len(writers) != 1:
        return [f"expected one function with the binary {EVENT_STORE_WRITER}, found {writers}"]
    out = []
    reached, todo = set(), [writers[0]]
    while todo:
        for dep in graph.get(todo.pop(), ()):
            if dep not in reached:
                reached.add(dep)
                todo.append(dep)
    for name in EVENT_STORE_READERS:
        readers = sorted(l for l, b in binary.items() if b == name)
        if not readers:
            out.append(f"no function with the binary {name}, which reads the events")
        for reader in readers:
            if reader not in reached:
                out.append(f"{writers[0]} may be updated before {reader}, which reads the events it "
                           f"writes: add {reader} to its DependsOn")
    return out


ALL_RULES = [
    check_event_targets,
    check_suffix,
    check_destroyable,
    check_customer_key,
    check_no_secret_created,
    check_master_secret_only_for_migrations,
    check_function_log_groups,
    check_wildcards,
    check_retention,
    check_event_store_readers_before_writer,
]
