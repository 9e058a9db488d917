"""The first-deploy rehearsal: what CloudFormation, RDS and Kinesis would refuse, found offline
on the template after the SAM transform (sam_transform.transformed()) and on samconfig.toml.
Each check returns a list of problems, one readable line each; empty means it holds.

What each check stands for:
- check_capabilities: `sam deploy` sends samconfig's capabilities; CloudFormation refuses a
  template that needs more (InsufficientCapabilities) before it creates anything.
- check_parameters_have_defaults: `sam deploy --parameter-overrides EnvironmentSuffix=dev`
  replaces samconfig's list, so any other parameter without a default is refused.
- check_destroyable (from policy.py), on the transformed template: SAM adds resources (the
  AWS::Lambda::Version of AutoPublishAlias is Retain unless told otherwise).
- check_deploy_values: every deploy configuration (the defaults, and each samconfig
  environment's overrides) passes the parameters' own constraints, and storage, shard and
  engine-version settings agree with each other and with what RDS/Kinesis accept.
- check_references: every Ref, Fn::GetAtt, Fn::Sub variable, Condition and DependsOn names
  something the transformed template (or CloudFormation) defines, and every GetAtt attribute is
  one the resource type has in the resource specification cfn-lint ships.
- check_samconfig_environments: each samconfig environment is its own stack, tagged and
  prefixed with its own suffix, and guarded by the template's StackNameMatchesSuffix rule.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, Iterator

from cfnlint.schema import PROVIDER_SCHEMA_MANAGER

import policy

SAMCONFIG = Path(__file__).resolve().parent.parent / "samconfig.toml"
REGION = "us-east-1"

PSEUDO_PARAMETERS = {
    "AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
    "AWS::StackId", "AWS::StackName", "AWS::URLSuffix",
}

# ---------------------------------------------------------------- samconfig

def load_samconfig(path: Path = SAMCONFIG) -> dict:
    with open(path, "rb") as f:
        return tomllib.load(f)


def environments(config: dict) -> dict[str, dict]:
    """Per samconfig environment, the deploy command's effective settings (global, then deploy)."""
    out = {}
    for name, env in config.items():
        if not isinstance(env, dict):
            continue
        merged: dict = {}
        merged.update((env.get("global") or {}).get("parameters") or {})
        merged.update((env.get("deploy") or {}).get("parameters") or {})
        merged["_delete"] = (env.get("delete") or {}).get("parameters") or {}
        out[name] = merged
    return out


def parse_overrides(text: str) -> dict[str, str]:
    """`Key=Value Key2="a b"` as sam deploy's --parameter-overrides reads it."""
    out = {}
    for item in shlex.split(text or ""):
        key, sep, value = item.partition("=")
        if sep:
            out[key.removeprefix("ParameterKey=")] = value
    return out


def parse_tags(text: str) -> dict[str, str]:
    return dict(item.partition("=")[::2] for item in shlex.split(text or ""))


# ---------------------------------------------------------------- capabilities

IAM_TYPES = {"AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::IAM::Policy", "AWS::IAM::User",
             "AWS::IAM::Group", "AWS::IAM::InstanceProfile", "AWS::IAM::AccessKey",
             "AWS::IAM::UserToGroupAddition", "AWS::IAM::RolePolicy", "AWS::IAM::UserPolicy",
             "AWS::IAM::GroupPolicy"}
# Custom names that make CloudFormation ask for CAPABILITY_NAMED_IAM.
IAM_NAME_PROPERTIES = {"AWS::IAM::Role": "RoleName", "AWS::IAM::ManagedPolicy": "ManagedPolicyName",
                       "AWS::IAM::User": "UserName", "AWS::IAM::Group": "GroupName",
                       "AWS::IAM::InstanceProfile": "InstanceProfileName"}


