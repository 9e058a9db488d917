//! The rules `statemachines/inventory-pipeline.asl.json` must keep (SPEC: retries, redrive,
//! payload limits), checked on the file itself. Each rule is also checked on a broken copy, so
//! a check that could never fail would show.

use inventory::ErrorKind;
use serde_json::{Value, json};
use std::collections::BTreeSet;

const ASL_PATH: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../statemachines/inventory-pipeline.asl.json"
);

/// The Lambda service errors every task retries, as Step Functions names them.
const LAMBDA_TRANSIENT: [&str; 5] = [
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Lambda.ClientExecutionTimeoutException",
];

/// Each task and the substitution that names its function.
const TASKS: [(&str, &str); 4] = [
    ("Validate", "ValidateFunctionArn"),
    ("Archive", "ArchiveFunctionArn"),
    ("Persist", "PersistFunctionArn"),
    ("CacheInvalidate", "CacheInvalidateFunctionArn"),
];

fn definition() -> Value {
    let text = std::fs::read_to_string(ASL_PATH).expect("the ASL file is readable");
    serde_json::from_str(&text).expect("the ASL file is JSON")
}

/// Every state, with the states of Parallel branches, as (name, state).
fn all_states(states: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, state) in states.as_object().into_iter().flatten() {
        out.push((name.clone(), state.clone()));
        for branch in state["Branches"].as_array().into_iter().flatten() {
            out.extend(all_states(&branch["States"]));
        }
    }
    out
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Every string value in the definition whose key ends in `.$` (paths and intrinsics).
fn dynamic_values(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match value.as_str() {
                    Some(s) if key.ends_with(".$") => out.push(s.to_owned()),
                    _ => dynamic_values(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| dynamic_values(i, out)),
        _ => {}
    }
}

/// What is wrong with a definition; empty when every rule holds.
fn violations(def: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let states = all_states(&def["States"]);
    let transient: BTreeSet<&str> = LAMBDA_TRANSIENT
        .into_iter()
        .chain(ErrorKind::transient_names())
        .collect();
    let permanent: BTreeSet<&str> = ErrorKind::ALL
        .iter()
        .copied()
        .filter(|k| !k.is_transient())
        .map(ErrorKind::name)
        .collect();

    for (name, state) in &states {
        if state.get("Catch").is_some() {
            bad.push(format!(
                "{name} has a Catch: a redrive would resume at the catcher, not at {name}"
            ));
        }
        if state["Type"] == "Fail" {
            bad.push(format!(
                "{name} is a Fail state: failures must stay at the task that failed"
            ));
        }
        if state["Type"] != "Task" {
            continue;
        }
        let retriers = state["Retry"].as_array().cloned().unwrap_or_default();
        let mut retried = BTreeSet::new();
        for r in &retriers {
            let errors = strings(&r["ErrorEquals"]);
            for e in &errors {
                if permanent.contains(e) || matches!(*e, "States.ALL" | "States.TaskFailed") {
                    bad.push(format!(
                        "{name} retries {e}, which is permanent (or matches permanent errors)"
                    ));
                }
            }
            retried.extend(errors.iter().copied());
            if r["JitterStrategy"] != "FULL" {
                bad.push(format!(
                    "{name} retries {errors:?} without JitterStrategy FULL"
                ));
            }
            if r["MaxDelaySeconds"].as_u64().is_none_or(|s| s == 0) {
                bad.push(format!(
                    "{name} retries {errors:?} without a MaxDelaySeconds"
                ));
            }
            if r["BackoffRate"].as_f64() != Some(2.0) {
                bad.push(format!("{name} retries {errors:?} without BackoffRate 2"));
            }
            if r["IntervalSeconds"].as_u64().is_none_or(|s| s == 0)
                || r["MaxAttempts"].as_u64().is_none_or(|n| n < 2)
            {
                bad.push(format!("{name} retries {errors:?} without an IntervalSeconds and at least 2 MaxAttempts"));
            }
        }
        let mut needed = transient.clone();
        if state.get("TimeoutSeconds").is_some() {
            needed.insert("States.Timeout");
        }
        for missing in needed.difference(&retried) {
            bad.push(format!("{name} does not retry {missing}"));
        }
        if state["Resource"] == "arn:aws:states:::lambda:invoke"
            && state.get("ResultSelector").is_none()
        {
            bad.push(format!(
                "{name} passes Lambda's whole invoke response on; select the Payload"
            ));
        }
        match TASKS.iter().find(|(task, _)| task == name) {
            Some((_, sub)) if state["Parameters"]["FunctionName"] != format!("${{{sub}}}") => {
                bad.push(format!("{name} does not invoke ${{{sub}}}"));
            }
            None => bad.push(format!("{name} is a task the pipeline does not have")),
            _ => {}
        }
    }

    let mut paths = Vec::new();
    dynamic_values(def, &mut paths);
    for p in paths
        .iter()
        .filter(|p| p.contains("$[") && !p.ends_with(']'))
    {
        bad.push(format!(
            "path {p} reads a field of an array element: moto's interpreter wraps it in an array"
        ));
    }
    bad.extend(flow_violations(def));
    bad.extend(payload_violations(def));
    bad
}

