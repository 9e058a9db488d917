"""The product API's routes: the template's HttpApi events (what API Gateway routes to the
function) are exactly the operations of the API's OpenAPI document
(contract/product-api.openapi.json, generated from the handlers and checked current by the
product-api tests), and after the SAM transform every route requires IAM (SigV4)
authorization.

A route in the template that the document lacks is an endpoint nobody can learn about; a
documented operation without a route answers API Gateway's 404 to every caller. SAM gives
each HttpApi event the API's DefaultAuthorizer (AWS_IAM here) unless the event's own Auth
overrides it, so the transformed API is what is checked.

    template_routes(template)   {(METHOD, path)} of the HttpApi events on ProductHttpApi
    document_routes(document)   {(METHOD, path)} of the OpenAPI document's operations
    check_routes(template, document)
    check_iam_on_every_route(transformed template)
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import ROOT

DOCUMENT = ROOT / "contract" / "product-api.openapi.json"
API = "ProductHttpApi"
METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def load_document(path: Path = DOCUMENT) -> dict:
    return json.loads(path.read_text())


def template_routes(template: dict) -> set[tuple[str, str]]:
    routes = set()
    for res in (template.get("Resources") or {}).values():
        if res.get("Type") != "AWS::Serverless::Function":
            continue
        for event in ((res.get("Properties") or {}).get("Events") or {}).values():
            props = event.get("Properties") or {}
            if event.get("Type") == "HttpApi" and props.get("ApiId") == {"Ref": API}:
                routes.add((str(props.get("Method", "ANY")).upper(), str(props.get("Path", "$default"))))
    return routes


def document_routes(document: dict) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, item in (document.get("paths") or {}).items()
        for method in item
        if method in METHODS
    }


def check_routes(template: dict, document: dict) -> list[str]:
    routed, documented = template_routes(template), document_routes(document)
    problems = [f"{m} {p} is routed by {API} but not in {DOCUMENT.name}" for m, p in sorted(routed - documented)]
    problems += [f"{m} {p} is in {DOCUMENT.name} but {API} has no route for it" for m, p in sorted(documented - routed)]
    return problems


def check_iam_on_every_route(post: dict) -> list[str]:
    """Every operation of the transformed HTTP API requires AWS_IAM."""
    api = (post.get("Resources") or {}).get(API)
    if not api or api.get("Type") != "AWS::ApiGatewayV2::Api":
        return [f"{API} is not an AWS::ApiGatewayV2::Api after the transform"]
    body = (api.get("Properties") or {}).get("Body") or {}
    problems = []
    for path, item in (body.get("paths") or {}).items():
        for method, op in item.items():
            if method.lower() not in METHODS and method != "x-amazon-apigateway-any-method":
                continue
            schemes = [name for req in op.get("security") or [] for name in req]
            if schemes != ["AWS_IAM"]:
                problems.append(f"{method.upper()} {path} is authorized by {schemes or 'nothing'}, not AWS_IAM alone")
    return problems
