"""Who may read which supplier's rejections: the rejections bucket's policy and the data key's
policy, resolved for given parameters and evaluated for requests from given accounts.

The evaluation follows the IAM user guide's "Policy evaluation logic" for a cross-account
request, assuming the caller's own account allows it everything (the worst case): an explicit
Deny wins, else the resource policy must Allow (a bucket policy, or the key policy, which for
KMS is the only way another account gets access). Policy variables (`${aws:PrincipalAccount}`)
are replaced by the request's values before matching, as IAM does ("IAM policy elements:
Variables and tags"). Only the intrinsic functions and condition operators these policies use
are understood; anything else raises, so a policy this model cannot read fails the check
instead of passing it."""

from __future__ import annotations

import copy
import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any

ACCOUNT = "999988887777"   # the pipeline's own account in these evaluations
REGION = "us-east-1"
SUFFIX = "dev"
BUCKET = f"inventory-rejections-{SUFFIX}-{ACCOUNT}"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
NO_VALUE = object()


class Unsupported(Exception):
    """The policy uses something this model does not evaluate."""


def resolve(template: dict, value: Any, params: dict[str, Any]) -> Any:
    """`value` with its intrinsic functions replaced for `params` (a list parameter is a list)."""
    conditions = template.get("Conditions") or {}

    def cond(name: str) -> bool:
        return bool(go(conditions[name]))

    def ref(name: str) -> Any:
        pseudo = {"AWS::AccountId": ACCOUNT, "AWS::Region": REGION, "AWS::Partition": "aws",
                  "AWS::URLSuffix": "amazonaws.com", "AWS::NoValue": NO_VALUE}
        if name in pseudo:
            return pseudo[name]
        if name in params:
            return params[name]
        res = (template.get("Resources") or {}).get(name)
        if res is not None:
            return {"RejectionsBucket": BUCKET, "DataKey": KEY_ARN}.get(name, f"<{name}>")
        raise Unsupported(f"Ref {name}")

    def getatt(name: str, attr: str) -> str:
        if (name, attr) == ("RejectionsBucket", "Arn"):
            return f"arn:aws:s3:::{BUCKET}"
        if (name, attr) == ("DataKey", "Arn"):
            return KEY_ARN
        return f"<{name}.{attr}>"

    def sub(text: str) -> str:
        def one(m: re.Match) -> str:
            inner = m.group(1)
            if inner.startswith("!"):
                return "${" + inner[1:] + "}"
            if "." in inner:
                return getatt(*inner.split(".", 1))
            v = ref(inner)
            if not isinstance(v, str):
                raise Unsupported(f"Sub of non-string {inner}")
            return v
        return re.sub(r"\$\{([^}]+)\}", one, text)

    def go(v: Any) -> Any:
        if isinstance(v, list):
            return [x for x in (go(i) for i in v) if x is not NO_VALUE]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return ref(arg)
            if k == "Fn::GetAtt":
                name, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return getatt(name, attr)
            if k == "Fn::Sub":
                if not isinstance(arg, str):
                    raise Unsupported("Fn::Sub with a variable map")
                return sub(arg)
            if k == "Fn::If":
                name, yes, no = arg
                return go(yes) if cond(name) else go(no)
            if k == "Fn::Join":
                sep, items = arg
                return sep.join(go(items))
            if k == "Fn::Equals":
                a, b = (go(x) for x in arg)
                return a == b
            if k == "Fn::Not":
                return not go(arg[0])
            if k == "Fn::And":
                return all(go(x) for x in arg)
            if k == "Fn::Or":
                return any(go(x) for x in arg)
            if k == "Condition":
                return cond(arg)
            if k.startswith("Fn::"):
                raise Unsupported(k)
        return {k: go(x) for k, x in v.items()}

    return go(value)


@dataclass
class Request:
    account: str
    action: str
    resource: str
    context: dict[str, str] = field(default_factory=dict)


def _list(v: Any) -> list:
    return v if isinstance(v, list) else [v]


def _glob(pattern: str, value: str) -> bool:
    return fnmatch.fnmatchcase(value, pattern.replace("[", "[[]"))


def _vars(text: str, req: Request) -> str:
    values = {"aws:PrincipalAccount": req.account, **req.context}

    def one(m: re.Match) -> str:
        if m.group(1) not in values:
            raise Unsupported(f"policy variable {m.group(1)}")
        return values[m.group(1)]
    return re.sub(r"\$\{([^}]+)\}", one, text)


def _principal(statement: dict, account: str) -> bool:
    p = statement.get("Principal")
    if p == "*":
        return True
    if not isinstance(p, dict) or "AWS" not in p:
        return False
    for who in _list(p["AWS"]):
        if who == "*" or who == account or re.fullmatch(rf"arn:aws:iam::{account}:root", str(who)):
            return True
    return False


def _condition(statement: dict, req: Request) -> bool:
    for op, tests in (statement.get("Condition") or {}).items():
        for key, wanted in tests.items():
            have = {"aws:PrincipalAccount": req.account, "aws:SecureTransport": "true",
                    "s3:TlsVersion": "1.3", **req.context}.get(key)
            if have is None:
                return False
            wanted = [_vars(str(w), req) for w in _list(wanted)]
            if op in ("StringEquals", "ArnEquals", "Bool"):
                ok = have in wanted if op != "Bool" else have.lower() in [w.lower() for w in wanted]
            elif op in ("StringLike", "ArnLike"):
                ok = any(_glob(w, have) for w in wanted)
            elif op == "NumericLessThan":
                ok = any(float(have) < float(w) for w in wanted)
            else:
                raise Unsupported(f"condition operator {op}")
            if not ok:
                return False
    return True