/// Validate -> Parallel(Archive, Persist) -> CacheInvalidate, and nothing else.
fn flow_violations(def: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let top = &def["States"];
    let names: BTreeSet<&str> = top
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    if names != BTreeSet::from(["Validate", "ArchiveAndPersist", "CacheInvalidate"])
        || def["StartAt"] != "Validate"
    {
        bad.push(format!("top-level flow is {names:?} from {}; expected Validate -> ArchiveAndPersist -> CacheInvalidate", def["StartAt"]));
    }
    if top["Validate"]["Next"] != "ArchiveAndPersist"
        || top["ArchiveAndPersist"]["Next"] != "CacheInvalidate"
    {
        bad.push("Validate must lead to ArchiveAndPersist, and it to CacheInvalidate".into());
    }
    if top["ArchiveAndPersist"]["Type"] != "Parallel" || top["CacheInvalidate"]["End"] != true {
        bad.push("ArchiveAndPersist must be a Parallel state and CacheInvalidate the end".into());
    }
    let branches: Vec<(&Value, &Value)> = top["ArchiveAndPersist"]["Branches"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| {
            (
                &b["StartAt"],
                &b["States"][b["StartAt"].as_str().unwrap_or_default()],
            )
        })
        .collect();
    let starts: Vec<&Value> = branches.iter().map(|(s, _)| *s).collect();
    if starts != [&json!("Archive"), &json!("Persist")]
        || branches.iter().any(|(_, s)| s["End"] != true)
    {
        bad.push(format!(
            "the Parallel state must run exactly Archive and Persist, each one task; got {starts:?}"
        ));
    }
    bad
}

/// Archive reads the raw records from the execution input; Persist gets the chunk and the
/// valid updates; CacheInvalidate gets Persist's changed products; nothing carries the raw
/// records after Validate.
fn payload_violations(def: &Value) -> Vec<String> {
    let mut bad = Vec::new();
    let states: std::collections::BTreeMap<String, Value> =
        all_states(&def["States"]).into_iter().collect();
    let params = |name: &str| {
        states
            .get(name)
            .map(|s| s["Parameters"].clone())
            .unwrap_or_default()
    };
    if params("Archive")["Payload.$"] != "$$.Execution.Input" {
        bad.push("Archive must read the records from $$.Execution.Input".into());
    }
    if params("Persist")["Payload"]
        != json!({"chunk.$": "$$.Execution.Input.chunk", "updates.$": "$.valid"})
    {
        bad.push(format!(
            "Persist must get {{chunk, updates: $.valid}}, gets {}",
            params("Persist")["Payload"]
        ));
    }
    if params("CacheInvalidate")["Payload"] != json!({"products.$": "$.persist.changed"}) {
        bad.push(format!(
            "CacheInvalidate must get persist's changed products, gets {}",
            params("CacheInvalidate")["Payload"]
        ));
    }
    let validate_keeps = states
        .get("Validate")
        .map(|s| s["ResultSelector"].clone())
        .unwrap_or_default();
    let kept: Vec<&String> = validate_keeps
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
        .collect();
    if kept != ["rejected.$", "valid.$"] {
        bad.push(format!(
            "Validate's result must keep only valid updates and a rejected count, keeps {kept:?}"
        ));
    }
    bad
}

/// Every `${...}` placeholder in the file's text.
fn substitutions(text: &str) -> BTreeSet<String> {
    text.match_indices("${")
        .filter_map(|(i, _)| {
            text[i + 2..]
                .split_once('}')
                .map(|(name, _)| name.to_owned())
        })
        .collect()
}