def needed_capabilities(source: dict, transformed: dict) -> dict[str, list[str]]:
    """Capability -> the reasons (resources) it is needed for."""
    need: dict[str, list[str]] = {}
    for logical, res in (transformed.get("Resources") or {}).items():
        kind = res.get("Type", "")
        if kind in IAM_TYPES:
            need.setdefault("CAPABILITY_IAM", []).append(f"{logical} ({kind})")
            name = IAM_NAME_PROPERTIES.get(kind)
            if name and name in (res.get("Properties") or {}):
                need.setdefault("CAPABILITY_NAMED_IAM", []).append(f"{logical} sets {name}")
        if kind in ("AWS::Serverless::Application", "AWS::CloudFormation::Stack"):
            need.setdefault("CAPABILITY_AUTO_EXPAND", []).append(f"{logical} ({kind})")
    transforms = source.get("Transform")
    if transforms:
        need.setdefault("CAPABILITY_AUTO_EXPAND", []).append(f"Transform {transforms}")
    return need


def check_capabilities(source: dict, transformed: dict, config: dict) -> list[str]:
    out = []
    need = needed_capabilities(source, transformed)
    for env_name, env in environments(config).items():
        granted = set((env.get("capabilities") or "").split())
        for capability, reasons in sorted(need.items()):
            # NAMED_IAM includes IAM: CloudFormation accepts either for unnamed IAM resources.
            if capability in granted or (capability == "CAPABILITY_IAM" and "CAPABILITY_NAMED_IAM" in granted):
                continue
            out.append(f"samconfig [{env_name}] grants {sorted(granted)} but the template needs "
                       f"{capability} for {', '.join(reasons[:3])}{' ...' if len(reasons) > 3 else ''}")
    return out


# ---------------------------------------------------------------- parameters

MAY_LACK_DEFAULT = {"EnvironmentSuffix"}


def check_parameters_have_defaults(template: dict) -> list[str]:
    return [f"parameter {name} has no Default: `sam deploy --parameter-overrides EnvironmentSuffix=...` "
            f"would be refused"
            for name, p in (template.get("Parameters") or {}).items()
            if "Default" not in p and name not in MAY_LACK_DEFAULT]


def deploy_values(template: dict, overrides: dict[str, str]) -> dict[str, str]:
    """Parameter values of one deploy: the defaults, then the overrides."""
    values = {name: p["Default"] for name, p in (template.get("Parameters") or {}).items() if "Default" in p}
    values.update(overrides)
    return {k: (",".join(map(str, v)) if isinstance(v, list) else str(v)) for k, v in values.items()}


def parameter_problems(template: dict, values: dict[str, str]) -> list[str]:
    """What CloudFormation itself would refuse of these values (constraints of each parameter)."""
    out = []
    params = template.get("Parameters") or {}
    for name in values:
        if name not in params:
            out.append(f"{name} is not a parameter of the template")
    for name, p in params.items():
        if name not in values:
            out.append(f"{name} has no value")
            continue
        value = values[name]
        if p.get("Type") == "Number":
            try:
                number = float(value)
            except ValueError:
                out.append(f"{name}={value!r} is not a number")
                continue
            if "MinValue" in p and number < float(p["MinValue"]):
                out.append(f"{name}={value} is below MinValue {p['MinValue']}")
            if "MaxValue" in p and number > float(p["MaxValue"]):
                out.append(f"{name}={value} is above MaxValue {p['MaxValue']}")
        if "AllowedValues" in p and value not in [str(v) for v in p["AllowedValues"]]:
            out.append(f"{name}={value!r} is not one of {p['AllowedValues']}")
        if "AllowedPattern" in p and p.get("Type") == "String" and not re.fullmatch(p["AllowedPattern"], value):
            out.append(f"{name}={value!r} does not match {p['AllowedPattern']}")
    return out


# ---------------------------------------------------------------- storage, shards, version

# RDS refuses a storage-autoscaling ceiling less than 10% above the allocation ("Invalid max
# storage size") and recommends at least 26%, below which it sends the "reached the maximum
# storage threshold" event (RDS-EVENT-0225) early (RDS User Guide, "Managing capacity
# automatically with Amazon RDS storage autoscaling"); the check keeps the recommended side.
MIN_STORAGE_HEADROOM = 1.26


