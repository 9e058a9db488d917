"""Alarm rules, run on the template AFTER the SAM transform (sam_transform.transformed()): every
alarm watches a metric that something really emits, names the resource it watches with the
dimension that service publishes, can fire at all, and has a runbook entry.

"Really emits" means one of:
- an AWS service metric listed in SERVICE_METRICS (written from the services' metric pages,
  cited per namespace), with one of the dimension sets that service publishes;
- an EMF metric our code writes (the `_aws.CloudWatchMetrics` block in a function's
  src/metrics.rs: namespace, dimension names and metric names are read from the Rust source);
- a metric of an AWS::Logs::MetricFilter of this template whose filter pattern matches a log
  message the code of the function owning that log group really writes.

Each rule returns a list of readable violations; an empty list means it holds."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Iterator

import rust_code

ROOT = Path(__file__).resolve().parent.parent.parent
RUNBOOKS = ROOT / "docs" / "runbooks.md"
RUNBOOK_SECTION = "## Alarms"

# namespace -> metric -> the dimension sets the service publishes it with.
# AWS/Lambda: "Types of metrics for Lambda functions" (Lambda developer guide).
_LAMBDA_DIMS = [frozenset(), frozenset({"FunctionName"}), frozenset({"FunctionName", "Resource"}),
                frozenset({"FunctionName", "ExecutedVersion"})]
# AWS/States: "Monitoring Step Functions metrics using Amazon CloudWatch" (execution metrics).
_STATES_DIMS = [frozenset({"StateMachineArn"})]
# AWS/SQS: "Available CloudWatch metrics for Amazon SQS".
_SQS_DIMS = [frozenset({"QueueName"})]
# AWS/RDS: "Amazon CloudWatch metrics for Amazon RDS" (instance-level).
_RDS_DIMS = [frozenset(), frozenset({"DBInstanceIdentifier"}), frozenset({"DBClusterIdentifier"})]
# AWS/ElastiCache: "Host-Level Metrics" and "Metrics for Valkey and Redis OSS"; node-based
# clusters publish per member (CacheClusterId) and per node (CacheClusterId, CacheNodeId).
_CACHE_DIMS = [frozenset({"CacheClusterId"}), frozenset({"CacheClusterId", "CacheNodeId"})]
# AWS/ApiGateway for HTTP APIs: "Monitor CloudWatch metrics for HTTP APIs in API Gateway" (the
# names are 4xx/5xx, not the REST API's 4XXError/5XXError).
_HTTP_API_DIMS = [frozenset({"ApiId"}), frozenset({"ApiId", "Stage"}),
                  frozenset({"ApiId", "Method", "Resource", "Stage"})]
# AWS/Kinesis: "Monitoring the Amazon Kinesis Data Streams service with Amazon CloudWatch"
# (stream-level metrics; the shard-level ones need enhanced monitoring, which is off).
_KINESIS_DIMS = [frozenset({"StreamName"})]

SERVICE_METRICS: dict[str, dict[str, list[frozenset]]] = {
    "AWS/Lambda": {m: _LAMBDA_DIMS for m in (
        "Invocations", "Errors", "Throttles", "Duration", "IteratorAge", "ConcurrentExecutions",
        "DeadLetterErrors", "DestinationDeliveryFailures", "OffsetLag", "AsyncEventAge",
        "AsyncEventsDropped", "AsyncEventsReceived", "ProvisionedConcurrencySpilloverInvocations",
        "RecursiveInvocationsDropped", "UnreservedConcurrentExecutions", "ClaimedAccountConcurrency")},
    "AWS/States": {m: _STATES_DIMS for m in (
        "ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsAborted",
        "ExecutionsTimedOut", "ExecutionThrottled", "ExecutionTime", "ExecutionsRedriven",
        "RedrivenExecutionsSucceeded", "RedrivenExecutionsFailed", "RedrivenExecutionsAborted",
        "RedrivenExecutionsTimedOut")},
    "AWS/SQS": {m: _SQS_DIMS for m in (
        "ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed", "ApproximateAgeOfOldestMessage",
        "NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted",
        "NumberOfEmptyReceives", "SentMessageSize")},
    "AWS/RDS": {m: _RDS_DIMS for m in (
        "CPUUtilization", "DatabaseConnections", "FreeStorageSpace", "FreeableMemory",
        "ReadLatency", "WriteLatency", "ReadIOPS", "WriteIOPS", "DiskQueueDepth", "SwapUsage",
        "ReplicaLag", "MaximumUsedTransactionIDs", "TransactionLogsDiskUsage", "CPUCreditBalance",
        "EBSByteBalance%", "EBSIOBalance%", "DBLoad")},
    "AWS/ElastiCache": {m: _CACHE_DIMS for m in (
        "CPUUtilization", "EngineCPUUtilization", "FreeableMemory", "SwapUsage",
        "NetworkBytesIn", "NetworkBytesOut", "DatabaseMemoryUsagePercentage", "BytesUsedForCache",
        "CacheHits", "CacheMisses", "CacheHitRate", "CurrConnections", "NewConnections",
        "Evictions", "Reclaimed", "ReplicationLag", "ReplicationBytes", "IsMaster",
        "CurrItems", "MemoryFragmentationRatio", "AuthenticationFailures", "CommandAuthorizationFailures")},
    "AWS/ApiGateway": {m: _HTTP_API_DIMS for m in (
        "4xx", "5xx", "Count", "IntegrationLatency", "Latency", "DataProcessed")},
    "AWS/Kinesis": {m: _KINESIS_DIMS for m in (
        "IncomingRecords", "IncomingBytes", "WriteProvisionedThroughputExceeded",
        "ReadProvisionedThroughputExceeded", "GetRecords.IteratorAgeMilliseconds",
        "GetRecords.Success", "GetRecords.Latency", "PutRecord.Success", "PutRecords.Success",
        "PutRecords.ThrottledRecords", "PutRecords.FailedRecords", "PutRecords.TotalRecords",
        "PutRecord.Latency", "PutRecords.Latency")},
}

# Which resource type each dimension must name, and how (Ref, or GetAtt of an attribute).
DIMENSION_TARGETS = {
    "FunctionName": ("AWS::Lambda::Function", "Ref"),
    "StateMachineArn": ("AWS::StepFunctions::StateMachine", "Ref"),
    "QueueName": ("AWS::SQS::Queue", "QueueName"),
    "DBInstanceIdentifier": ("AWS::RDS::DBInstance", "Ref"),
    "ApiId": ("AWS::ApiGatewayV2::Api", "Ref"),
    "StreamName": ("AWS::Kinesis::Stream", "Ref"),
}


def alarms(template: dict) -> Iterator[tuple[str, dict]]:
    for logical, res in (template.get("Resources") or {}).items():
        if res.get("Type") == "AWS::CloudWatch::Alarm":
            yield logical, res.get("Properties") or {}


def watched_metrics(props: dict) -> list[dict]:
    """Every metric an alarm reads: the single metric, or each MetricStat of a math alarm
    (both branches of an Fn::If)."""
    if "MetricName" in props:
        return [{"Namespace": props.get("Namespace"), "MetricName": props.get("MetricName"),
                 "Dimensions": props.get("Dimensions") or []}]
    out = []
    for item in props.get("Metrics") or []:
        for q in _branches(item):
            metric = (q.get("MetricStat") or {}).get("Metric")
            if metric:
                out.append({"Namespace": metric.get("Namespace"), "MetricName": metric.get("MetricName"),
                            "Dimensions": metric.get("Dimensions") or []})
    return out


def _branches(value: Any) -> list[dict]:
    if isinstance(value, dict) and "Fn::If" in value:
        _, a, b = value["Fn::If"]
        return _branches(a) + _branches(b)
    if isinstance(value, dict) and value != {"Ref": "AWS::NoValue"}:
        return [value]
    return []


def text(value: Any) -> str:
    """A namespace or name as a comparable string: `!Sub` templates kept literally."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Sub" in value:
        sub = value["Fn::Sub"]
        return sub if isinstance(sub, str) else sub[0]
    return json.dumps(value, sort_keys=True)