def _matches(statement: dict, req: Request) -> bool:
    if "NotAction" in statement or "NotResource" in statement or "NotPrincipal" in statement:
        raise Unsupported("Not* elements")
    return (_principal(statement, req.account)
            and any(_glob(a.lower(), req.action.lower()) for a in _list(statement.get("Action")))
            and any(_glob(_vars(r, req), req.resource) for r in _list(statement.get("Resource")))
            and _condition(statement, req))


def allowed(document: dict, req: Request) -> bool:
    """Whether a resource policy lets `req` through (another account's caller)."""
    statements = _list(document.get("Statement") or [])
    if any(s.get("Effect") == "Deny" and _matches(s, req) for s in statements):
        return False
    return any(s.get("Effect") == "Allow" and _matches(s, req) for s in statements)


def documents(template: dict, params: dict[str, Any]) -> tuple[dict, dict]:
    """(the rejections bucket's policy, the data key's policy), resolved for `params`."""
    rs = template["Resources"]
    bucket_policy = next(r for r in rs.values() if r.get("Type") == "AWS::S3::BucketPolicy"
                         and (r["Properties"].get("Bucket") or {}).get("Ref") == "RejectionsBucket")
    bucket_doc = resolve(template, copy.deepcopy(bucket_policy["Properties"]["PolicyDocument"]), params)
    key_doc = resolve(template, copy.deepcopy(rs["DataKey"]["Properties"]["KeyPolicy"]), params)
    return bucket_doc, key_doc


def object_arn(key: str) -> str:
    return f"arn:aws:s3:::{BUCKET}/{key}"


def isolation_problems(template: dict, suppliers: dict[str, str]) -> list[str]:
    """What lets a supplier account reach another's rejections (or keeps it from its own), for
    `suppliers` = {supplier_id: account}, with SupplierAccountIds = those accounts."""
    params = {"SupplierAccountIds": sorted(set(suppliers.values())), "EnvironmentSuffix": SUFFIX,
              "SupplierRejectionAccounts": ",".join(f"{s}={a}" for s, a in suppliers.items())}
    bucket_doc, key_doc = documents(template, params)
    out = []
    stranger = "444455556666"
    accounts = sorted(set(suppliers.values())) + [stranger]
    for reader in accounts:
        for supplier, owner in suppliers.items():
            own = reader == owner
            key = f"rejections/{owner}/{supplier}/20261206T101500.000000Z-shardId-000000000000-1.jsonl"
            checks = [
                ("read", Request(reader, "s3:GetObject", object_arn(key)), bucket_doc),
                ("list", Request(reader, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}",
                                 {"s3:prefix": f"rejections/{owner}/{supplier}/"}), bucket_doc),
                ("decrypt", Request(reader, "kms:Decrypt", KEY_ARN,
                                    {"kms:ViaService": f"s3.{REGION}.amazonaws.com",
                                     "kms:EncryptionContext:aws:s3:arn": object_arn(key)}), key_doc),
            ]
            for what, req, doc in checks:
                got = allowed(doc, req)
                target = req.context.get("kms:EncryptionContext:aws:s3:arn", req.resource)
                if got and not own:
                    out.append(f"account {reader} may {what} {supplier}'s rejections ({target})")
                if own and not got:
                    out.append(f"account {reader} may not {what} its own supplier {supplier}'s rejections")
        # Never more than its own prefix: not the whole bucket, not another's listing, no writes.
        wider = [
            ("list the whole bucket", Request(reader, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}",
                                              {"s3:prefix": ""}), bucket_doc),
            ("list rejections/", Request(reader, "s3:ListBucket", f"arn:aws:s3:::{BUCKET}",
                                         {"s3:prefix": "rejections/"}), bucket_doc),
            ("write its own prefix", Request(reader, "s3:PutObject",
                                             object_arn(f"rejections/{reader}/x/y.jsonl")), bucket_doc),
            ("delete in its own prefix", Request(reader, "s3:DeleteObject",
                                                 object_arn(f"rejections/{reader}/x/y.jsonl")), bucket_doc),
            ("decrypt without S3", Request(reader, "kms:Decrypt", KEY_ARN,
                                           {"kms:EncryptionContext:aws:s3:arn":
                                            object_arn(f"rejections/{reader}/x/y.jsonl")}), key_doc),
            ("decrypt an archive object", Request(reader, "kms:Decrypt", KEY_ARN,
                                                  {"kms:ViaService": f"s3.{REGION}.amazonaws.com",
                                                   "kms:EncryptionContext:aws:s3:arn":
                                                   f"arn:aws:s3:::inventory-archive-{SUFFIX}-{ACCOUNT}/raw/x"}), key_doc),
        ]
        for what, req, doc in wider:
            if allowed(doc, req):
                out.append(f"account {reader} may {what}")
    return out


def bucket_key_problems(template: dict) -> list[str]:
    """The rejections bucket must not use an S3 Bucket Key: with one, KMS sees the bucket ARN as
    the encryption context, and the key policy's per-prefix condition would refuse every read."""
    rules = (template["Resources"]["RejectionsBucket"]["Properties"].get("BucketEncryption") or {}) \
        .get("ServerSideEncryptionConfiguration") or []
    return [f"RejectionsBucket rule {i} enables an S3 Bucket Key" for i, r in enumerate(rules)
            if r.get("BucketKeyEnabled") not in (False, "false")] or \
        ([] if rules else ["RejectionsBucket has no default encryption"])
