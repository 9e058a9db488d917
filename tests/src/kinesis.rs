//! Which shard Kinesis puts a record on, for the benchmark's lanes: the MD5 of the partition
//! key, read as a 128-bit unsigned integer, falls in one shard's hash key range, and a stream
//! made with N shards splits the range evenly (each `2^128 / N` wide, the last one taking the
//! remainder). The integration tests check this against the emulator's Kinesis.

use md5::{Digest as _, Md5};

/// The index, from 0, of the shard that a record with `partition_key` goes to on a stream made
/// with `shards` shards.
pub fn shard_of(partition_key: &str, shards: usize) -> usize {
    let Ok(n) = u128::try_from(shards) else {
        return 0;
    };
    if n <= 1 {
        return 0;
    }
    let hash = u128::from_be_bytes(Md5::digest(partition_key.as_bytes()).into());
    // 2^128 / n, computed without 2^128: u128::MAX is 2^128 - 1, one less exactly when n
    // divides 2^128.
    let width = u128::MAX / n + u128::from(u128::MAX % n == n - 1);
    usize::try_from((hash / width).min(n - 1)).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::shard_of;

    #[test]
    fn the_hash_key_range_is_split_evenly_by_the_md5_of_the_key() {
        // MD5("") = d41d8cd9..., 0.83 of the way through the range; MD5("a") = 0cc175b9...,
        // 0.05 of the way.
        assert_eq!([1, 2, 3, 4, 8].map(|n| shard_of("", n)), [0, 1, 2, 3, 6]);
        assert_eq!([1, 2, 3, 4, 8].map(|n| shard_of("a", n)), [0, 0, 0, 0, 0]);
        assert_eq!(shard_of("a", 0), 0, "no shards is one");
    }
}
