//! Key groups: keys hash into a fixed number of groups (the job's maximum
//! parallelism) and each subtask owns a contiguous range of groups, so keyed
//! state can be redistributed when parallelism changes.

/// Key groups per job unless the job says otherwise.
pub const DEFAULT_MAX_PARALLELISM: u32 = 128;

/// FNV-1a: stable across processes, machines and releases, unlike std's hasher.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

pub fn key_group(hash: u64, max_parallelism: u32) -> u32 {
    (hash % u64::from(max_parallelism)) as u32
}

/// The subtask (of `parallelism`) that owns `group`.
pub fn subtask_of_group(group: u32, max_parallelism: u32, parallelism: u32) -> u32 {
    (u64::from(group) * u64::from(parallelism) / u64::from(max_parallelism)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_split_into_contiguous_ranges() {
        let owners: Vec<u32> = (0..128).map(|g| subtask_of_group(g, 128, 3)).collect();
        assert_eq!(owners[0], 0);
        assert_eq!(owners[127], 2);
        assert!(owners.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(stable_hash(b"user-1"), stable_hash(b"user-1"));
    }
}
