"""The schedules' Input against what each function's code accepts (schedules.py), on the template
after the SAM transform, and the rule shown catching broken copies."""

from __future__ import annotations

import json

import pytest

import rust_code
import sam_transform
import schedules

# What schema-migrate's request type accepts (functions/schema-migrate/src/handler.rs, MigrateRequest
# and Action): the broken copies below are judged against this, whatever the code says today.
SCHEMA_MIGRATE = {"schema-migrate": ({"migrate", "maintain", "retain"}, {"action"})}


@pytest.fixture
def post() -> dict:
    return sam_transform.transformed()


def target(template: dict, rule: str) -> dict:
    return template["Resources"][rule]["Properties"]["Targets"][0]


# ------------------------------------------------------------------ the real template

def test_every_schedule_sends_a_payload_its_function_accepts(post):
    assert schedules.check_schedule_inputs(post) == []


def test_schema_migrate_reads_the_actions_of_its_schedules():
    """The request type is read from the code (so the check above is not vacuous): a direct
    invocation migrates by default, maintains the partitions, or runs the retention, and
    refuses any other field."""
    assert rust_code.request_actions("schema-migrate") == ({"migrate", "maintain", "retain"}, {"action"})
    assert rust_code.request_actions("fanout") is None


def test_schema_migrate_maintains_daily_and_retains_hourly(post):
    """Two Schedule events on one function: SAM makes a rule (and a permission) per event,
    named <function><event>, both targeting the alias."""
    assert schedules.scheduled_actions(post, "SchemaMigrateFunction") == {
        "cron(17 3 * * ? *)": "maintain", "cron(47 * * * ? *)": "retain"}
    rs = post["Resources"]
    for event in ("EventStoreMaintenance", "EventStoreRetention"):
        assert rs[f"SchemaMigrateFunction{event}"]["Type"] == "AWS::Events::Rule"
        assert rs[f"SchemaMigrateFunction{event}Permission"]["Type"] == "AWS::Lambda::Permission"
        assert target(post, f"SchemaMigrateFunction{event}")["Arn"] == {"Ref": "SchemaMigrateFunctionAliaslive"}


# ------------------------------------------------------------------ broken copies

def test_the_real_schedules_pass_against_the_request_type(post):
    assert schedules.check_schedule_inputs(post, SCHEMA_MIGRATE) == []


def test_an_action_the_function_does_not_know_is_caught(post):
    target(post, "SchemaMigrateFunctionEventStoreRetention")["Input"] = '{"action":"retention"}'
    assert schedules.check_schedule_inputs(post, SCHEMA_MIGRATE) == [
        "SchemaMigrateFunctionEventStoreRetention (SchemaMigrateFunctionAliaslive) sends SchemaMigrateFunction "
        "{\"action\":\"retention\"}: schema-migrate accepts the actions ['maintain', 'migrate', 'retain'], "
        "not 'retention'"]


def test_a_retention_schedule_the_code_cannot_run_yet_is_caught(post):
    """The template deployed ahead of the code: the hourly schedule would fail every run."""
    before = {"schema-migrate": ({"migrate", "maintain"}, {"action"})}
    assert schedules.check_schedule_inputs(post, before) == [
        "SchemaMigrateFunctionEventStoreRetention (SchemaMigrateFunctionAliaslive) sends SchemaMigrateFunction "
        "{\"action\":\"retain\"}: schema-migrate accepts the actions ['maintain', 'migrate'], not 'retain'"]


def test_a_field_the_request_refuses_or_no_input_is_caught(post):
    target(post, "SchemaMigrateFunctionEventStoreRetention")["Input"] = json.dumps({"action": "retain", "days": 30})
    del target(post, "SchemaMigrateFunctionEventStoreMaintenance")["Input"]
    assert schedules.check_schedule_inputs(post, SCHEMA_MIGRATE) == [
        "SchemaMigrateFunctionEventStoreMaintenance (SchemaMigrateFunctionAliaslive) sends SchemaMigrateFunction "
        "no Input (the scheduled event itself); schema-migrate reads an action",
        "SchemaMigrateFunctionEventStoreRetention (SchemaMigrateFunctionAliaslive) sends SchemaMigrateFunction "
        "{\"action\": \"retain\", \"days\": 30}: schema-migrate refuses the field 'days' (deny_unknown_fields; "
        "it reads ['action'])"]


def test_the_request_type_is_read_from_rust_source(monkeypatch):
    """Variants as serde names them: snake_case, or an explicit rename."""
    source = '''
/// What a direct invocation asks for.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Apply the migrations.
    #[default]
    Migrate,
    Maintain,
    #[serde(rename = "retire-days")]
    RetireOldDays,
    RebuildSnapshot
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    #[serde(default)]
    pub action: Action,
    pub dry_run: bool,
}
'''
    monkeypatch.setattr(rust_code, "production_sources", lambda crate: {rust_code.ROOT / "x.rs": source})
    assert rust_code.request_actions("x") == ({"migrate", "maintain", "retire-days", "rebuild_snapshot"},
                                              {"action", "dry_run"})
    monkeypatch.setattr(rust_code, "production_sources", lambda crate: {
        rust_code.ROOT / "x.rs": source.replace("#[serde(deny_unknown_fields)]\n", "")})
    assert rust_code.request_actions("x")[1] is None
