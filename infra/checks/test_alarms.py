"""The alarm rehearsal (alarms.py) on the template after the SAM transform, and each rule shown
catching a broken copy."""

from __future__ import annotations

import copy
import json

import pytest

import alarms
import sam_transform
from conftest import ASL


@pytest.fixture
def post() -> dict:
    """A fresh transformed template per test (tests mutate it)."""
    return sam_transform.transformed()


@pytest.fixture(scope="module")
def runbooks() -> str:
    return alarms.RUNBOOKS.read_text()


def props(template: dict, logical: str) -> dict:
    return template["Resources"][logical]["Properties"]


# ------------------------------------------------------------------ the real template

def test_every_alarm_watches_a_metric_that_is_emitted(post):
    assert alarms.check_alarm_metrics(post) == []


def test_every_alarm_dimension_names_the_right_resource(post):
    assert alarms.check_alarm_dimensions(post) == []


def test_metric_filters_count_lines_the_code_writes(post):
    assert alarms.check_metric_filters(post) == []


def test_every_alarm_can_fire(post):
    assert alarms.check_alarms_can_fire(post) == []


def test_every_alarm_has_a_runbook_entry(post, runbooks):
    assert alarms.check_runbooks(post, runbooks) == []


def test_what_nothing_else_reports_is_alarmed(post):
    assert alarms.check_required_alarms(post) == []


def test_every_cache_alarm_reads_every_member(post):
    assert alarms.check_cache_alarms_cover_every_member(post) == []


def test_the_tables_are_not_empty(post):
    """The rules compare against something: our EMF metrics and filters were found."""
    emf = alarms.emf_metrics()
    assert ("InventoryPipeline", "ServerErrors") in emf and ("InventoryPipeline", "CacheErrors") in emf
    assert emf[("InventoryPipeline", "ServerErrors")]["dimensions"] == frozenset({"FunctionName"})
    assert len(alarms.filter_metrics(post)) == 6
    assert len(list(alarms.alarms(post))) >= 25


# ------------------------------------------------------------------ broken copies

def test_a_metric_no_service_publishes_is_caught(post):
    props(post, "FanoutErrorsAlarm")["MetricName"] = "Error"
    assert alarms.check_alarm_metrics(post) == ["FanoutErrorsAlarm: AWS/Lambda publishes no metric Error"]


def test_rest_api_metric_names_on_an_http_api_are_caught(post):
    props(post, "ProductApi5xxAlarm")["MetricName"] = "5XXError"
    assert alarms.check_alarm_metrics(post) == ["ProductApi5xxAlarm: AWS/ApiGateway publishes no metric 5XXError"]


def test_a_dimension_the_service_does_not_publish_is_caught(post):
    props(post, "StreamWriteThrottledAlarm")["Dimensions"] = [{"Name": "StreamARN", "Value": {"Ref": "InventoryStream"}}]
    found = alarms.check_alarm_metrics(post)
    assert len(found) == 1 and "WriteProvisionedThroughputExceeded is not published with dimensions ['StreamARN']" in found[0]


def test_an_emf_metric_our_code_does_not_write_is_caught(post):
    props(post, "ProductApiServerErrorsAlarm")["MetricName"] = "ServerError"
    assert alarms.check_alarm_metrics(post) == [
        "ProductApiServerErrorsAlarm: nothing emits InventoryPipeline ServerError (neither an AWS service in the "
        "table nor our EMF metrics nor a metric filter of this template)"]


def test_an_emf_metric_with_the_wrong_dimensions_is_caught(post):
    props(post, "ProductApiCacheErrorsAlarm")["Dimensions"].append({"Name": "Route", "Value": "/products"})
    assert alarms.check_alarm_metrics(post) == [
        "ProductApiCacheErrorsAlarm: InventoryPipeline CacheErrors is emitted with dimensions ['FunctionName'], "
        "not ['FunctionName', 'Route']"]


