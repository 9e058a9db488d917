"""The producer's batching and retry rules, against a stub Kinesis client that refuses some
entries: only the refused entries are sent again, in their order, after a growing delay.

    python -m unittest discover -s examples/producer
"""

import json
import unittest

import producer


def record(product: str, qty: int = 1, pad: int = 0) -> producer.Entry:
    data = {"product_id": product, "quantity": qty, "price": "1.50", "pad": "x" * pad}
    return product, json.dumps(data).encode()


class StubKinesis:
    """Refuses the entries whose partition key is in `refuse`, the first `times` times each."""

    def __init__(self, refuse=(), times=1, error="ProvisionedThroughputExceededException"):
        self.refuse = {key: times for key in refuse}
        self.error = error
        self.calls = []

    def put_records(self, StreamName, Records):
        self.calls.append([(r["PartitionKey"], r["Data"]) for r in Records])
        results = []
        for r in Records:
            key = r["PartitionKey"]
            if self.refuse.get(key, 0) > 0:
                self.refuse[key] -= 1
                results.append({"ErrorCode": self.error, "ErrorMessage": "Rate exceeded for shard"})
            else:
                results.append({"ShardId": "shardId-000000000000", "SequenceNumber": "1"})
        failed = sum(1 for r in results if "ErrorCode" in r)
        return {"FailedRecordCount": failed, "Records": results}


def put(client, entries, **kw):
    delays = []
    unsent = producer.put_all(client, "stream", entries, sleep=delays.append, rng=lambda: 1.0, **kw)
    return unsent, delays


class RetryOnlyFailed(unittest.TestCase):
    def test_only_the_refused_entries_are_sent_again_in_order(self):
        entries = [record(f"p{i}") for i in range(6)]
        client = StubKinesis(refuse={"p1", "p4"})

        unsent, delays = put(client, entries)

        self.assertEqual(unsent, [])
        self.assertEqual(len(client.calls), 2)
        self.assertEqual(client.calls[0], entries)
        self.assertEqual(client.calls[1], [entries[1], entries[4]])
        self.assertEqual(delays, [0.1])

    def test_the_delay_grows_exponentially_up_to_the_cap_with_jitter(self):
        client = StubKinesis(refuse={"p0"}, times=6)

        unsent, delays = put(client, [record("p0"), record("p1")], max_delay=1.0)

        self.assertEqual(unsent, [])
        self.assertEqual(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
        self.assertTrue(all(call == [record("p0")] for call in client.calls[1:]))
        self.assertEqual(producer.backoff(3, 0.1, 5.0, lambda: 0.25), 0.25 * 0.8)

    def test_entries_refused_on_every_attempt_are_returned_with_their_error(self):
        client = StubKinesis(refuse={"p2"}, times=100, error="InternalFailure")

        unsent, _ = put(client, [record("p1"), record("p2"), record("p3")], attempts=3)

        self.assertEqual(len(client.calls), 3)
        self.assertEqual(unsent, [(record("p2"), "InternalFailure: Rate exceeded for shard")])

    def test_a_fully_accepted_batch_is_sent_once(self):
        client = StubKinesis()

        unsent, delays = put(client, [record("p1")])

        self.assertEqual((unsent, delays, len(client.calls)), ([], [], 1))


class Batches(unittest.TestCase):
    def test_at_most_500_records_per_request(self):
        client = StubKinesis()

        put(client, [record(f"p{i}") for i in range(1201)])

        self.assertEqual([len(c) for c in client.calls], [500, 500, 201])

    def test_at_most_5_mib_per_request_keys_included(self):
        big = [record(f"p{i}", pad=16_000) for i in range(400)]

        sizes = [sum(len(k) + len(d) for k, d in b) for b in producer.batches(big)]

        self.assertGreater(len(sizes), 1)
        self.assertTrue(all(s <= producer.MAX_BATCH_BYTES for s in sizes), sizes)
        self.assertEqual(sum(len(b) for b in producer.batches(big)), 400)


class Input(unittest.TestCase):
    def test_the_partition_key_is_the_product_id(self):
        (entry,) = producer.read_entries(['{"product_id": "sku-1", "quantity": 1, "price": 2}\n', "\n"], "feed")

        self.assertEqual(entry[0], "sku-1")

    def test_a_bad_line_names_where_and_what(self):
        for line, code in [("{", "not_json"), ("[1]", "not_an_object"), ('{"quantity": 1}', "product_id_missing"),
                           ('{"product_id": "p", "x": "' + "a" * 17_000 + '"}', "record_too_large")]:
            with self.assertRaises(producer.BadRecord) as e:
                producer.read_entries(['{"product_id": "ok", "quantity": 1, "price": 1}', line], "feed.jsonl")
            self.assertIn(f"feed.jsonl:2: {code}", str(e.exception))


if __name__ == "__main__":
    unittest.main()