# ------------------------------------------------------------------ what our code emits

def emf_metrics() -> dict[tuple[str, str], dict]:
    """(namespace, metric) -> {"dimensions": frozenset, "function": crate} for every EMF block
    our functions write (src/metrics.rs)."""
    out = {}
    for path in sorted((ROOT / "functions").glob("*/src/metrics.rs")):
        src = path.read_text()
        ns = re.search(r'pub const NAMESPACE: &str = "([^"]+)";', src)
        dims = re.search(r'"Dimensions":\s*\[\[([^\]]*)\]\]', src)
        if not ns or not dims:
            continue
        dimensions = frozenset(re.findall(r'"([^"]+)"', dims.group(1)))
        for name in re.findall(r'\("([A-Za-z]+)",\s*self\.[a-z_]+\)', src):
            out[(ns.group(1), name)] = {"dimensions": dimensions, "function": path.parent.parent.name}
    return out


def filter_metrics(template: dict) -> dict[tuple[str, str], dict]:
    """(namespace, metric) -> {"dimensions", "filter", "log_group"} for the template's metric filters."""
    out = {}
    for logical, res in (template.get("Resources") or {}).items():
        if res.get("Type") != "AWS::Logs::MetricFilter":
            continue
        p = res.get("Properties") or {}
        for tr in p.get("MetricTransformations") or []:
            key = (text(tr.get("MetricNamespace")), text(tr.get("MetricName")))
            out[key] = {"dimensions": frozenset((tr.get("Dimensions") or {}).keys()) if isinstance(
                tr.get("Dimensions"), dict) else frozenset(d.get("Key") for d in tr.get("Dimensions") or []),
                "filter": logical, "log_group": (p.get("LogGroupName") or {}).get("Ref"),
                "default": tr.get("DefaultValue")}
    return out