def test_an_emf_metric_of_another_function_is_caught(post):
    props(post, "ProductApiCacheErrorsAlarm")["Dimensions"] = [{"Name": "FunctionName", "Value": {"Ref": "PersistFunction"}}]
    assert alarms.check_alarm_dimensions(post) == [
        "ProductApiCacheErrorsAlarm: CacheErrors is written by product-api, not by persist"]


def test_a_dimension_naming_the_wrong_resource_is_caught(post):
    props(post, "FanoutErrorsAlarm")["Dimensions"] = [{"Name": "FunctionName", "Value": {"Ref": "FanoutRole"}}]
    found = alarms.check_alarm_dimensions(post)
    assert found == ['FanoutErrorsAlarm: dimension FunctionName = {"Ref": "FanoutRole"} does not name a '
                     'AWS::Lambda::Function of this template (Ref)']


def test_a_cache_member_that_cannot_exist_is_caught(post):
    m1 = props(post, "CacheEvictionsAlarm")["Metrics"][0]
    m1["MetricStat"]["Metric"]["Dimensions"][0]["Value"] = {"Fn::Sub": "inventory-cache-${EnvironmentSuffix}-004"}
    assert alarms.check_alarm_dimensions(post) == [
        "CacheEvictionsAlarm: cache member inventory-cache-${EnvironmentSuffix}-004 does not exist "
        "(the group has at most 3 members)"]


def test_a_cache_alarm_on_one_member_only_is_caught_by_the_metric_math_shape(post):
    """The old alarms followed member -001 alone; now each cache alarm reads every member that
    can exist. A copy that drops -002 and -003 reads fewer members than the group can have."""
    for logical in ("CacheCpuAlarm", "CacheMemoryAlarm", "CacheEvictionsAlarm"):
        members = {json.dumps(m["Dimensions"][0]["Value"]) for m in alarms.watched_metrics(props(post, logical))}
        assert len(members) == 3, logical
    broken = props(post, "CacheCpuAlarm")
    broken["Metrics"] = [broken["Metrics"][0], {"Id": "worst", "Expression": "MAX([m1])", "ReturnData": True}]
    assert alarms.check_cache_alarms_cover_every_member(post) == [
        "CacheCpuAlarm reads cache members ['001'] of a group that can have 3: after a failover it "
        "may watch a replica"]


def errors_alarm(function: str) -> dict:
    return {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmName": {"Fn::Sub": "inventory-x-errors-${EnvironmentSuffix}"},
        "Namespace": "AWS/Lambda", "MetricName": "Errors",
        "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": function}}],
        "Statistic": "Sum", "Period": 60, "EvaluationPeriods": 3, "DatapointsToAlarm": 3, "Threshold": 0,
        "ComparisonOperator": "GreaterThanThreshold"}}


def without_schedules(template: dict) -> None:
    for logical in [k for k, v in template["Resources"].items()
                    if v["Type"] == "AWS::Events::Rule" and "ScheduleExpression" in v["Properties"]]:
        del template["Resources"][logical]


def test_lambda_errors_of_a_custom_resource_handler_are_caught(post):
    """The alarm the template used to have, on schema-migrate before it was scheduled."""
    post["Resources"]["BucketEmptierErrorsAlarm"] = errors_alarm("BucketEmptierFunction")
    assert alarms.check_alarms_can_fire(post) == [
        "BucketEmptierErrorsAlarm: BucketEmptierFunction is a custom-resource handler; it answers FAILED and "
        "returns normally, so its Lambda Errors never rise"]


