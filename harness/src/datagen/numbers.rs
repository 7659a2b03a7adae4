//! Seed 002's producer: numbers from 0 to the pair total as text, with
//! occasional corrupt values (out of range, negative, not a number).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;

const CORRUPT: &[&str] = &["13", "-4", "abc", "99", "7.5x", ""];

pub struct Numbers {
    rng: SmallRng,
    total: u64,
    corrupt_every: Option<u64>,
    n: u64,
}

impl Numbers {
    /// Every `corrupt_every`-th message is corrupt, cycling through kinds of damage.
    pub fn new(seed: u64, total: u64, corrupt_every: Option<u64>) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            total,
            corrupt_every,
            n: 0,
        }
    }
}

impl Iterator for Numbers {
    type Item = String;

    fn next(&mut self) -> Option<String> {
        self.n += 1;
        if let Some(k) = self
            .corrupt_every
            .filter(|k| *k > 0 && self.n.is_multiple_of(*k))
        {
            return Some(CORRUPT[((self.n / k) as usize) % CORRUPT.len()].to_string());
        }
        Some(self.rng.random_range(0..=self.total).to_string())
    }
}

/// The valid numbers of `inputs`, parsed as the shipped pair_sum job parses them.
pub fn valid(input: &str, total: u64) -> Option<u64> {
    input.trim().parse::<u64>().ok().filter(|n| *n <= total)
}

/// The pairs a pair_sum over `inputs` must produce, whatever the order the
/// numbers meet in: for each smaller number `a` of a pair, how many pairs
/// `(a, total - a)`.
pub fn expected_pairs<'a>(inputs: impl Iterator<Item = &'a str>, total: u64) -> BTreeMap<u64, u64> {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for n in inputs.filter_map(|i| valid(i, total)) {
        *counts.entry(n).or_default() += 1;
    }
    let mut pairs = BTreeMap::new();
    for a in 0..=total / 2 {
        let here = counts.get(&a).copied().unwrap_or(0);
        let made = if 2 * a == total {
            here / 2
        } else {
            here.min(counts.get(&(total - a)).copied().unwrap_or(0))
        };
        if made > 0 {
            pairs.insert(a, made);
        }
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_follow_counts_and_corrupt_values_are_marked() {
        let inputs = ["5", "7", "7", "6", "6", "6", "13", "abc", "0", "12"];
        let pairs = expected_pairs(inputs.iter().copied(), 12);
        assert_eq!(pairs, [(0, 1), (5, 1), (6, 1)].into());
        let generated: Vec<String> = Numbers::new(1, 12, Some(4)).take(8).collect();
        assert!(valid(&generated[3], 12).is_none() && valid(&generated[7], 12).is_none());
        assert!(valid(&generated[0], 12).is_some());
    }
}
