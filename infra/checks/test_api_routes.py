"""The product API's routes in the template against its OpenAPI document, and IAM on every
route after the SAM transform (api_routes.py); each rule shown catching a broken copy."""

from __future__ import annotations

import copy

import api_routes
import sam_transform


def test_the_template_routes_exactly_the_documented_operations(template):
    assert api_routes.template_routes(template), "no routes found: the check would pass vacuously"
    assert api_routes.check_routes(template, api_routes.load_document()) == []


def test_every_route_requires_iam_after_the_transform():
    post = sam_transform.transformed()
    assert api_routes.check_iam_on_every_route(post) == []


def product_api_events(template: dict) -> dict:
    for res in template["Resources"].values():
        events = (res.get("Properties") or {}).get("Events") or {}
        if any((e.get("Properties") or {}).get("ApiId") == {"Ref": api_routes.API} for e in events.values()):
            return events
    raise AssertionError("no function has events on the product API")


# ------------------------------------------------------------------ broken copies

def test_a_documented_operation_without_a_route_is_caught(template):
    broken = copy.deepcopy(template)
    events = product_api_events(broken)
    name = next(n for n, e in events.items() if e["Properties"]["Path"] == "/openapi.json")
    del events[name]

    assert api_routes.check_routes(broken, api_routes.load_document()) == [
        "GET /openapi.json is in product-api.openapi.json but ProductHttpApi has no route for it"]


def test_a_route_the_document_lacks_is_caught(template):
    document = api_routes.load_document()
    del document["paths"]["/products/{product_id}/history"]

    assert api_routes.check_routes(template, document) == [
        "GET /products/{product_id}/history is routed by ProductHttpApi but not in product-api.openapi.json"]


def test_a_route_with_another_method_is_caught(template):
    broken = copy.deepcopy(template)
    events = product_api_events(broken)
    events["PostProducts"] = {"Type": "HttpApi", "Properties": {"ApiId": {"Ref": api_routes.API}, "Method": "POST", "Path": "/products"}}

    assert api_routes.check_routes(broken, api_routes.load_document()) == [
        "POST /products is routed by ProductHttpApi but not in product-api.openapi.json"]


def test_a_route_that_opts_out_of_iam_is_caught(template):
    broken = copy.deepcopy(template)
    events = product_api_events(broken)
    name = next(n for n, e in events.items() if e["Properties"]["Path"] == "/openapi.json")
    events[name]["Properties"]["Auth"] = {"Authorizer": "NONE"}

    problems = api_routes.check_iam_on_every_route(sam_transform.transform_dict(broken))

    assert len(problems) == 1 and problems[0].startswith("GET /openapi.json is authorized by"), problems
