//! Choosing one commit among concurrent ones, the same way on every member.
//!
//! Every member holds the same set of candidate commits for an epoch when its decision window
//! closes (see the module documentation of `crate::mls` for why), and each candidate is known to
//! every member by the same three facts: the committer's leaf, the leaves it removes, and the hash
//! of its wire bytes. The ranking below uses only those facts, so every member picks the same
//! winner:
//!
//! 1. a candidate whose committer another candidate removes comes last (a member being removed
//!    should not win the race against its own removal);
//! 2. then candidates that remove someone come before those that do not (a removal, perhaps of a
//!    compromised device, must not be starved by a stream of self-updates or additions);
//! 3. then the lowest commit hash wins.

/// What every member knows about one candidate commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct CandidateFacts<'a> {
    /// Leaf index of the member that sent the commit.
    pub(crate) committer: u32,
    /// Leaf indices the commit removes.
    pub(crate) removed: &'a [u32],
    /// `SHA-256("qanat-commit" ‖ group id ‖ epoch ‖ commit bytes)`.
    pub(crate) hash: &'a [u8; 32],
}

/// The index of the winning candidate, or `None` for an empty set.
pub(crate) fn winner(candidates: &[CandidateFacts<'_>]) -> Option<usize> {
    let key = |i: usize, c: &CandidateFacts<'_>| {
        let committer_removed =
            candidates.iter().enumerate().any(|(j, other)| j != i && other.removed.contains(&c.committer));
        (committer_removed, c.removed.is_empty(), *c.hash)
    };
    candidates.iter().enumerate().min_by_key(|(i, c)| key(*i, c)).map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts<'a>(committer: u32, removed: &'a [u32], hash: &'a [u8; 32]) -> CandidateFacts<'a> {
        CandidateFacts { committer, removed, hash }
    }

    #[test]
    fn lowest_hash_wins_among_equals() {
        let (h1, h2) = ([2u8; 32], [1u8; 32]);
        assert_eq!(winner(&[facts(0, &[], &h1), facts(1, &[], &h2)]), Some(1));
        assert_eq!(winner(&[]), None);
    }

    #[test]
    fn removal_beats_lower_hash() {
        let (h1, h2) = ([9u8; 32], [1u8; 32]);
        assert_eq!(winner(&[facts(0, &[3], &h1), facts(1, &[], &h2)]), Some(0));
    }

    #[test]
    fn removed_committer_loses() {
        let (h1, h2) = ([1u8; 32], [9u8; 32]);
        // 0 removes 2; 1 removes 0: 0's commit comes last even with the lower hash.
        assert_eq!(winner(&[facts(0, &[2], &h1), facts(1, &[0], &h2)]), Some(1));
        // Mutual removal: both committers removed; the hash decides.
        assert_eq!(winner(&[facts(0, &[1], &h2), facts(1, &[0], &h1)]), Some(1));
    }

    #[test]
    fn order_of_arrival_does_not_matter() {
        let hs: Vec<[u8; 32]> = (0..5u8).map(|i| [i.wrapping_mul(37); 32]).collect();
        let removed: [&[u32]; 5] = [&[], &[4], &[], &[1], &[]];
        let mut all: Vec<CandidateFacts<'_>> = (0..5).map(|i| facts(i as u32, removed[i], &hs[i])).collect();
        let first = all[winner(&all).unwrap()].clone();
        for _ in 0..5 {
            all.rotate_left(1);
            assert_eq!(all[winner(&all).unwrap()], first);
        }
    }
}
