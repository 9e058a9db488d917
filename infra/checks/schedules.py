"""Scheduled invocations, checked against the code, on the template after the SAM transform: the
Input an EventBridge schedule sends a function is a payload its code accepts.

SAM turns a function's `Schedule` event into an AWS::Events::Rule (logical id <function><event>)
whose target is the function, or its alias with AutoPublishAlias, with the event's Input. A
schedule whose Input the function refuses fails every run with an error that looks like any
other failure (Lambda retries it twice, then LambdaAsyncDlq): the heartbeat alarm then fires a
day and a half later, for a typo. The payload the code accepts is read from its request type
(rust_code.request_actions: the variants of `enum Action`, and the fields of a
`deny_unknown_fields` struct holding it)."""

from __future__ import annotations

import json
from typing import Any, Iterator

import rust_code
from policy import logical_of


def scheduled_targets(template: dict) -> Iterator[tuple[str, str, dict, str]]:
    """(rule, schedule expression, target, function) for every target of a scheduled rule that
    is a function of this template, directly or through an alias."""
    rs = template.get("Resources") or {}
    for logical, res in rs.items():
        p = res.get("Properties") or {}
        if res.get("Type") != "AWS::Events::Rule" or "ScheduleExpression" not in p:
            continue
        for target in p.get("Targets") or []:
            name = logical_of(target.get("Arn"))
            r = rs.get(name or "") or {}
            if r.get("Type") == "AWS::Lambda::Alias":
                name = logical_of((r.get("Properties") or {}).get("FunctionName"))
                r = rs.get(name or "") or {}
            if r.get("Type") == "AWS::Lambda::Function":
                yield logical, p["ScheduleExpression"], target, name


def scheduled_actions(template: dict, function: str) -> dict[str, Any]:
    """Schedule expression -> the `action` each schedule of a function sends (None without one)."""
    out = {}
    for _, expression, target, name in scheduled_targets(template):
        if name == function:
            try:
                payload = json.loads(target.get("Input") or "null")
            except json.JSONDecodeError:
                payload = None
            out[expression] = payload.get("action") if isinstance(payload, dict) else None
    return out


def check_schedule_inputs(template: dict,
                          accepted: dict[str, tuple[set[str], set[str] | None] | None] | None = None) -> list[str]:
    """Every scheduled target's Input is a JSON object the function's request type accepts: an
    `action` among its `enum Action` variants, and no field a `deny_unknown_fields` request
    refuses. `accepted` (crate -> what rust_code.request_actions returns) replaces the reading
    of the code, for tests."""
    rs = template.get("Resources") or {}
    out = []
    for rule, _, target, function in scheduled_targets(template):
        crate = rust_code.crate_of(rs[function])
        where = f"{rule} ({logical_of(target.get('Arn'))})"
        if crate is None:
            out.append(f"{where}: no crate found for {function} (Metadata.BuildProperties.Binary)")
            continue
        request = accepted[crate] if accepted is not None and crate in accepted else rust_code.request_actions(crate)
        text = target.get("Input")
        if not isinstance(text, str):
            out.append(f"{where} sends {function} no Input (the scheduled event itself); {crate} reads an action")
            continue
        try:
            payload = json.loads(text)
        except json.JSONDecodeError as e:
            out.append(f"{where} sends {function} an Input that is not JSON ({e}): {text}")
            continue
        if request is None:
            out.append(f"{where} sends {function} {text}, but {crate}'s code has no `enum Action` to read it with")
            continue
        actions, fields = request
        if not isinstance(payload, dict) or "action" not in payload:
            out.append(f"{where} sends {function} {text}, which names no action ({crate} accepts {sorted(actions)})")
            continue
        if payload["action"] not in actions:
            out.append(f"{where} sends {function} {text}: {crate} accepts the actions {sorted(actions)}, "
                       f"not {payload['action']!r}")
        if fields is not None:
            for extra in sorted(set(payload) - fields):
                out.append(f"{where} sends {function} {text}: {crate} refuses the field {extra!r} "
                           f"(deny_unknown_fields; it reads {sorted(fields)})")
    return out
