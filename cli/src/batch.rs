//! Which records go into the next `PutRecords` request. Requests hold at most 500 records and
//! 5 MiB (data plus partition keys); a product has at most one request in flight, and its
//! next records wait until the earlier ones are accepted, so its updates reach the stream in
//! feed order whatever fails and is retried in between. A request takes up to `per_product`
//! consecutive records of one product (1, the default, is strict order; see
//! [`crate::send`] for what a larger value trades).

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Records per `PutRecords` request (the Kinesis limit).
pub const MAX_BATCH_RECORDS: usize = 500;
/// Bytes per `PutRecords` request, data plus partition keys (the Kinesis limit).
pub const MAX_BATCH_BYTES: usize = 5 * 1024 * 1024;
/// Bytes per record, data plus partition key (the Kinesis limit).
pub const MAX_ENTRY_BYTES: usize = 1024 * 1024;

/// One record to put on the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The product id (or, for a record without one, a stand-in).
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Where the record came from (`file:line`, a quarantine id, a stream position), for reports.
    pub origin: String,
}

impl Outgoing {
    /// What the record counts against a request's byte limit.
    pub fn size(&self) -> usize {
        self.data.len() + self.partition_key.len()
    }
}

/// Hands out batches of record indices and takes back what became of them.
#[derive(Debug)]
pub struct Scheduler<'a> {
    records: &'a [Outgoing],
    /// Each product's records not yet accepted, in feed order.
    queues: HashMap<&'a str, VecDeque<usize>>,
    /// Products that have records queued and none in flight, by their first queued record.
    ready: BTreeMap<usize, &'a str>,
    per_product: usize,
}

impl<'a> Scheduler<'a> {
    pub fn new(records: &'a [Outgoing]) -> Self {
        Self::with_per_product(records, 1)
    }