def test_a_handler_that_a_schedule_also_invokes_can_raise_errors_and_write_lines_daily(post):
    """schema-migrate's daily maintenance fails as a Lambda error and logs a heartbeat line."""
    assert alarms.scheduled_functions(post) == {"SchemaMigrateFunction"}
    post["Resources"]["SchemaMigrateErrorsAlarm"] = errors_alarm("SchemaMigrateFunction")
    assert alarms.check_alarms_can_fire(post) == []
    without_schedules(post)
    assert alarms.check_alarms_can_fire(post) == [
        "EventStoreMaintenanceLateAlarm: EventStoreMaintained is written at most once per deploy; "
        "evaluate 1 of 1, not 36 of 36",
        "EventStoreRetentionLateAlarm: EventStoreRetentionRan is written at most once per deploy; "
        "evaluate 1 of 1, not 36 of 36",
        "DbSizeNearCeilingAlarm: DatabaseBytes is written at most once per deploy; "
        "evaluate 1 of 1, not 1 of 36",
        "SchemaMigrateErrorsAlarm: SchemaMigrateFunction is a custom-resource handler; it answers FAILED and "
        "returns normally, so its Lambda Errors never rise"]


def test_a_heartbeat_that_does_not_treat_missing_data_as_breaching_is_caught(post):
    props(post, "EventStoreMaintenanceLateAlarm")["TreatMissingData"] = "notBreaching"
    assert alarms.check_alarms_can_fire(post) == [
        "EventStoreMaintenanceLateAlarm: EventStoreMaintained is only written when its log line appears, so "
        "this heartbeat must treat missing data as breaching, not notBreaching"]


def test_the_retention_heartbeat_counts_only_runs_that_finished_every_day_due(post):
    """A run that ran out of its time budget logs "event store retention continues", a line the
    code really writes, so the filter rule would pass a filter counting it: pinned here, as a
    retention falling further behind every hour would then never alarm. And the heartbeat
    rule holds it to missing data as breaching."""
    assert props(post, "EventStoreRetentionRanFilter")["FilterPattern"] == \
        '{ $.fields.message = "event store retention ran" }'
    props(post, "EventStoreRetentionLateAlarm")["TreatMissingData"] = "missing"
    assert alarms.check_alarms_can_fire(post) == [
        "EventStoreRetentionLateAlarm: EventStoreRetentionRan is only written when its log line appears, so "
        "this heartbeat must treat missing data as breaching, not missing"]


def test_a_once_per_deploy_metric_evaluated_over_three_points_is_caught(post):
    props(post, "BucketEmptierFailedAlarm").update({"EvaluationPeriods": 3, "DatapointsToAlarm": 3})
    assert alarms.check_alarms_can_fire(post) == [
        "BucketEmptierFailedAlarm: BucketEmptierFailedAnswers is written at most once per deploy; "
        "evaluate 1 of 1, not 3 of 3"]


def test_a_timed_out_alarm_without_a_timeout_is_caught(post, tmp_path):
    definition = json.loads(ASL.read_text())
    del definition["TimeoutSeconds"]
    (tmp_path / "machine.asl.json").write_text(json.dumps(definition))
    props(post, "PipelineStateMachine")["DefinitionS3Location"] = "machine.asl.json"
    assert alarms.check_alarms_can_fire(post, asl_dir=tmp_path) == [
        "ExecutionsTimedOutAlarm: the state machine's definition sets no TimeoutSeconds, so no execution ever times out"]


def test_a_filter_counting_a_line_nobody_writes_is_caught(post):
    props(post, "FanoutStartsThrottledFilter")["FilterPattern"] = '{ $.fields.message = "execution throttled" }'
    assert alarms.check_metric_filters(post) == [
        "FanoutStartsThrottledFilter counts message 'execution throttled', which fanout never logs"]


def test_a_filter_on_the_wrong_functions_log_group_is_caught(post):
    """The fanout's line, counted in the archive's log group, never matches."""
    props(post, "FanoutStartsThrottledFilter")["LogGroupName"] = {"Ref": "ArchiveLogGroup"}
    assert alarms.check_metric_filters(post) == [
        "FanoutStartsThrottledFilter counts message 'chunk not started; its records go back to the stream', "
        "which archive never logs"]


