"""Least privilege, checked against the code, on the template after the SAM transform.

For every AWS::Lambda::Function the rule derives what its role must allow:
- from its code (rust_code.sdk_calls: the SDK operations its crate and the shared modules it
  enables call), mapped to IAM actions (SERVICE_PREFIX, and ACTIONS where the action is not the
  operation's name, per the Service Authorization Reference);
- from its configuration, what Lambda does on its behalf: writing its log group, X-Ray segments
  (Tracing: Active), the VPC network interfaces (VpcConfig), decrypting its environment
  (KmsKeyArn: kms:Decrypt with encryption context aws:lambda:FunctionArn), reading its Kinesis
  event source, sending to its dead-letter queue and on-failure destination;
- KMS through a service (kms:ViaService) when the code or configuration uses a resource
  encrypted with a customer key: an SSE-KMS PutObject, StartExecution of a CMK state machine,
  SendMessage to a CMK queue, reading a CMK stream.

KMS grants are compared with their purpose: (action, "via:<service>") for a kms:ViaService
condition, (action, "lambda-env:<function name>") for the environment's encryption context,
(action, "any") without a condition. The rule fails on every grant the function never needs and
on every need its role does not grant. Other rules: PutObject and GetObject only under a key
prefix the code writes, and only under the prefixes the function itself writes (each prefix has
one writer, PREFIX_WRITERS); the S3 gateway endpoint allows no S3 call that no function in the
VPC makes, on no resource their roles do not name for it, and lets through every call their
roles grant; IAM database authentication only when some role may use it."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path
from typing import Any

import rust_code
from policy import logical_of

SERVICE_PREFIX = {"s3": "s3", "sfn": "states", "secretsmanager": "secretsmanager", "kinesis": "kinesis",
                  "sqs": "sqs", "kms": "kms", "dynamodb": "dynamodb", "sns": "sns", "cloudwatch": "cloudwatch",
                  "cloudformation": "cloudformation", "lambda": "lambda", "rds": "rds",
                  "elasticache": "elasticache"}
# Operations whose IAM action is not "<prefix>:<OperationName>" (Service Authorization Reference,
# "Actions defined by Amazon S3": ListObjectVersions is authorised as s3:ListBucketVersions,
# ListObjects(V2) as s3:ListBucket, HeadObject as s3:GetObject, DeleteObjects per object as
# s3:DeleteObject, or s3:DeleteObjectVersion when a version id is given).
ACTIONS = {
    ("s3", "ListObjectVersions"): ["s3:ListBucketVersions"],
    ("s3", "ListObjectsV2"): ["s3:ListBucket"],
    ("s3", "ListObjects"): ["s3:ListBucket"],
    ("s3", "HeadObject"): ["s3:GetObject"],
    ("s3", "HeadBucket"): ["s3:ListBucket"],
    ("s3", "DeleteObjects"): ["s3:DeleteObject"],
}
LOGS = ["logs:CreateLogStream", "logs:PutLogEvents"]
XRAY = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
VPC_ENI = ["ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets",
           "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
# What the Kinesis event source mapping calls with the function's role (Lambda developer guide,
# "Execution role permissions" for Kinesis; shared-throughput consumers, no SubscribeToShard).
KINESIS_READ = ["kinesis:DescribeStream", "kinesis:DescribeStreamSummary", "kinesis:GetRecords",
                "kinesis:GetShardIterator", "kinesis:ListShards"]
# KMS a caller needs to use a resource encrypted with a customer key, per service.
KMS_FOR = {
    "s3": ["kms:GenerateDataKey", "kms:Decrypt"],       # SSE-KMS PutObject (Decrypt: multipart / bucket key)
    "states": ["kms:GenerateDataKey", "kms:Decrypt"],   # StartExecution of a CMK state machine
    "sqs": ["kms:GenerateDataKey", "kms:Decrypt"],      # SendMessage to an SSE-KMS queue
    "kinesis": ["kms:Decrypt"],                         # GetRecords of a KMS-encrypted stream
}


def resources(template: dict) -> dict:
    return template.get("Resources") or {}


def sub_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        s = value["Fn::Sub"]
        return s if isinstance(s, str) else s[0]
    return ""


def _as_list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def statements(template: dict, role: str) -> list[dict]:
    """Allow statements of a role: inline policies and the template's managed policies it names."""
    res = resources(template).get(role) or {}
    p = res.get("Properties") or {}
    out = []
    for policy in p.get("Policies") or []:
        out += _as_list((policy.get("PolicyDocument") or {}).get("Statement") or [])
    for arn in p.get("ManagedPolicyArns") or []:
        target = logical_of(arn)
        doc = ((resources(template).get(target) or {}).get("Properties") or {}).get("PolicyDocument") or {}
        if target is None:
            out.append({"Effect": "Allow", "Action": f"<AWS managed policy {arn}>", "Resource": "*"})
        out += _as_list(doc.get("Statement") or [])
    return [s for s in out if isinstance(s, dict) and s.get("Effect") == "Allow"]