#[test]
fn the_state_machine_keeps_every_rule() {
    let found = violations(&definition());

    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_only_placeholders_are_the_four_function_arns() {
    let text = std::fs::read_to_string(ASL_PATH).expect("readable");

    let found = substitutions(&text);

    let expected: BTreeSet<String> = TASKS.iter().map(|(_, sub)| (*sub).to_owned()).collect();
    assert_eq!(found, expected);
}

#[test]
fn every_task_of_the_pipeline_is_there() {
    let names: BTreeSet<String> = all_states(&definition()["States"])
        .into_iter()
        .filter(|(_, s)| s["Type"] == "Task")
        .map(|(n, _)| n)
        .collect();

    assert_eq!(names, TASKS.iter().map(|(t, _)| (*t).to_owned()).collect());
}

/// Applies `edit` to a copy of the definition and returns what the checks say about it.
fn violations_after(edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let mut def = definition();
    edit(&mut def);
    violations(&def)
}

fn persist(def: &mut Value) -> &mut Value {
    &mut def["States"]["ArchiveAndPersist"]["Branches"][1]["States"]["Persist"]
}

#[test]
fn a_catch_into_a_fail_state_is_caught() {
    let found = violations_after(|d| {
        persist(d)["Catch"] = json!([{"ErrorEquals": ["States.ALL"], "Next": "Failed"}]);
        d["States"]["Failed"] = json!({"Type": "Fail"});
    });

    assert!(
        found.iter().any(|v| v.contains("Persist has a Catch")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|v| v.contains("Failed is a Fail state")),
        "{found:#?}"
    );
}

#[test]
fn a_missing_transient_retry_is_caught() {
    let found = violations_after(|d| {
        let retry = persist(d)["Retry"].as_array_mut().expect("Persist retries");
        retry.retain(|r| !strings(&r["ErrorEquals"]).contains(&"Inventory.Conflict"));
    });

    assert!(
        found
            .iter()
            .any(|v| v == "Persist does not retry Inventory.Conflict"),
        "{found:#?}"
    );
}

#[test]
fn a_retry_without_full_jitter_or_max_delay_is_caught() {
    let found = violations_after(|d| {
        let r = &mut d["States"]["Validate"]["Retry"][0];
        r.as_object_mut()
            .expect("retrier")
            .remove("MaxDelaySeconds");
        r["JitterStrategy"] = json!("NONE");
    });

    assert!(
        found
            .iter()
            .any(|v| v.contains("Validate") && v.contains("JitterStrategy FULL")),
        "{found:#?}"
    );
    assert!(
        found
            .iter()
            .any(|v| v.contains("Validate") && v.contains("MaxDelaySeconds")),
        "{found:#?}"
    );
}

#[test]
fn retrying_a_permanent_error_is_caught() {
    let found = violations_after(|d| {
        d["States"]["CacheInvalidate"]["Retry"][1]["ErrorEquals"] = json!([
            "Inventory.DependencyUnavailable",
            "Inventory.Throttled",
            "States.ALL"
        ]);
    });

    assert!(
        found
            .iter()
            .any(|v| v.contains("CacheInvalidate retries States.ALL")),
        "{found:#?}"
    );
}

#[test]
fn a_timeout_without_a_timeout_retry_is_caught() {
    let found = violations_after(|d| d["States"]["Validate"]["TimeoutSeconds"] = json!(60));

    assert!(
        found
            .iter()
            .any(|v| v == "Validate does not retry States.Timeout"),
        "{found:#?}"
    );
}

#[test]
fn a_changed_flow_or_payload_is_caught() {
    let found = violations_after(|d| {
        d["States"]["Validate"]["Next"] = json!("CacheInvalidate");
        d["States"]["ArchiveAndPersist"]["Branches"][0]["States"]["Archive"]["Parameters"]["Payload.$"] =
            json!("$");
        d["States"]["CacheInvalidate"]["Parameters"]["Payload"] =
            json!({"products.$": "$[1].changed"});
    });

    assert!(
        found
            .iter()
            .any(|v| v.contains("Validate must lead to ArchiveAndPersist")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|v| v.contains("$$.Execution.Input")),
        "{found:#?}"
    );
    assert!(
        found.iter().any(|v| v.contains("moto's interpreter wraps")),
        "{found:#?}"
    );
}

#[test]
fn an_extra_placeholder_is_caught() {
    let text = std::fs::read_to_string(ASL_PATH)
        .expect("readable")
        .replacen("${PersistFunctionArn}", "${PersistFunctionAlias}", 1);

    assert!(substitutions(&text).contains("PersistFunctionAlias"));
    assert!(!substitutions(&text).contains("PersistFunctionArn"));
}