def consistency_problems(template: dict, values: dict[str, str]) -> list[str]:
    out = []
    res = template.get("Resources") or {}
    db = (res.get("Database") or {}).get("Properties") or {}
    allocated = float(values.get("DbAllocatedStorageGiB", db.get("AllocatedStorage", 0)) or 0)
    ceiling_expr = db.get("MaxAllocatedStorage")
    if isinstance(ceiling_expr, (int, float, str)) and not isinstance(ceiling_expr, bool):
        out.append(f"Database MaxAllocatedStorage is a fixed {ceiling_expr}: make it a parameter checked against "
                   f"DbAllocatedStorageGiB")
        ceiling = float(ceiling_expr)
    else:
        ceiling = float(values.get("DbMaxAllocatedStorageGiB", 0) or 0)
    if ceiling and ceiling < allocated * MIN_STORAGE_HEADROOM:
        out.append(f"storage autoscaling ceiling {ceiling:g} GiB is not at least {MIN_STORAGE_HEADROOM:g} x the "
                   f"allocated {allocated:g} GiB (RDS refuses a ceiling that is not above the allocation)")

    version = values.get("DbEngineVersion", str(db.get("EngineVersion", "")))
    auto_minor = db.get("AutoMinorVersionUpgrade") in (True, "true")
    default = str(((template.get("Parameters") or {}).get("DbEngineVersion") or {}).get("Default", ""))
    if re.fullmatch(r"\d+\.\d+", default):
        out.append(f"DbEngineVersion defaults to the minor version {default}: RDS stops offering a minor for new "
                   f"instances on its own schedule, so a default must be a major version")
    if re.fullmatch(r"\d+\.\d+", version) and not auto_minor:
        out.append(f"DbEngineVersion {version} pins a minor version without AutoMinorVersionUpgrade: RDS retires "
                   f"minor versions")
    family = ((res.get("DbParameterGroup") or {}).get("Properties") or {}).get("Family")
    major = version.split(".")[0]
    if isinstance(family, str):
        if family != f"postgres{major}":
            out.append(f"DbParameterGroup Family {family} does not match engine version {version} (postgres{major})")
    elif not policy.mentions_parameter(family, "DbEngineVersion"):
        out.append("DbParameterGroup Family neither follows DbEngineVersion nor is a literal")

    stream = (res.get("InventoryStream") or {}).get("Properties") or {}
    mode_expr = (stream.get("StreamModeDetails") or {}).get("StreamMode")
    mode = values.get("StreamMode") if mode_expr == {"Ref": "StreamMode"} else mode_expr
    shards = stream.get("ShardCount")
    if mode == "ON_DEMAND" and shards is not None and not _is_if_novalue(shards):
        out.append("InventoryStream sets ShardCount in ON_DEMAND mode (Kinesis refuses it)")
    if mode == "PROVISIONED" and shards is None:
        out.append("InventoryStream in PROVISIONED mode has no ShardCount")
    if not isinstance(mode_expr, dict):
        out.append(f"InventoryStream's mode is hard-coded ({mode_expr}); make it the StreamMode parameter")
    return out


def _is_if_novalue(value: Any) -> bool:
    return isinstance(value, dict) and "Fn::If" in value and {"Ref": "AWS::NoValue"} in value["Fn::If"][1:]


# ---------------------------------------------------------------- template rules, evaluated

class RuleUnsupported(Exception):
    pass


def evaluate_rule_expression(expr: Any, values: dict[str, str]) -> Any:
    """A rule condition or assertion, with the parameter (and pseudo-parameter) values given.
    The rule functions CloudFormation offers: And, Or, Not, Equals, Contains, EachMemberEquals,
    EachMemberIn, and Ref."""
    if isinstance(expr, (str, int, float, bool)):
        return str(expr) if not isinstance(expr, bool) else expr
    if isinstance(expr, list):
        return [evaluate_rule_expression(e, values) for e in expr]
    if not isinstance(expr, dict) or len(expr) != 1:
        raise RuleUnsupported(repr(expr))
    (fn, arg), = expr.items()
    ev = lambda e: evaluate_rule_expression(e, values)  # noqa: E731
    if fn == "Ref":
        if arg not in values:
            raise RuleUnsupported(f"Ref {arg} has no value")
        return values[arg]
    if fn == "Fn::And":
        return all(ev(a) is True for a in arg)
    if fn == "Fn::Or":
        return any(ev(a) is True for a in arg)
    if fn == "Fn::Not":
        return ev(arg[0]) is not True
    if fn == "Fn::Equals":
        return ev(arg[0]) == ev(arg[1])
    if fn == "Fn::Contains":
        return ev(arg[1]) in ev(arg[0])
    if fn == "Fn::EachMemberEquals":
        return all(v == ev(arg[1]) for v in ev(arg[0]))
    if fn == "Fn::EachMemberIn":
        allowed = ev(arg[1])
        return all(v in allowed for v in ev(arg[0]))
    raise RuleUnsupported(fn)


