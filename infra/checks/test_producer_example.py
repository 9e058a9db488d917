"""The Python producer example's unit tests (examples/producer/test_producer.py: batching, and
retrying only the entries Kinesis refused, against a stub client), run with the infrastructure
checks so they need no stack. The end-to-end run against the local stack is
tests/integration/e2e/producer.rs."""

from __future__ import annotations

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "examples" / "producer"))

from test_producer import Batches, Input, RetryOnlyFailed  # noqa: E402,F401  (collected by pytest)
