#!/usr/bin/env python3
"""Put inventory updates on the pipeline's Kinesis stream with boto3.

A minimal producer for suppliers who do not use the `inventory` command line: it reads JSON
lines (one record of the data contract per line), sends them with PutRecords in batches of at
most 500 records and 5 MiB, partition key = the record's product_id, and retries only the
entries Kinesis refused (FailedRecordCount, an ErrorCode per entry) with exponential backoff
and full jitter. Whole-call failures (throttled or failed requests, network errors) are
retried by botocore's own "standard" retry mode.

A retried entry may land after a later update of the same product that went through first.
The pipeline keeps, per product and supplier, the update with the newest `occurred_at`, so
set `occurred_at` on every record and the order of arrival does not matter.

    python producer.py --stream inventory-updates-dev feed.jsonl
    python producer.py --stream inventory-updates-dev --endpoint-url http://127.0.0.1:PORT feed.jsonl
    cat feed.jsonl | python producer.py --stream inventory-updates-dev

Exit codes: 0 every record sent; 1 usage or AWS error; 2 a line is not a record (nothing
sent); 3 some records were still refused after every retry (written to stderr as JSON lines,
or to --unsent-out).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from typing import Callable, Iterable, Iterator, Sequence

MAX_BATCH_RECORDS = 500  # PutRecords: at most 500 records per request
MAX_BATCH_BYTES = 5 * 1024 * 1024  # ... and 5 MiB, data and partition keys together
MAX_RECORD_BYTES = 16 * 1024  # the data contract's limit for one record

Entry = tuple[str, bytes]  # (partition key, data)


class BadRecord(ValueError):
    """A line that is not a record this producer can send."""


def entry_for(line: str, where: str) -> Entry:
    """The (partition key, data) of one JSON line: the key is the record's product_id."""
    data = line.strip().encode("utf-8")
    if len(data) > MAX_RECORD_BYTES:
        raise BadRecord(f"{where}: record_too_large: {len(data)} bytes, the limit is {MAX_RECORD_BYTES}")
    try:
        record = json.loads(data)
    except json.JSONDecodeError as e:
        raise BadRecord(f"{where}: not_json: {e}") from None
    if not isinstance(record, dict):
        raise BadRecord(f"{where}: not_an_object: a record is a JSON object")
    product_id = record.get("product_id")
    if not isinstance(product_id, str) or not product_id:
        raise BadRecord(f"{where}: product_id_missing: product_id is the partition key")
    return product_id, data


def read_entries(lines: Iterable[str], name: str) -> list[Entry]:
    """Every non-blank line as an entry; the first bad line stops it (nothing is sent)."""
    return [entry_for(line, f"{name}:{n}") for n, line in enumerate(lines, 1) if line.strip()]


def batches(entries: Sequence[Entry]) -> Iterator[list[Entry]]:
    """Consecutive runs of at most MAX_BATCH_RECORDS entries and MAX_BATCH_BYTES."""
    batch: list[Entry] = []
    size = 0
    for key, data in entries:
        n = len(key.encode("utf-8")) + len(data)
        if batch and (len(batch) == MAX_BATCH_RECORDS or size + n > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append((key, data))
        size += n
    if batch:
        yield batch


def backoff(attempt: int, base: float, cap: float, rng: Callable[[], float]) -> float:
    """Full jitter: a random delay up to base * 2^attempt, at most cap."""
    return rng() * min(cap, base * (2**attempt))


def put_all(
    client,
    stream: str,
    entries: Sequence[Entry],
    *,
    attempts: int = 8,
    base_delay: float = 0.1,
    max_delay: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> list[tuple[Entry, str]]:
    """Sends every entry; returns those still refused after `attempts` tries, with the error."""
    unsent: list[tuple[Entry, str]] = []
    for batch in batches(entries):
        pending = batch
        errors: list[str] = []
        for attempt in range(attempts):
            if attempt:
                sleep(backoff(attempt - 1, base_delay, max_delay, rng))
            response = client.put_records(
                StreamName=stream,
                Records=[{"PartitionKey": key, "Data": data} for key, data in pending],
            )
            if response.get("FailedRecordCount", 0) == 0:
                pending = []
                break
            # The results come in the order of the request: keep the refused entries only.
            refused = [
                (entry, result)
                for entry, result in zip(pending, response["Records"])
                if result.get("ErrorCode")
            ]
            pending = [entry for entry, _ in refused]
            errors = [f"{r['ErrorCode']}: {r.get('ErrorMessage', '')}" for _, r in refused]
        unsent.extend(zip(pending, errors))
    return unsent


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("feed", nargs="?", help="JSON lines file (default: stdin)")
    parser.add_argument("--stream", required=True, help="the stream's name, e.g. inventory-updates-dev")
    parser.add_argument("--region", default=None, help="AWS region (default: the SDK's, e.g. AWS_REGION)")
    parser.add_argument("--endpoint-url", default=None, help="another Kinesis endpoint, e.g. the local stack's")
    parser.add_argument("--unsent-out", default=None, help="write refused records here instead of stderr")
    args = parser.parse_args(argv)

    try:
        if args.feed:
            with open(args.feed, encoding="utf-8") as f:
                entries = read_entries(f, args.feed)
        else:
            entries = read_entries(sys.stdin, "stdin")
    except BadRecord as e:
        print(f"producer: {e}; nothing sent", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as e:
        print(f"producer: cannot read the feed: {e}", file=sys.stderr)
        return 1

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "kinesis",
        region_name=args.region,
        endpoint_url=args.endpoint_url,
        config=Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    try:
        unsent = put_all(client, args.stream, entries)
    except (BotoCoreError, ClientError) as e:
        print(f"producer: AWS refused: {e}", file=sys.stderr)
        return 1
    sent = len(entries) - len(unsent)
    print(f"producer: sent {sent} of {len(entries)} records to {args.stream}", file=sys.stderr)
    if not unsent:
        return 0
    out = open(args.unsent_out, "w", encoding="utf-8") if args.unsent_out else sys.stderr
    try:
        for (_, data), error in unsent:
            print(json.dumps({"error": error, "record": data.decode("utf-8")}), file=out)
    finally:
        if out is not sys.stderr:
            out.close()
    return 3


if __name__ == "__main__":
    sys.exit(main())