def rule_problems(template: dict, values: dict[str, str], stack_name: str) -> list[str]:
    """The template's Rules as CloudFormation evaluates them before it changes anything."""
    out = []
    known = dict(values, **{"AWS::StackName": stack_name, "AWS::Region": REGION})
    for name, rule in (template.get("Rules") or {}).items():
        try:
            if "RuleCondition" in rule and evaluate_rule_expression(rule["RuleCondition"], known) is not True:
                continue
            for assertion in rule.get("Assertions") or []:
                if evaluate_rule_expression(assertion.get("Assert"), known) is not True:
                    out.append(f"rule {name} refuses it: {assertion.get('AssertDescription', '')}")
        except RuleUnsupported as e:
            out.append(f"rule {name} cannot be evaluated offline ({e})")
    return out


def deploy_configurations(template: dict, config: dict) -> dict[str, tuple[str, dict[str, str]]]:
    """The literal command's configuration (the default environment's stack, the overrides
    replaced by EnvironmentSuffix=dev) and every samconfig environment's: label -> (stack, values)."""
    envs = environments(config)
    literal_stack = (envs.get("default") or {}).get("stack_name", "")
    out = {"literal `--parameter-overrides EnvironmentSuffix=dev`":
           (literal_stack, deploy_values(template, {"EnvironmentSuffix": "dev"}))}
    for name, env in envs.items():
        out[f"samconfig [{name}]"] = (env.get("stack_name", ""),
                                      deploy_values(template, parse_overrides(env.get("parameter_overrides", ""))))
    return out


def check_deploy_values(template: dict, config: dict) -> list[str]:
    out = []
    for label, (stack, values) in deploy_configurations(template, config).items():
        problems = parameter_problems(template, values) + consistency_problems(template, values)
        problems += rule_problems(template, values, stack)
        out += [f"{label}: {p}" for p in problems]
    return out


# ---------------------------------------------------------------- references

def _getatt_names(kind: str) -> set[str] | None:
    """Attributes Fn::GetAtt accepts for a type, from cfn-lint's resource specification; None
    when the type is not an AWS resource type cfn-lint knows (custom resources)."""
    if not kind.startswith("AWS::"):
        return None
    try:
        return {str(a) for a in PROVIDER_SCHEMA_MANAGER.get_type_getatts(kind, REGION)}
    except Exception:  # noqa: BLE001 - unknown type
        return set()


def _sub_variables(text: str) -> Iterator[str]:
    for m in re.finditer(r"\$\{([^}]*)\}", text):
        if not m.group(1).startswith("!"):
            yield m.group(1).strip()