def kms_purpose(statement: dict) -> str:
    cond = statement.get("Condition") or {}
    for op in cond.values():
        if not isinstance(op, dict):
            continue
        for key, value in op.items():
            if key == "kms:ViaService":
                return "via:" + sub_text(_as_list(value)[0]).split(".")[0]
            if key == "kms:EncryptionContext:aws:lambda:FunctionArn":
                names = {re.sub(r"^.*:function:", "", sub_text(v)).split(":")[0] for v in _as_list(value)}
                return "lambda-env:" + ",".join(sorted(names))
    return "other:" + ",".join(sorted(k for op in cond.values() if isinstance(op, dict) for k in op)) if cond else "any"


def granted(template: dict, role: str) -> set[tuple[str, str | None]]:
    out = set()
    for st in statements(template, role):
        for action in _as_list(st.get("Action") or []):
            if not isinstance(action, str):
                continue
            out.add((action, kms_purpose(st) if action.startswith("kms:") else None))
    return out


def _cmk(res: dict, path: tuple) -> bool:
    v = res.get("Properties") or {}
    for step in path:
        v = v.get(step) if isinstance(v, dict) else None
    return v is not None


def needed(template: dict, logical: str) -> dict[tuple[str, str | None], str]:
    """What a function's role must allow -> why."""
    rs = resources(template)
    fn = rs[logical]
    p = fn.get("Properties") or {}
    name = sub_text(p.get("FunctionName"))
    out: dict[tuple[str, str | None], str] = {}

    def need(actions, why, purpose=None):
        for a in actions:
            out.setdefault((a, purpose if a.startswith("kms:") else None), why)

    need(LOGS, "Lambda writes its log group")
    if (p.get("TracingConfig") or {}).get("Mode") == "Active":
        need(XRAY, "Tracing: Active")
    if p.get("VpcConfig"):
        need(VPC_ENI, "VpcConfig (Lambda manages its network interfaces)")
    if p.get("KmsKeyArn"):
        need(["kms:Decrypt"], "KmsKeyArn (Lambda decrypts its environment)", f"lambda-env:{name}")
    dlq = logical_of((p.get("DeadLetterConfig") or {}).get("TargetArn"))
    queues = [dlq] if dlq else []
    for res in rs.values():
        if res.get("Type") != "AWS::Lambda::EventSourceMapping":
            continue
        mp = res.get("Properties") or {}
        if logical_of(mp.get("FunctionName")) != logical:
            continue
        source = rs.get(logical_of(mp.get("EventSourceArn")) or "") or {}
        if source.get("Type") == "AWS::Kinesis::Stream":
            need(KINESIS_READ, "its Kinesis event source mapping")
            if _cmk(source, ("StreamEncryption", "KeyId")):
                need(KMS_FOR["kinesis"], "reading a KMS-encrypted stream", "via:kinesis")
        dest = logical_of(((mp.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination"))
        if dest:
            queues.append(dest)
    for q in queues:
        queue = rs.get(q) or {}
        need(["sqs:SendMessage"], f"dead-letter / on-failure queue {q}")
        if _cmk(queue, ("KmsMasterKeyId",)):
            need(KMS_FOR["sqs"], f"sending to the SSE-KMS queue {q}", "via:sqs")

    crate = rust_code.crate_of(fn)
    if crate is None:
        out[("<code>", None)] = f"no crate found for {logical} (Metadata.BuildProperties.Binary)"
        return out
    sources = rust_code.production_sources(crate)
    cmk_machines = any(r.get("Type") == "AWS::StepFunctions::StateMachine" and
                       (((r.get("Properties") or {}).get("EncryptionConfiguration") or {}).get("Type")
                        == "CUSTOMER_MANAGED_KMS_KEY") for r in rs.values())
    for (sdk, op), files in sorted(rust_code.sdk_calls(crate).items()):
        where = ", ".join(str(f.relative_to(rust_code.ROOT)) for f in files)
        why = f"{op} in {where}"
        actions = list(ACTIONS.get((sdk, op), [f"{SERVICE_PREFIX[sdk]}:{op}"]))
        if (sdk, op) == ("s3", "DeleteObjects") and any("version_id" in sources[f] for f in files):
            actions.append("s3:DeleteObjectVersion")
        need(actions, why)
        if (sdk, op) == ("s3", "PutObject") and any("ssekms_key_id" in sources[f] for f in files):
            need(KMS_FOR["s3"], f"SSE-KMS {why}", "via:s3")
        if (sdk, op) == ("sfn", "StartExecution") and cmk_machines:
            need(KMS_FOR["states"], f"{why} (the state machine is encrypted with a customer key)", "via:states")
    return out


def functions(template: dict) -> list[str]:
    return [l for l, r in resources(template).items() if r.get("Type") == "AWS::Lambda::Function"]


def check_roles_match_code(template: dict) -> list[str]:
    out = []
    for logical in functions(template):
        role = logical_of((resources(template)[logical].get("Properties") or {}).get("Role"))
        if (resources(template).get(role) or {}).get("Type") != "AWS::IAM::Role":
            out.append(f"{logical}: its role is not an AWS::IAM::Role of this template")
            continue
        need = needed(template, logical)
        have = granted(template, role)
        for item in sorted(have - set(need), key=str):
            out.append(f"{logical}: {role} allows {_fmt(item)}, which its code and configuration never need")
        for item in sorted(set(need) - have, key=str):
            out.append(f"{logical}: {role} lacks {_fmt(item)}, needed for {need[item]}")
    return out


def _fmt(item: tuple[str, str | None]) -> str:
    return item[0] if item[1] is None else f"{item[0]} ({item[1]})"


def key_prefixes() -> set[str]:
    """The object-key prefixes the code builds keys with (shared/src/domain/keys.rs)."""
    body, _ = rust_code._production(rust_code.SHARED / "domain" / "keys.rs")
    return set(re.findall(r'"([a-z][a-z0-9_-]*/)', body))


# Object actions a function role may only grant under a key prefix (never on a whole bucket).
OBJECT_ACTIONS = ("s3:PutObject", "s3:GetObject")


def _object_grants(template: dict) -> list[tuple[str, str, str, str, str]]:
    """(function, role, Sid, action, resource) for every PutObject/GetObject a function role allows."""
    out = []
    for logical in functions(template):
        role = logical_of((resources(template)[logical].get("Properties") or {}).get("Role"))
        for st in statements(template, role):
            for action in OBJECT_ACTIONS:
                if action not in _as_list(st.get("Action")):
                    continue
                for r in _as_list(st.get("Resource")):
                    out.append((logical, role, st.get("Sid"), action, (sub_text(r) if not isinstance(r, str) else r) or str(r)))
    return out


def _prefix_of(resource: str) -> str | None:
    """`raw/` of `${ArchiveBucket.Arn}/raw/*`; None for a whole bucket or anything else."""
    m = re.search(r"/([^/*]+/)\*$", resource)
    return m.group(1) if m else None


def check_put_prefixes(template: dict) -> list[str]:
    """A function's s3:PutObject and s3:GetObject are limited to a key prefix the code writes,
    not the whole bucket."""
    prefixes = key_prefixes()
    return [f"{role} ({sid}): {action} on {resource} is not limited to a key prefix the code writes "
            f"({sorted(prefixes)})"
            for _, role, sid, action, resource in _object_grants(template)
            if _prefix_of(resource) not in prefixes]


# Which function's code writes each key prefix of shared/src/domain/keys.rs. One writer per prefix: a
# function that could overwrite another's objects could corrupt them (the event store's exports
# are verified once, then their days are dropped from the database). Readers of other functions'
# prefixes are operators (OperatorPolicy), not functions.
PREFIX_WRITERS = {"raw/": "archive", "oversized/": "fanout", "rejections/": "validate",
                  "event-store/": "schema-migrate"}


def check_prefix_writers(template: dict, writers: dict[str, str] | None = None) -> list[str]:
    """A function puts and reads objects only under the key prefixes its own code writes
    (PREFIX_WRITERS), e.g. schema-migrate only under event-store/."""
    writers = PREFIX_WRITERS if writers is None else writers
    out = []
    for logical, role, sid, action, resource in _object_grants(template):
        crate = rust_code.crate_of(resources(template)[logical]) or logical
        own = sorted(p for p, w in writers.items() if w == crate)
        prefix = _prefix_of(resource)
        if prefix is None:
            out.append(f"{role} ({sid}): {action} on {resource} reaches more than {crate}'s own prefixes {own}")
        elif writers.get(prefix) != crate:
            out.append(f"{role} ({sid}): {action} on {resource}: {prefix} is written by "
                       f"{writers.get(prefix) or 'no function'}, not {crate} (its own: {own})")
    return out


CFN_RESPONSES = "cloudformation-custom-resource-response-"


def check_s3_endpoint(template: dict) -> list[str]:
    """The S3 gateway endpoint allows only the S3 calls that functions in the VPC make, each only
    on a resource one of their roles names for that call, plus the custom-resource response PUT
    when a VPC function is a custom-resource handler; and it allows every such call its role
    grants (the endpoint's policy is the VPC's only path to S3: a call it does not allow is
    denied there, whatever the role says)."""
    rs = resources(template)
    in_vpc = [l for l in functions(template) if (rs[l].get("Properties") or {}).get("VpcConfig")]
    vpc_s3 = {a for l in in_vpc for (a, _) in needed(template, l) if a.startswith("s3:")}
    vpc_targets = {(a, sub_text(r) if not isinstance(r, str) else r)
                   for l in in_vpc
                   for st in statements(template, logical_of((rs[l].get("Properties") or {}).get("Role")))
                   for a in _as_list(st.get("Action")) if isinstance(a, str) and a.startswith("s3:")
                   for r in _as_list(st.get("Resource"))}
    handlers = {logical_of((r.get("Properties") or {}).get("ServiceToken")) for r in rs.values()
                if r.get("Type", "").startswith("Custom::")}
    out = []
    for logical, res in rs.items():
        p = res.get("Properties") or {}
        if res.get("Type") != "AWS::EC2::VPCEndpoint" or not sub_text(p.get("ServiceName")).endswith(".s3"):
            continue
        for st in _as_list((p.get("PolicyDocument") or {}).get("Statement") or []):
            if st.get("Effect") != "Allow":
                continue
            actions = set(_as_list(st.get("Action")))
            targets = [sub_text(r) if not isinstance(r, str) else r for r in _as_list(st.get("Resource"))]
            if all(CFN_RESPONSES in t for t in targets) and actions == {"s3:PutObject"}:
                if not (handlers & set(in_vpc)):
                    out.append(f"{logical} ({st.get('Sid')}): no custom-resource handler runs in the VPC")
                continue
            for a in sorted(actions - vpc_s3):
                out.append(f"{logical} ({st.get('Sid')}) allows {a}, which no function in the VPC calls")
            for a in sorted(actions & vpc_s3):
                for t in targets:
                    if (a, t) not in vpc_targets:
                        out.append(f"{logical} ({st.get('Sid')}) allows {a} on {t}, where no function in the VPC may call it")
        doc = p.get("PolicyDocument")
        if not doc:
            continue  # no policy: the endpoint allows every call
        allows = [(set(_as_list(st.get("Action"))), [sub_text(r) if not isinstance(r, str) else r
                                                     for r in _as_list(st.get("Resource"))])
                  for st in _as_list(doc.get("Statement") or []) if isinstance(st, dict) and st.get("Effect") == "Allow"]
        for a, t in sorted(vpc_targets):
            if a in vpc_s3 and not any(any(fnmatch.fnmatchcase(a, x) for x in acts) and
                                       any(t == r or fnmatch.fnmatchcase(t, r) for r in rsrc) for acts, rsrc in allows):
                out.append(f"{logical} does not allow {a} on {t}, which a function in the VPC calls: "
                           f"denied at the endpoint")
    return out


def check_iam_database_auth(template: dict) -> list[str]:
    """IAM database authentication is on only if some role may use it (rds-db:connect)."""
    rs = resources(template)
    users = [l for l, r in rs.items() if r.get("Type") == "AWS::IAM::Role" and
             any(a == "rds-db:connect" for a, _ in granted(template, l))]
    return [f"{l} enables IAM database authentication, a login path no role uses (no rds-db:connect)"
            for l, r in rs.items() if r.get("Type") == "AWS::RDS::DBInstance"
            and (r.get("Properties") or {}).get("EnableIAMDatabaseAuthentication") in (True, "true")
            and not users]


# What Step Functions does with a state machine's role besides running its tasks (Step Functions
# developer guide: "IAM policies for logging to CloudWatch Logs" and "X-Ray" for state machines).
SFN_LOG_DELIVERY = ["logs:CreateLogDelivery", "logs:GetLogDelivery", "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery", "logs:ListLogDeliveries", "logs:PutResourcePolicy",
                    "logs:DescribeResourcePolicies", "logs:DescribeLogGroups"]
SFN_XRAY = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
            "xray:GetSamplingTargets"]


def check_state_machine_roles(template: dict, asl_dir: Path | None = None) -> list[str]:
    """A state machine's role invokes exactly the functions its definition's tasks name, and
    otherwise allows only what its logging, tracing and customer key need."""
    rs = resources(template)
    out = []
    for logical, res in rs.items():
        if res.get("Type") != "AWS::StepFunctions::StateMachine":
            continue
        p = res.get("Properties") or {}
        role = logical_of(p.get("RoleArn"))
        location = p.get("DefinitionS3Location")
        asl = ((asl_dir or rust_code.ROOT / "infra") / location).read_text() if isinstance(location, str) else ""
        used = {k for k in (p.get("DefinitionSubstitutions") or {}) if "${" + k + "}" in asl}
        invoked = {logical_of(v) for k, v in (p.get("DefinitionSubstitutions") or {}).items() if k in used}
        need = {("lambda:InvokeFunction", None)}
        if (p.get("EncryptionConfiguration") or {}).get("Type") == "CUSTOMER_MANAGED_KMS_KEY":
            need |= {(a, "via:states") for a in ("kms:Decrypt", "kms:GenerateDataKey")}
        if p.get("LoggingConfiguration"):
            need |= {(a, None) for a in SFN_LOG_DELIVERY}
        if (p.get("TracingConfiguration") or {}).get("Enabled"):
            need |= {(a, None) for a in SFN_XRAY}
        have = granted(template, role)
        for item in sorted(have - need, key=str):
            out.append(f"{logical}: {role} allows {_fmt(item)}, which the state machine never needs")
        for item in sorted(need - have, key=str):
            out.append(f"{logical}: {role} lacks {_fmt(item)}")
        allowed = {logical_of(r) for st in statements(template, role)
                   if "lambda:InvokeFunction" in _as_list(st.get("Action")) for r in _as_list(st.get("Resource"))}
        for fn in sorted(allowed - invoked, key=str):
            out.append(f"{logical}: {role} may invoke {fn}, which no task of the definition calls")
        for fn in sorted(invoked - allowed, key=str):
            out.append(f"{logical}: {role} may not invoke {fn}, which a task of the definition calls")
    return out


# ------------------------------------------------------------------ the operator's policy

OPERATOR_OUTPUT = "OperatorPolicyArn"
OPERATOR_CRATE = "cli"
# What the Step Functions console does for an operator who opens a failed execution and presses
# Redrive, plus the re-run of one past the 14-day window (a new execution with its input): the
# Service Authorization Reference's actions for those calls, and the customer key Step Functions
# encrypts the execution's input and history with (decrypted to show or redrive them, a data key
# generated for a new execution's input), used through Step Functions.
CONSOLE_REDRIVE = {
    ("states:ListExecutions", None): "the console's list of failed executions",
    ("states:DescribeExecution", None): "opening an execution (its input, error and cause)",
    ("states:GetExecutionHistory", None): "the execution's graph: which state failed",
    ("states:RedriveExecution", None): "the Redrive button",
    ("states:StartExecution", None): "re-running a failed execution's input past the 14-day redrive window",
    ("kms:Decrypt", "via:states"): "reading an execution's input and history (customer-key state machine)",
    ("kms:GenerateDataKey", "via:states"): "StartExecution of a customer-key state machine",
}
# KMS through a service for a CLI call on a resource encrypted with the customer key.
CLI_KMS = {
    ("kinesis", "GetRecords"): ("AWS::Kinesis::Stream", ("StreamEncryption", "KeyId"), ["kms:Decrypt"]),
    ("kinesis", "PutRecords"): ("AWS::Kinesis::Stream", ("StreamEncryption", "KeyId"), ["kms:GenerateDataKey"]),
    ("sqs", "ReceiveMessage"): ("AWS::SQS::Queue", ("KmsMasterKeyId",), ["kms:Decrypt"]),
    ("s3", "GetObject"): ("AWS::S3::Bucket", ("BucketEncryption",), ["kms:Decrypt"]),
}


def operator_policy(template: dict) -> str | None:
    """The logical id of the managed policy the OperatorPolicyArn output names."""
    value = ((template.get("Outputs") or {}).get(OPERATOR_OUTPUT) or {}).get("Value")
    return logical_of(value)


def operator_needs(template: dict) -> dict[tuple[str, str | None], str]:
    """What the operator policy must allow -> why: the CLI's AWS calls and console redrive."""
    out = dict(CONSOLE_REDRIVE)
    rs = resources(template)
    for (sdk, op), files in sorted(rust_code.sdk_calls(OPERATOR_CRATE).items()):
        why = f"{op} in " + ", ".join(str(f.relative_to(rust_code.ROOT)) for f in files)
        for action in ACTIONS.get((sdk, op), [f"{SERVICE_PREFIX[sdk]}:{op}"]):
            out.setdefault((action, None), why)
        if (sdk, op) in CLI_KMS:
            kind, path, actions = CLI_KMS[(sdk, op)]
            if any(r.get("Type") == kind and _cmk(r, path) for r in rs.values()):
                for action in actions:
                    out.setdefault((action, f"via:{SERVICE_PREFIX[sdk]}"), f"{why} (encrypted with the stack's key)")
    return out


def check_operator_policy(template: dict) -> list[str]:
    """The operator policy (output OperatorPolicyArn) allows exactly what console redrive and the
    `inventory` CLI's AWS calls need: an action more or less than that is reported. It is an
    AWS::IAM::ManagedPolicy without a ManagedPolicyName (no CAPABILITY_NAMED_IAM)."""
    logical = operator_policy(template)
    res = resources(template).get(logical or "") or {}
    if res.get("Type") != "AWS::IAM::ManagedPolicy":
        return [f"the output {OPERATOR_OUTPUT} does not name an AWS::IAM::ManagedPolicy of this template"]
    p = res.get("Properties") or {}
    out = []
    if "ManagedPolicyName" in p:
        out.append(f"{logical} has a ManagedPolicyName (deploying it would need CAPABILITY_NAMED_IAM)")
    have = set()
    for st in _as_list((p.get("PolicyDocument") or {}).get("Statement") or []):
        if not isinstance(st, dict) or st.get("Effect") != "Allow":
            continue
        for action in _as_list(st.get("Action") or []):
            if isinstance(action, str):
                have.add((action, kms_purpose(st) if action.startswith("kms:") else None))
    for sdk, files in sorted(rust_code.unmapped_sdks(OPERATOR_CRATE).items()):
        out.append(f"the CLI uses aws_sdk_{sdk} ({', '.join(str(f.relative_to(rust_code.ROOT)) for f in files)}), "
                   "which rust_code.SDK_MODELS does not map: its calls cannot be checked")
    need = operator_needs(template)
    for item in sorted(have - set(need), key=str):
        out.append(f"{logical} allows {_fmt(item)}, which neither console redrive nor the CLI needs")
    for item in sorted(set(need) - have, key=str):
        out.append(f"{logical} lacks {_fmt(item)}, needed for {need[item]}")
    return out


# ------------------------------------------------------------------ what `inventory status` reads

STATUS_SOURCE = Path("cli") / "src" / "commands" / "status.rs"


def status_reads() -> tuple[set[str], str]:
    """The outputs naming the queues `inventory status` reads the depth of (`"...DlqUrl"` in its
    code), and its default alarm-name prefix (`--alarm-prefix`)."""
    body, _ = rust_code._production(rust_code.ROOT / STATUS_SOURCE)
    queues = set(re.findall(r'"(\w+DlqUrl)"', body))
    m = re.search(r'default_value\s*=\s*"([^"]*)"\s*\)\]\s*pub alarm_prefix', body)
    return queues, (m.group(1) if m else "")


def _named(value: Any) -> list[Any]:
    """The values an `!If` may give, else the value."""
    if isinstance(value, dict) and "Fn::If" in value:
        return [v for branch in value["Fn::If"][1:] for v in _named(branch)]
    if isinstance(value, dict) and value.get("Ref") == "AWS::NoValue":
        return []
    return [value]


def check_operator_status_resources(template: dict, reads: tuple[set[str], str] | None = None) -> list[str]:
    """The operator policy's sqs:GetQueueAttributes names exactly the queues whose URLs `inventory
    status` reads from the outputs, and its cloudwatch:DescribeAlarms pattern matches every alarm
    of the stack and starts with the command's default alarm prefix (composite alarms would need
    Resource "*": Amazon CloudWatch permissions reference, DescribeAlarms)."""
    queue_outputs, prefix = reads or status_reads()
    logical = operator_policy(template) or ""
    doc = ((resources(template).get(logical) or {}).get("Properties") or {}).get("PolicyDocument") or {}
    sts = [s for s in _as_list(doc.get("Statement") or []) if isinstance(s, dict) and s.get("Effect") == "Allow"]
    out = []
    outputs = template.get("Outputs") or {}
    read = {logical_of((outputs.get(k) or {}).get("Value")) for k in queue_outputs} - {None}
    missing_outputs = sorted(k for k in queue_outputs if k not in outputs)
    for k in missing_outputs:
        out.append(f"inventory status reads the output {k}, which the template does not have")
    granted_queues = {logical_of(v) for s in sts if "sqs:GetQueueAttributes" in _as_list(s.get("Action"))
                      for r in _as_list(s.get("Resource")) for v in _named(r)}
    for q in sorted(read - granted_queues, key=str):
        out.append(f"{logical} lacks sqs:GetQueueAttributes on {q}, whose depth inventory status reads")
    for q in sorted(granted_queues - read, key=str):
        out.append(f"{logical} allows sqs:GetQueueAttributes on {q}, which inventory status does not read")
    patterns = [sub_text(v) for s in sts if "cloudwatch:DescribeAlarms" in _as_list(s.get("Action"))
                for r in _as_list(s.get("Resource")) for v in _named(r)]
    names = {l: sub_text((r.get("Properties") or {}).get("AlarmName"))
             for l, r in resources(template).items() if r.get("Type") == "AWS::CloudWatch::Alarm"}
    for pattern in patterns:
        name_pattern = pattern.split(":alarm:", 1)[-1] if ":alarm:" in pattern else pattern
        if pattern != "*" and not name_pattern.startswith(prefix):
            out.append(f"{logical}: cloudwatch:DescribeAlarms on {pattern} does not cover the alarm prefix "
                       f"inventory status asks for ({prefix!r})")
        for alarm, name in sorted(names.items()):
            if not fnmatch.fnmatchcase(name, name_pattern):
                out.append(f"{logical}: cloudwatch:DescribeAlarms on {pattern} does not cover {alarm} ({name})")
    if names and not patterns:
        out.append(f"{logical} lacks cloudwatch:DescribeAlarms, needed for the alarms inventory status shows")
    for l, r in sorted(resources(template).items()):
        if r.get("Type") == "AWS::CloudWatch::CompositeAlarm" and "*" not in patterns:
            out.append(f"{l} is a composite alarm: DescribeAlarms returns it only with Resource \"*\"")
    return out
