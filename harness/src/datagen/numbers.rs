//! Seed 002's producer: numbers from 0 to the pair total as text, with
//! occasional corrupt values (out of range, negative, not a number).

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, VecDeque};

const CORRUPT: &[&str] = &["13", "-4", "abc", "99", "7.5x", ""];

pub struct Numbers {
    rng: SmallRng,
    total: u64,
    corrupt_every: Option<u64>,
    n: u64,
    /// With [`Numbers::paired`]: the shuffled rest of the current block's
    /// valid numbers, every one with its complement.
    block: Option<VecDeque<u64>>,
}

impl Numbers {
    /// Every `corrupt_every`-th message is corrupt, cycling through kinds of damage.
    pub fn new(seed: u64, total: u64, corrupt_every: Option<u64>) -> Self {
        Self {
            rng: SmallRng::seed_from_u64(seed),
            total,
            corrupt_every,
            n: 0,
            block: None,
        }
    }

    /// Like [`Numbers::new`], but every number has a complement to pair
    /// with: each block of [`Numbers::paired_block`] messages holds its
    /// corrupt values and pairs of numbers summing to `total`, shuffled. A
    /// whole number of blocks leaves nothing unmatched, so an input lost
    /// anywhere shows as a missing pair (with random numbers, losing one
    /// of the more frequent side of a pair changes no output).
    pub fn paired(seed: u64, total: u64, corrupt_every: u64) -> Self {
        Self {
            block: Some(VecDeque::new()),
            ..Self::new(seed, total, Some(corrupt_every.max(2)))
        }
    }

    /// How many messages make a block of [`Numbers::paired`]: two corrupt
    /// values and the pairs between them.
    pub fn paired_block(corrupt_every: u64) -> u64 {
        2 * corrupt_every.max(2)
    }

    /// The next valid number of a paired block, starting a new block when
    /// the last is used up: `corrupt_every - 1` shuffled pairs, the valid
    /// messages of one block.
    fn next_paired(&mut self) -> Option<u64> {
        let pairs = self.corrupt_every.unwrap_or(2).saturating_sub(1);
        let total = self.total;
        let block = self.block.as_mut()?;
        if block.is_empty() {
            let mut fresh: Vec<u64> = (0..pairs)
                .flat_map(|_| {
                    let a = self.rng.random_range(0..=total);
                    [a, total - a]
                })
                .collect();
            fresh.shuffle(&mut self.rng);
            block.extend(fresh);
        }
        block.pop_front()
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
        if let Some(n) = self.next_paired() {
            return Some(n.to_string());
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
    use std::collections::BTreeSet;

    #[test]
    fn pairs_follow_counts_and_corrupt_values_are_marked() {
        let inputs = ["5", "7", "7", "6", "6", "6", "13", "abc", "0", "12"];
        let pairs = expected_pairs(inputs.iter().copied(), 12);
        assert_eq!(pairs, [(0, 1), (5, 1), (6, 1)].into());
        let generated: Vec<String> = Numbers::new(1, 12, Some(4)).take(8).collect();
        assert!(valid(&generated[3], 12).is_none() && valid(&generated[7], 12).is_none());
        assert!(valid(&generated[0], 12).is_some());
    }

    #[test]
    fn paired_numbers_leave_nothing_unmatched_at_each_block_end() {
        let block = Numbers::paired_block(40) as usize;
        let generated: Vec<String> = Numbers::paired(7, 12, 40).take(3 * block).collect();
        for blocks in 1..=3 {
            let inputs = &generated[..blocks * block];
            let valid_count = inputs.iter().filter(|i| valid(i, 12).is_some()).count() as u64;
            assert_eq!(valid_count, (blocks * (block - 2)) as u64);
            let pairs: u64 = expected_pairs(inputs.iter().map(String::as_str), 12)
                .values()
                .sum();
            assert_eq!(2 * pairs, valid_count, "after {blocks} blocks");
        }
        assert!(valid(&generated[39], 12).is_none() && valid(&generated[79], 12).is_none());
        let distinct: BTreeSet<&String> = generated.iter().collect();
        assert!(distinct.len() > 8, "numbers vary: {distinct:?}");
    }
}
