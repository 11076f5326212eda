//! Near-duplicate linking: pairs of items closer than a threshold are linked, the
//! connected components found with union-find, and one item kept per component.
//!
//! Neighbour search is never all-pairs. For 64-bit perceptual hashes within Hamming
//! distance t, the hash is cut into t+1 bands: two hashes that close agree exactly
//! on at least one band (pigeonhole), so bucketing by each band finds every pair
//! (recall 1 by construction, checked against brute force in the tests and bench).

use std::collections::HashMap;

/// Union-find with path halving and union by size.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<u32>,
    size: Vec<u32>,
}

impl UnionFind {
    pub fn new(n: usize) -> Self {
        Self {
            parent: (0..n as u32).collect(),
            size: vec![1; n],
        }
    }

    pub fn find(&mut self, mut x: u32) -> u32 {
        while self.parent[x as usize] != x {
            let p = self.parent[x as usize];
            self.parent[x as usize] = self.parent[p as usize];
            x = p;
        }
        x
    }

    /// Link `a` and `b`; true when they were in different components.
    pub fn union(&mut self, a: u32, b: u32) -> bool {
        let (mut a, mut b) = (self.find(a), self.find(b));
        if a == b {
            return false;
        }
        if self.size[a as usize] < self.size[b as usize] {
            std::mem::swap(&mut a, &mut b);
        }
        self.parent[b as usize] = a;
        self.size[a as usize] += self.size[b as usize];
        true
    }

    /// Component id (its root) of every item.
    pub fn components(&mut self) -> Vec<u32> {
        (0..self.parent.len() as u32)
            .map(|i| self.find(i))
            .collect()
    }
}

/// Link every pair of `hashes` within Hamming distance `max_dist` (band blocking).
/// Returns the number of linking unions made.
pub fn link_hamming(hashes: &[u64], max_dist: u32, uf: &mut UnionFind) -> usize {
    let mut unions = 0;
    // Identical hashes first: one representative per distinct hash goes to the bands.
    let mut first: HashMap<u64, u32> = HashMap::with_capacity(hashes.len());
    for (i, &h) in hashes.iter().enumerate() {
        match first.entry(h) {
            std::collections::hash_map::Entry::Occupied(e) => {
                unions += uf.union(*e.get(), i as u32) as usize
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i as u32);
            }
        }
    }
    let mut distinct: Vec<(u64, u32)> = first.into_iter().collect();
    distinct.sort_unstable();
    let bands = (max_dist + 1) as usize;
    let mut keyed: Vec<(u64, u32)> = Vec::with_capacity(distinct.len());
    for b in 0..bands {
        let (lo, hi) = (64 * b / bands, 64 * (b + 1) / bands);
        let mask = if hi - lo == 64 {
            u64::MAX
        } else {
            ((1u64 << (hi - lo)) - 1) << lo
        };
        keyed.clear();
        keyed.extend(distinct.iter().map(|&(h, i)| (h & mask, i)));
        keyed.sort_unstable();
        for group in keyed.chunk_by(|a, b| a.0 == b.0) {
            for x in 0..group.len() {
                for y in x + 1..group.len() {
                    let (i, j) = (group[x].1, group[y].1);
                    if (hashes[i as usize] ^ hashes[j as usize]).count_ones() <= max_dist {
                        unions += uf.union(i, j) as usize;
                    }
                }
            }
        }
    }
    unions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banding_finds_every_pair_brute_force_does() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut hashes: Vec<u64> = (0..400).map(|_| rng.random()).collect();
        // Plant near duplicates at distances 0..=6.
        for k in 0..200 {
            let mut h = hashes[k];
            for _ in 0..(k % 7) {
                h ^= 1 << rng.random_range(0..64);
            }
            hashes.push(h);
        }
        for t in [0, 3, 5] {
            let mut banded = UnionFind::new(hashes.len());
            link_hamming(&hashes, t, &mut banded);
            let mut brute = UnionFind::new(hashes.len());
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    if (hashes[i] ^ hashes[j]).count_ones() <= t {
                        brute.union(i as u32, j as u32);
                    }
                }
            }
            let (a, b) = (banded.components(), brute.components());
            for i in 0..hashes.len() {
                for j in i + 1..hashes.len() {
                    assert_eq!(a[i] == a[j], b[i] == b[j], "t={t}: {i} {j}");
                }
            }
        }
    }
}