def check_references(template: dict) -> list[str]:
    """Ref/GetAtt/Sub/Condition/DependsOn targets exist; GetAtt attributes exist for the type."""
    out = []
    params = set(template.get("Parameters") or {})
    resources = template.get("Resources") or {}
    conditions = set(template.get("Conditions") or {})
    known = params | set(resources) | PSEUDO_PARAMETERS

    def getatt(where: str, logical: str, attribute: str) -> None:
        if logical not in resources:
            out.append(f"{where}: Fn::GetAtt {logical}.{attribute}: no resource {logical}")
            return
        kind = resources[logical].get("Type", "")
        names = _getatt_names(kind)
        if names is None:
            return  # custom resources return whatever their handler sends
        if not names:
            out.append(f"{where}: Fn::GetAtt {logical}.{attribute}: type {kind} is not in the resource specification")
        elif attribute not in names and not any(re.fullmatch(n.replace(".", r"\.").replace("*", ".+"), attribute)
                                                for n in names):
            out.append(f"{where}: Fn::GetAtt {logical}.{attribute}: {kind} has no attribute {attribute}")

    def visit(where: str, value: Any, local: set[str] = frozenset()) -> None:
        if isinstance(value, list):
            for v in value:
                visit(where, v, local)
            return
        if not isinstance(value, dict):
            return
        for key, arg in value.items():
            if key == "Ref":
                if arg not in known:
                    out.append(f"{where}: Ref {arg}: no parameter or resource of that name")
            elif key == "Fn::GetAtt":
                parts = arg.split(".", 1) if isinstance(arg, str) else arg
                if isinstance(parts, list) and len(parts) == 2 and isinstance(parts[1], str):
                    getatt(where, parts[0], parts[1])
                else:
                    visit(where, arg, local)
            elif key == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1] if len(arg) > 1 else {})
                visit(where, variables, local)
                for var in _sub_variables(text):
                    if var in variables or var in local:
                        continue
                    if "." in var:
                        logical, attribute = var.split(".", 1)
                        getatt(where, logical, attribute)
                    elif var not in known:
                        out.append(f"{where}: Fn::Sub ${{{var}}}: no parameter or resource of that name")
            elif key in ("Fn::If",) and isinstance(arg, list) and arg:
                if arg[0] not in conditions:
                    out.append(f"{where}: Fn::If on unknown condition {arg[0]}")
                visit(where, arg[1:], local)
            elif key == "Condition" and isinstance(arg, str) and where.startswith("Conditions"):
                if arg not in conditions:
                    out.append(f"{where}: Condition {arg} is not defined")
            else:
                visit(where, arg, local)

    for name, body in (template.get("Conditions") or {}).items():
        visit(f"Conditions/{name}", body)
    for name, body in (template.get("Rules") or {}).items():
        visit(f"Rules/{name}", body)
    for logical, res in resources.items():
        visit(f"Resources/{logical}", res.get("Properties") or {})
        condition = res.get("Condition")
        if condition is not None and condition not in conditions:
            out.append(f"Resources/{logical}: Condition {condition} is not defined")
        depends = res.get("DependsOn") or []
        for target in [depends] if isinstance(depends, str) else depends:
            if target not in resources:
                out.append(f"Resources/{logical}: DependsOn {target}: no such resource")
    for name, output in (template.get("Outputs") or {}).items():
        visit(f"Outputs/{name}", output)
    return out


# ---------------------------------------------------------------- samconfig environments

def check_samconfig_environments(template: dict, config: dict) -> list[str]:
    out = []
    rules = template.get("Rules") or {}
    stacks: dict[str, str] = {}
    for name, env in environments(config).items():
        overrides = parse_overrides(env.get("parameter_overrides", ""))
        suffix = overrides.get("EnvironmentSuffix")
        if not suffix:
            out.append(f"samconfig [{name}] does not set EnvironmentSuffix in parameter_overrides")
            continue
        expected = f"inventory-{suffix}"
        if env.get("stack_name") != expected:
            out.append(f"samconfig [{name}] deploys suffix {suffix} into stack {env.get('stack_name')}, not {expected}")
        if env.get("s3_prefix") != expected:
            out.append(f"samconfig [{name}] uploads under s3_prefix {env.get('s3_prefix')}, not {expected}")
        if parse_tags(env.get("tags", "")).get("Environment") != suffix:
            out.append(f"samconfig [{name}] tags Environment={parse_tags(env.get('tags', '')).get('Environment')}, "
                       f"not {suffix}")
        if env["_delete"].get("stack_name") not in (None, expected):
            out.append(f"samconfig [{name}] `sam delete` would delete {env['_delete'].get('stack_name')}, not {expected}")
        if env.get("stack_name") in stacks:
            out.append(f"samconfig [{name}] and [{stacks[env.get('stack_name')]}] share stack {env.get('stack_name')}")
        stacks[env.get("stack_name")] = name
        if not any(_rule_guards(rule, expected, suffix) for rule in rules.values()):
            out.append(f"no template rule refuses a suffix other than {suffix} in stack {expected} "
                       f"(samconfig [{name}]); add a StackNameMatchesSuffix rule")
    return out


def _rule_guards(rule: dict, stack: str, suffix: str) -> bool:
    """A rule that asserts stack name and suffix go together (both literals appear in an
    assertion that compares AWS::StackName and EnvironmentSuffix)."""
    for assertion in rule.get("Assertions") or []:
        text = repr(assertion.get("Assert"))
        if ("AWS::StackName" in text and "EnvironmentSuffix" in text
                and f"'{stack}'" in text and f"'{suffix}'" in text):
            return True
    return False