def test_a_filter_taking_its_value_from_a_field_the_line_lacks_is_caught(post):
    """The database size the storage alarm reads comes from a field of the maintenance line."""
    tr = props(post, "EventStoreDatabaseSizeFilter")["MetricTransformations"][0]
    tr["MetricValue"] = "$.fields.database_size"
    assert alarms.check_metric_filters(post) == [
        "EventStoreDatabaseSizeFilter takes its value from $.fields.database_size, but schema-migrate "
        "logs 'event store partitions maintained' without a field 'database_size'"]
    tr["MetricValue"] = "$.database_bytes"
    assert alarms.check_metric_filters(post) == [
        "EventStoreDatabaseSizeFilter takes its value from $.database_bytes, outside the event's fields"]


def test_an_alarm_without_a_runbook_entry_is_caught(post, runbooks):
    broken = runbooks.replace("### inventory-stream-write-throttled\n", "### inventory-stream-write-throttle\n")
    assert alarms.check_runbooks(post, broken) == [
        "StreamWriteThrottledAlarm (inventory-stream-write-throttled) has no entry under '## Alarms' in docs/runbooks.md",
        "runbook entry inventory-stream-write-throttle belongs to no alarm of the template"]


def test_a_runbook_entry_without_three_things_to_look_at_is_caught(post, runbooks):
    entry = alarms.runbook_entries(runbooks)["inventory-db-cpu"]
    broken = runbooks.replace(entry, entry.replace("3. Ingest rate and API read rate.\n", ""))
    assert alarms.check_runbooks(post, broken) == ["runbook entry inventory-db-cpu lists fewer than three things to look at"]


def test_the_rules_run_on_the_transformed_template():
    """SAM's generated resources are what the alarms name (AWS::Lambda::Function, the HTTP API's
    AWS::ApiGatewayV2::Api): on the untransformed template the same dimensions name SAM types."""
    from cfnlint.decode import cfn_yaml
    pre = cfn_yaml.load(str(sam_transform.TEMPLATE))
    found = alarms.check_alarm_dimensions(copy.deepcopy(pre))
    assert any("ProductApi5xxAlarm" in f and "AWS::ApiGatewayV2::Api" in f for f in found), found


def test_a_stream_without_a_write_throttling_alarm_is_caught(post):
    del post["Resources"]["StreamWriteThrottledAlarm"]
    assert alarms.check_required_alarms(post) == [
        "InventoryStream (AWS::Kinesis::Stream) has no alarm on AWS/Kinesis WriteProvisionedThroughputExceeded"]


def test_an_http_api_watched_only_through_lambda_errors_is_caught(post):
    for logical in ("ProductApi5xxAlarm", "ProductApiLatencyAlarm"):
        del post["Resources"][logical]
    assert alarms.check_required_alarms(post) == [
        "ProductHttpApi (AWS::ApiGatewayV2::Api) has no alarm on AWS/ApiGateway 5xx",
        "ProductHttpApi (AWS::ApiGatewayV2::Api) has no alarm on AWS/ApiGateway Latency"]


def test_batch_item_failures_without_an_alarm_are_caught(post):
    del post["Resources"]["FanoutStartsThrottledAlarm"]
    found = alarms.check_required_alarms(post)
    assert len(found) == 1 and "hands records back as batch item failures" in found[0], found


def test_a_flattened_log_layout_is_caught(post, monkeypatch):
    """The filters select $.fields.message: if init_tracing flattened the event, they would match nothing."""
    import rust_code
    init = (rust_code.SHARED / "adapters" / "lambda.rs").read_text()
    assert rust_code.log_layout(init) == "fields"
    flattened = init.replace(".json()", ".json().flatten_event(true)")
    real = rust_code.log_layout
    monkeypatch.setattr(rust_code, "log_layout", lambda init=None: real(flattened))
    found = alarms.check_metric_filters(post)
    assert found == [f"{f} selects $.fields.message, but the functions log 'flattened'" for f in
                     ("SchemaMigrateFailedAnswerFilter", "EventStoreMaintainedFilter", "EventStoreRetentionRanFilter",
                      "EventStoreDatabaseSizeFilter", "BucketEmptierFailedAnswerFilter", "FanoutStartsThrottledFilter")]
