"""Suppliers read their own rejections and only their own: the rejections bucket's policy and
the data key's policy, evaluated for requests from two supplier accounts and a stranger
(supplier_access.py), on the real template and on copies broken on purpose."""

from __future__ import annotations

import copy
import re

import pytest

import supplier_access
from conftest import ROOT

SUPPLIERS = {"acme": "111111111111", "globex": "222222222222", "initech": "111111111111"}


def test_each_supplier_account_reaches_its_own_prefix_and_nothing_else(template):
    assert supplier_access.isolation_problems(template, SUPPLIERS) == []


def test_without_supplier_accounts_nobody_outside_reads_anything(template):
    params = {"SupplierAccountIds": [""], "EnvironmentSuffix": "dev", "SupplierRejectionAccounts": ""}
    bucket_doc, key_doc = supplier_access.documents(template, params)
    assert [s["Sid"] for s in bucket_doc["Statement"]] == ["DenyNonTlsAccess", "DenyOldTls"]
    assert not any("Rejections" in s.get("Sid", "") for s in key_doc["Statement"])


def test_the_rejections_bucket_uses_no_bucket_key_and_the_writer_asks_for_none(template):
    assert supplier_access.bucket_key_problems(template) == []
    store = (ROOT / "shared" / "src" / "adapters" / "s3_rejections.rs").read_text()
    assert "bucket_key: false" in store
    # ...and the one writer passes the choice on to S3.
    writer = (ROOT / "shared" / "src" / "adapters" / "s3.rs").read_text()
    assert ".bucket_key_enabled(kms.bucket_key)" in writer


def test_validate_gets_the_mapping_and_the_accounts_it_is_checked_against(template):
    env = template["Resources"]["ValidateFunction"]["Properties"]["Environment"]["Variables"]
    assert env["SUPPLIER_ACCOUNTS"] == {"Ref": "SupplierRejectionAccounts"}
    assert env["SUPPLIER_ACCOUNT_IDS"] == {"Fn::Join": [",", {"Ref": "SupplierAccountIds"}]}
    assert env["REJECTIONS_BUCKET"] == {"Ref": "RejectionsBucket"}
    pattern = template["Parameters"]["SupplierRejectionAccounts"]["AllowedPattern"]
    assert re.fullmatch(pattern, "acme=111111111111,globex.eu=222222222222")
    assert re.fullmatch(pattern, "")
    for bad in ["acme=1111", "acme", "acme=111111111111,", "a b=111111111111"]:
        assert not re.fullmatch(pattern, bad), bad


# ------------------------------------------------------------------ broken copies are caught

def _bucket_statement(t: dict, sid: str) -> dict:
    statements = t["Resources"]["RejectionsBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    for st in statements:
        inner = st["Fn::If"][1] if isinstance(st, dict) and "Fn::If" in st else st
        if inner.get("Sid") == sid:
            return inner
    raise KeyError(sid)


def _key_statement(t: dict, sid: str) -> dict:
    for st in t["Resources"]["DataKey"]["Properties"]["KeyPolicy"]["Statement"]:
        inner = st["Fn::If"][1] if isinstance(st, dict) and "Fn::If" in st else st
        if inner.get("Sid") == sid:
            return inner
    raise KeyError(sid)


def _read_whole_prefix(t):
    _bucket_statement(t, "SuppliersReadTheirOwnRejections")["Resource"] = {"Fn::Sub": "${RejectionsBucket.Arn}/rejections/*"}


def _list_without_prefix_condition(t):
    del _bucket_statement(t, "SuppliersListTheirOwnRejections")["Condition"]


def _decrypt_any_rejection(t):
    cond = _key_statement(t, "SuppliersDecryptTheirOwnRejections")["Condition"]["StringLike"]
    cond["kms:EncryptionContext:aws:s3:arn"] = {"Fn::Sub": "arn:${AWS::Partition}:s3:::inventory-rejections-${EnvironmentSuffix}-${AWS::AccountId}/rejections/*"}


def _decrypt_not_only_through_s3(t):
    del _key_statement(t, "SuppliersDecryptTheirOwnRejections")["Condition"]["StringEquals"]


def _wrong_prefix_in_key_policy(t):
    cond = _key_statement(t, "SuppliersDecryptTheirOwnRejections")["Condition"]["StringLike"]
    cond["kms:EncryptionContext:aws:s3:arn"] = {"Fn::Sub": "arn:${AWS::Partition}:s3:::inventory-rejections-${EnvironmentSuffix}-${AWS::AccountId}/${!aws:PrincipalAccount}/*"}


@pytest.mark.parametrize("break_it", [_read_whole_prefix, _list_without_prefix_condition, _decrypt_any_rejection,
                                      _decrypt_not_only_through_s3, _wrong_prefix_in_key_policy],
                         ids=lambda f: f.__name__.strip("_"))
def test_a_policy_that_lets_one_account_reach_anothers_rejections_is_caught(template, break_it):
    broken = copy.deepcopy(template)
    break_it(broken)
    assert supplier_access.isolation_problems(broken, SUPPLIERS) != []


def test_a_bucket_key_on_the_rejections_bucket_is_caught(template):
    broken = copy.deepcopy(template)
    rules = broken["Resources"]["RejectionsBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    rules[0]["BucketKeyEnabled"] = True
    assert supplier_access.bucket_key_problems(broken) == ["RejectionsBucket rule 0 enables an S3 Bucket Key"]


def test_an_intrinsic_the_model_cannot_read_fails_instead_of_passing(template):
    broken = copy.deepcopy(template)
    _bucket_statement(broken, "SuppliersReadTheirOwnRejections")["Resource"] = {"Fn::ImportValue": "elsewhere"}
    with pytest.raises(supplier_access.Unsupported):
        supplier_access.isolation_problems(broken, SUPPLIERS)