def function_of_log_group(template: dict, group: str) -> tuple[str, dict] | tuple[None, None]:
    for logical, res in (template.get("Resources") or {}).items():
        if res.get("Type") == "AWS::Lambda::Function" and \
                ((res.get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup") == {"Ref": group}:
            return logical, res
    return None, None


def check_metric_filters(template: dict) -> list[str]:
    """A metric filter counts a JSON log message that the code of the function writing to that
    log group really logs (its crate and the shared modules it enables)."""
    out = []
    for logical, res in (template.get("Resources") or {}).items():
        if res.get("Type") != "AWS::Logs::MetricFilter":
            continue
        p = res.get("Properties") or {}
        group = (p.get("LogGroupName") or {}).get("Ref")
        fn_logical, fn = function_of_log_group(template, group)
        if fn is None:
            out.append(f"{logical} filters {group}, which is no function's log group")
            continue
        messages = re.findall(r'\$\.fields\.message\s*=\s*"([^"]+)"', text(p.get("FilterPattern")))
        if not messages:
            out.append(f"{logical} pattern does not select a log message ($.fields.message = \"...\")")
        if rust_code.log_layout() != "fields":
            out.append(f"{logical} selects $.fields.message, but the functions log {rust_code.log_layout()!r}")
        crate = rust_code.crate_of(fn)
        logged = rust_code.log_messages(crate) if crate else set()
        for m in messages:
            if m not in logged:
                out.append(f"{logical} counts message {m!r}, which {crate or fn_logical} never logs")
        fields = rust_code.log_fields(crate) if crate else {}
        for tr in p.get("MetricTransformations") or []:
            value = text(tr.get("MetricValue"))
            field = value.removeprefix("$.fields.") if value.startswith("$.fields.") else None
            if value.startswith("$.") and field is None:
                out.append(f"{logical} takes its value from {value}, outside the event's fields")
            for m in messages if field else []:
                if m in logged and field not in fields.get(m, set()):
                    out.append(f"{logical} takes its value from {value}, but {crate or fn_logical} "
                               f"logs {m!r} without a field {field!r}")
    return out


# ------------------------------------------------------------------ the rules

def check_alarm_metrics(template: dict) -> list[str]:
    """Every alarm's metric is emitted by the service or our code, with those dimensions."""
    out = []
    ours = {**emf_metrics(), **filter_metrics(template)}
    for logical, props in alarms(template):
        metrics = watched_metrics(props)
        if not metrics:
            out.append(f"{logical} watches no metric")
        for m in metrics:
            ns, name = text(m["Namespace"]), text(m["MetricName"])
            dims = frozenset(d.get("Name") for d in m["Dimensions"])
            if ns in SERVICE_METRICS:
                known = SERVICE_METRICS[ns].get(name)
                if known is None:
                    out.append(f"{logical}: {ns} publishes no metric {name}")
                elif dims not in known:
                    out.append(f"{logical}: {ns} {name} is not published with dimensions {sorted(dims)} "
                               f"(it is with {[sorted(k) for k in known]})")
            elif (ns, name) in ours:
                if dims != ours[(ns, name)]["dimensions"]:
                    out.append(f"{logical}: {ns} {name} is emitted with dimensions "
                               f"{sorted(ours[(ns, name)]['dimensions'])}, not {sorted(dims)}")
            else:
                out.append(f"{logical}: nothing emits {ns} {name} (neither an AWS service in the table "
                           f"nor our EMF metrics nor a metric filter of this template)")
    return out


def check_alarm_dimensions(template: dict) -> list[str]:
    """Each dimension value names a resource of this template of the type that dimension is
    about; EMF FunctionName names the function whose code writes the metric; a cache member
    id is the replication group's id plus -00N with N within the allowed node count."""
    out = []
    resources = template.get("Resources") or {}
    emf = emf_metrics()
    for logical, props in alarms(template):
        for m in watched_metrics(props):
            for d in m["Dimensions"]:
                name, value = d.get("Name"), d.get("Value")
                if name in DIMENSION_TARGETS:
                    kind, how = DIMENSION_TARGETS[name]
                    target = _target(value, how)
                    if target is None or (resources.get(target) or {}).get("Type") != kind:
                        out.append(f"{logical}: dimension {name} = {json.dumps(value)} does not name a {kind} "
                                   f"of this template ({'Ref' if how == 'Ref' else 'GetAtt .' + how})")
                        continue
                    key = (text(m["Namespace"]), text(m["MetricName"]))
                    if name == "FunctionName" and key in emf:
                        crate = rust_code.crate_of(resources[target])
                        if crate != emf[key]["function"]:
                            out.append(f"{logical}: {key[1]} is written by {emf[key]['function']}, "
                                       f"not by {crate or target}")
                elif name == "CacheClusterId":
                    out.extend(_check_cache_member(template, logical, value))
    return out


def _target(value: Any, how: str) -> str | None:
    if not isinstance(value, dict):
        return None
    if how == "Ref":
        return value.get("Ref")
    getatt = value.get("Fn::GetAtt")
    if isinstance(getatt, str):
        getatt = getatt.split(".", 1)
    if isinstance(getatt, list) and len(getatt) == 2 and getatt[1] == how:
        return getatt[0]
    return None


def _check_cache_member(template: dict, logical: str, value: Any) -> list[str]:
    groups = {l: r for l, r in (template.get("Resources") or {}).items()
              if r.get("Type") == "AWS::ElastiCache::ReplicationGroup"}
    member = text(value)
    for g in groups.values():
        gid = text((g.get("Properties") or {}).get("ReplicationGroupId"))
        match = re.fullmatch(re.escape(gid) + r"-00(\d)", member)
        if match:
            n = int(match.group(1))
            limit = _max_node_count(template, (g.get("Properties") or {}).get("NumCacheClusters"))
            if n < 1 or n > limit:
                return [f"{logical}: cache member {member} does not exist (the group has at most {limit} members)"]
            return []
    return [f"{logical}: CacheClusterId {member} is no member of a replication group of this template"]


def _max_node_count(template: dict, value: Any) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, dict) and "Ref" in value:
        p = (template.get("Parameters") or {}).get(value["Ref"]) or {}
        allowed = p.get("AllowedValues")
        if allowed:
            return max(int(v) for v in allowed)
        return int(p.get("MaxValue", 6))
    return 6


def check_cache_alarms_cover_every_member(template: dict) -> list[str]:
    """An alarm on per-member ElastiCache metrics reads every member the replication group can
    have: which member is primary changes on failover."""
    out = []
    groups = [r for r in (template.get("Resources") or {}).values()
              if r.get("Type") == "AWS::ElastiCache::ReplicationGroup"]
    for logical, props in alarms(template):
        members = set()
        for m in watched_metrics(props):
            if text(m["Namespace"]) != "AWS/ElastiCache":
                continue
            for d in m["Dimensions"]:
                if d.get("Name") == "CacheClusterId":
                    members.add(text(d.get("Value"))[-3:])
        if not members:
            continue
        for g in groups:
            limit = _max_node_count(template, (g.get("Properties") or {}).get("NumCacheClusters"))
            if len(members) < limit:
                out.append(f"{logical} reads cache members {sorted(members)} of a group that can have "
                           f"{limit}: after a failover it may watch a replica")
    return out


def scheduled_functions(template: dict) -> set[str]:
    """Functions an EventBridge schedule invokes, directly or through an alias (SAM's Schedule
    event on a function with AutoPublishAlias targets the alias)."""
    resources = template.get("Resources") or {}
    out = set()
    for res in resources.values():
        p = res.get("Properties") or {}
        if res.get("Type") != "AWS::Events::Rule" or "ScheduleExpression" not in p:
            continue
        for t in p.get("Targets") or []:
            name = _target(t.get("Arn"), "Arn") or _target(t.get("Arn"), "Ref")
            r = resources.get(name or "") or {}
            if r.get("Type") == "AWS::Lambda::Alias":
                name = _target((r.get("Properties") or {}).get("FunctionName"), "Ref")
            if name:
                out.add(name)
    return out


def check_alarms_can_fire(template: dict, asl_dir: Path | None = None) -> list[str]:
    """Alarms that could never fire:
    - Lambda Errors of a custom-resource handler (it answers FAILED and returns normally),
      unless a schedule also invokes it directly;
    - a metric written at most once per deploy (metric filters on the log group of a
      custom-resource handler that nothing else invokes) evaluated over more than one
      datapoint;
    - a heartbeat (a LessThan alarm on a metric filter's count) that treats missing data as
      anything but breaching: a filter with no DefaultValue writes nothing when its line is
      missing, so such an alarm stays OK when what it watches stops;
    - ExecutionsTimedOut of a state machine whose definition sets no TimeoutSeconds."""
    out = []
    resources = template.get("Resources") or {}
    handlers = set()
    for res in resources.values():
        if res.get("Type", "").startswith("Custom::") or res.get("Type") == "AWS::CloudFormation::CustomResource":
            token = (res.get("Properties") or {}).get("ServiceToken")
            target = _target(token, "Arn")
            if target:
                handlers.add(target)
    handlers -= scheduled_functions(template)
    handler_groups = {((resources[h].get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup", {}).get("Ref")
                      for h in handlers if h in resources}
    filters = filter_metrics(template)
    once_per_deploy = {k for k, v in filters.items() if v["log_group"] in handler_groups}
    for logical, props in alarms(template):
        for m in watched_metrics(props):
            ns, name = text(m["Namespace"]), text(m["MetricName"])
            dims = {d.get("Name"): d.get("Value") for d in m["Dimensions"]}
            if ns == "AWS/Lambda" and name == "Errors" and _target(dims.get("FunctionName"), "Ref") in handlers:
                out.append(f"{logical}: {dims['FunctionName']['Ref']} is a custom-resource handler; it answers "
                           f"FAILED and returns normally, so its Lambda Errors never rise")
            if (ns, name) in once_per_deploy:
                periods = int(props.get("EvaluationPeriods", 1))
                points = int(props.get("DatapointsToAlarm", periods))
                if periods != 1 or points != 1:
                    out.append(f"{logical}: {name} is written at most once per deploy; evaluate 1 of 1, "
                               f"not {points} of {periods}")
            if (ns, name) in filters and filters[(ns, name)]["default"] is None \
                    and str(props.get("ComparisonOperator", "")).startswith("LessThan") \
                    and props.get("TreatMissingData") != "breaching":
                out.append(f"{logical}: {name} is only written when its log line appears, so this "
                           f"heartbeat must treat missing data as breaching, not "
                           f"{props.get('TreatMissingData', 'missing')}")
            if ns == "AWS/States" and name == "ExecutionsTimedOut":
                machine = resources.get(_target(dims.get("StateMachineArn"), "Ref") or "") or {}
                definition = _definition(machine, asl_dir)
                if definition is not None and "TimeoutSeconds" not in definition:
                    out.append(f"{logical}: the state machine's definition sets no TimeoutSeconds, "
                               f"so no execution ever times out")
    return out


def _definition(machine: dict, asl_dir: Path | None) -> dict | None:
    p = machine.get("Properties") or {}
    if isinstance(p.get("Definition"), dict):
        return p["Definition"]
    location = p.get("DefinitionS3Location")
    if isinstance(location, str):
        path = (asl_dir or ROOT / "infra") / location
        if path.exists():
            return json.loads(path.read_text())
    if isinstance(p.get("DefinitionString"), str):
        return json.loads(p["DefinitionString"])
    return None


def runbook_entries(runbooks: str) -> dict[str, str]:
    """`### <alarm name without the suffix>` entries of the runbooks' alarm section."""
    _, _, section = runbooks.partition("\n" + RUNBOOK_SECTION + "\n")
    section = re.split(r"\n## ", section, maxsplit=1)[0]
    entries = {}
    for block in re.split(r"\n(?=### )", section):
        head = re.match(r"### `?([a-z0-9-]+)`?", block)
        if head:
            entries[head.group(1)] = block
    return entries


def alarm_key(props: dict) -> str:
    """The alarm's name with `-${EnvironmentSuffix}` taken off: what the runbook is filed under."""
    return text(props.get("AlarmName")).replace("-${EnvironmentSuffix}", "")


def check_runbooks(template: dict, runbooks: str) -> list[str]:
    """Every alarm has a runbook entry saying what it means, what to look at first and what to
    do; every entry belongs to an alarm that exists."""
    out = []
    entries = runbook_entries(runbooks)
    names = set()
    for logical, props in alarms(template):
        key = alarm_key(props)
        names.add(key)
        entry = entries.get(key)
        if entry is None:
            out.append(f"{logical} ({key}) has no entry under '{RUNBOOK_SECTION}' in docs/runbooks.md")
            continue
        for part in ("**Means**", "**Look at**", "**Do**"):
            if part not in entry:
                out.append(f"runbook entry {key} lacks {part}")
        if len(re.findall(r"^\s*\d\.\s", entry.split("**Look at**", 1)[-1], flags=re.M)) < 3:
            out.append(f"runbook entry {key} lists fewer than three things to look at")
    for key in sorted(set(entries) - names):
        out.append(f"runbook entry {key} belongs to no alarm of the template")
    return out


def check_required_alarms(template: dict) -> list[str]:
    """What must be watched because nothing else reports it:
    - every stream: WriteProvisionedThroughputExceeded (producers are throttled before anything
      of ours runs);
    - every HTTP API: 5xx and Latency (a 5xx answer is no Lambda error);
    - every function reporting batch item failures: an alarm on a metric filter of its log group
      (records handed back to the stream are no Lambda error either);
    - every state machine: ExecutionsFailed and ExecutionsTimedOut."""
    rs = template.get("Resources") or {}
    watched: set[tuple[str, str, str]] = set()
    for _, props in alarms(template):
        for m in watched_metrics(props):
            for d in m["Dimensions"] or [{"Name": "", "Value": None}]:
                watched.add((text(m["Namespace"]), text(m["MetricName"]), _target(d.get("Value"), "Ref") or ""))
    alarmed_filters = set(filter_metrics(template)) & {(ns, name) for ns, name, _ in watched}
    alarmed_groups = {v["log_group"] for k, v in filter_metrics(template).items() if k in alarmed_filters}
    out = []
    for logical, res in rs.items():
        kind, p = res.get("Type"), res.get("Properties") or {}
        wants = []
        if kind == "AWS::Kinesis::Stream":
            wants = [("AWS/Kinesis", "WriteProvisionedThroughputExceeded")]
        elif kind == "AWS::ApiGatewayV2::Api":
            wants = [("AWS/ApiGateway", "5xx"), ("AWS/ApiGateway", "Latency")]
        elif kind == "AWS::StepFunctions::StateMachine":
            wants = [("AWS/States", "ExecutionsFailed"), ("AWS/States", "ExecutionsTimedOut")]
        elif kind == "AWS::Lambda::EventSourceMapping" and "ReportBatchItemFailures" in (p.get("FunctionResponseTypes") or []):
            fn = rs.get(_target(p.get("FunctionName"), "Ref") or "") or {}
            group = ((fn.get("Properties") or {}).get("LoggingConfig") or {}).get("LogGroup", {}).get("Ref")
            if group not in alarmed_groups:
                out.append(f"{logical}: {p.get('FunctionName', {}).get('Ref')} hands records back as batch item "
                           f"failures, and no alarm watches a metric filter of its log group {group}")
        for ns, name in wants:
            if (ns, name, logical) not in watched:
                out.append(f"{logical} ({kind}) has no alarm on {ns} {name}")
    return out
