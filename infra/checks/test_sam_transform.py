"""sam_transform: the offline SAM transform the post-transform rules run on."""

from __future__ import annotations

import pytest
from cfnlint.decode import cfn_yaml

import sam_transform


def test_nothing_serverless_is_left_and_sam_generated_resources_are_there():
    post = sam_transform.transformed()
    kinds = {r["Type"] for r in post["Resources"].values()}
    assert not [k for k in kinds if k.startswith("AWS::Serverless::")]
    assert {"AWS::Lambda::Function", "AWS::Lambda::Version", "AWS::Lambda::EventSourceMapping",
            "AWS::ApiGatewayV2::Api", "AWS::ApiGatewayV2::Stage"} <= kinds
    # Metadata passes through, so rules can find each function's crate.
    assert post["Resources"]["FanoutFunction"]["Metadata"]["BuildProperties"]["Binary"] == "fanout"


def test_each_call_returns_a_fresh_copy():
    first = sam_transform.transformed()
    first["Resources"].clear()
    assert sam_transform.transformed()["Resources"]


def test_a_template_sam_refuses_is_reported_with_the_reason():
    broken = cfn_yaml.load(str(sam_transform.TEMPLATE))
    broken["Resources"]["FanoutFunction"]["Properties"]["Events"]["Stream"]["Type"] = "Kinesiss"
    with pytest.raises(sam_transform.TransformError, match="FanoutFunction"):
        sam_transform.transform_dict(broken)