    /// A scheduler that puts up to `per_product` consecutive records of a product in a request.
    pub fn with_per_product(records: &'a [Outgoing], per_product: usize) -> Self {
        let mut queues: HashMap<&str, VecDeque<usize>> = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            queues
                .entry(r.partition_key.as_str())
                .or_default()
                .push_back(i);
        }
        let ready = queues
            .iter()
            .filter_map(|(k, q)| q.front().map(|&i| (i, *k)))
            .collect();
        Self {
            records,
            queues,
            ready,
            per_product: per_product.max(1),
        }
    }

    /// The next request: the first queued record of each product not in flight, oldest first,
    /// within the count and byte limits. Empty when nothing can go now.
    pub fn next_batch(&mut self) -> Vec<usize> {
        let mut batch = Vec::new();
        let mut bytes = 0;
        let mut deferred = Vec::new();
        while batch.len() < MAX_BATCH_RECORDS {
            let Some((head, key)) = self.ready.pop_first() else {
                break;
            };
            let size = self.records[head].size();
            if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES {
                // Too big for this request; a smaller record behind it may still fit.
                deferred.push((head, key));
                if MAX_BATCH_BYTES - bytes < 1024 {
                    break;
                }
                continue;
            }
            bytes += size;
            batch.push(head);
            // More of the same product's records, in order, while they fit.
            if let Some(q) = self.queues.get(key) {
                for &next in q.iter().skip(1).take(self.per_product - 1) {
                    let size = self.records[next].size();
                    if batch.len() == MAX_BATCH_RECORDS || bytes + size > MAX_BATCH_BYTES {
                        break;
                    }
                    bytes += size;
                    batch.push(next);
                }
            }
        }
        self.ready.extend(deferred);
        batch
    }

    /// Takes back a request's outcome. Accepted products move on to their next record; a
    /// product with a record not sent stops there, and its later records are returned (they
    /// are held back, since sending them would put them ahead of the one that failed).
    pub fn complete(&mut self, accepted: &[usize], not_sent: &[usize]) -> Vec<usize> {
        let records = self.records;
        let mut touched = std::collections::BTreeSet::new();
        for &i in accepted.iter().chain(not_sent) {
            let key = records[i].partition_key.as_str();
            if let Some(q) = self.queues.get_mut(key) {
                q.retain(|&j| j != i);
            }
            touched.insert(key);
        }
        let mut held_back = Vec::new();
        for &i in not_sent {
            if let Some(q) = self.queues.remove(records[i].partition_key.as_str()) {
                held_back.extend(q);
            }
        }
        for key in touched {
            match self.queues.get(key).and_then(|q| q.front()) {
                Some(&next) => {
                    self.ready.insert(next, key);
                }
                None => {
                    self.queues.remove(key);
                }
            }
        }
        held_back.sort_unstable();
        held_back
    }

    /// Every record still queued (in flight or not), for when a run stops early.
    pub fn remaining(&self) -> Vec<usize> {
        let mut out: Vec<usize> = self.queues.values().flatten().copied().collect();
        out.sort_unstable();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, bytes: usize) -> Outgoing {
        Outgoing {
            partition_key: key.into(),
            data: vec![b'x'; bytes],
            origin: String::new(),
        }
    }

    fn drain(s: &mut Scheduler<'_>) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        loop {
            let b = s.next_batch();
            if b.is_empty() {
                return out;
            }
            s.complete(&b, &[]);
            out.push(b);
        }
    }

    #[test]
    fn a_request_holds_at_most_500_records() {
        let records: Vec<Outgoing> = (0..1_201).map(|i| rec(&format!("p{i}"), 100)).collect();
        let mut s = Scheduler::new(&records);
        let sizes: Vec<usize> = drain(&mut s).iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![500, 500, 201]);
    }

    #[test]
    fn a_request_holds_at_most_5_mib_counting_partition_keys() {
        // 1 MiB of data plus a 2-byte key: five fit in 5 MiB only without the keys.
        let records: Vec<Outgoing> = (0..12)
            .map(|i| rec(&format!("p{i:01}"), 1024 * 1024 - 1))
            .collect();
        let mut s = Scheduler::new(&records);
        let batches = drain(&mut s);
        for b in &batches {
            let bytes: usize = b.iter().map(|&i| records[i].size()).sum();
            assert!(bytes <= MAX_BATCH_BYTES, "{bytes} bytes in one request");
        }
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 4]
        );
    }

    #[test]
    fn a_smaller_record_fills_the_room_a_large_one_leaves() {
        let mut records: Vec<Outgoing> =
            (0..5).map(|i| rec(&format!("big{i}"), 1_000_000)).collect();
        records.push(rec("small", 10));
        let mut s = Scheduler::new(&records);
        let first = s.next_batch();
        assert_eq!(first, vec![0, 1, 2, 3, 4, 5]);
        let mut too_big: Vec<Outgoing> =
            (0..6).map(|i| rec(&format!("big{i}"), 1_000_000)).collect();
        too_big.push(rec("small", 10));
        let mut s = Scheduler::new(&too_big);
        assert_eq!(s.next_batch(), vec![0, 1, 2, 3, 4, 6]);
    }

    #[test]
    fn a_products_next_record_waits_until_its_earlier_one_is_accepted() {
        let records = vec![rec("a", 1), rec("a", 1), rec("b", 1), rec("a", 1)];
        let mut s = Scheduler::new(&records);
        let first = s.next_batch();
        assert_eq!(first, vec![0, 2]);
        assert!(s.next_batch().is_empty(), "a and b are both in flight");
        s.complete(&[0], &[]);
        assert_eq!(s.next_batch(), vec![1]);
        s.complete(&[2], &[]);
        assert!(
            s.next_batch().is_empty(),
            "a's second record is still in flight"
        );
        s.complete(&[1], &[]);
        assert_eq!(s.next_batch(), vec![3]);
        s.complete(&[3], &[]);
        assert!(s.next_batch().is_empty());
        assert!(s.remaining().is_empty());
    }

    #[test]
    fn several_records_of_a_product_share_a_request_in_order_when_allowed() {
        let records = vec![
            rec("a", 1),
            rec("a", 1),
            rec("b", 1),
            rec("a", 1),
            rec("a", 1),
        ];
        let mut s = Scheduler::with_per_product(&records, 3);
        assert_eq!(s.next_batch(), vec![0, 1, 3, 2]);
        assert!(s.next_batch().is_empty(), "both products in flight");
        s.complete(&[0, 1, 3, 2], &[]);
        assert_eq!(s.next_batch(), vec![4]);
        s.complete(&[4], &[]);
        assert!(s.next_batch().is_empty());
        assert!(s.remaining().is_empty());
    }

    #[test]
    fn a_failure_inside_a_shared_request_holds_back_only_what_follows_it() {
        let records = vec![rec("a", 1), rec("a", 1), rec("a", 1), rec("a", 1)];
        let mut s = Scheduler::with_per_product(&records, 3);
        assert_eq!(s.next_batch(), vec![0, 1, 2]);
        let held = s.complete(&[0], &[1, 2]);
        assert_eq!(held, vec![3]);
        assert!(s.next_batch().is_empty());
        assert!(s.remaining().is_empty());
    }

    #[test]
    fn a_record_not_sent_holds_back_its_products_later_records_only() {
        let records = vec![
            rec("a", 1),
            rec("b", 1),
            rec("a", 1),
            rec("b", 1),
            rec("a", 1),
        ];
        let mut s = Scheduler::new(&records);
        assert_eq!(s.next_batch(), vec![0, 1]);
        let held = s.complete(&[1], &[0]);
        assert_eq!(held, vec![2, 4]);
        assert_eq!(s.next_batch(), vec![3]);
        s.complete(&[3], &[]);
        assert!(s.next_batch().is_empty());
        assert!(s.remaining().is_empty());
    }
}
