//! Which positions of a listing are still shown, with the position of the
//! k-th shown one in O(log n).
//!
//! Vendors page member listings by offset over the members that are not
//! deleted. Scanning from the start for every page made listing a tenant
//! quadratic: a million members in pages of a thousand cost five hundred
//! million steps in the simulator, more than the client being measured. A
//! Fenwick tree of 0/1 flags answers "where does page k start" directly.

#[derive(Debug, Clone)]
pub(crate) struct RankIndex {
    /// `tree[i]` (1-based) holds the count of shown positions in
    /// `(i - lowbit(i), i]`.
    tree: Vec<u32>,
    shown: usize,
}

impl RankIndex {
    /// An index over `flags.len()` positions, `flags[p]` saying whether
    /// position `p` is shown; built in O(n).
    pub(crate) fn new(flags: impl ExactSizeIterator<Item = bool>) -> Self {
        let mut tree = vec![0u32; flags.len() + 1];
        let mut shown = 0;
        for (p, flag) in flags.enumerate() {
            if flag {
                tree[p + 1] += 1;
                shown += 1;
            }
        }
        for i in 1..tree.len() {
            let parent = i + lowbit(i);
            if parent < tree.len() {
                tree[parent] += tree[i];
            }
        }
        RankIndex { tree, shown }
    }

    /// How many positions are shown.
    pub(crate) fn shown(&self) -> usize {
        self.shown
    }

    /// Hides a shown position (a soft-deleted member).
    pub(crate) fn hide(&mut self, position: usize) {
        self.shown -= 1;
        let mut i = position + 1;
        while i < self.tree.len() {
            self.tree[i] -= 1;
            i += lowbit(i);
        }
    }

    /// The position of the shown entry with `skip` shown entries before it,
    /// or `None` past the end.
    pub(crate) fn nth_shown(&self, skip: usize) -> Option<usize> {
        if skip >= self.shown {
            return None;
        }
        // Descend from the highest power of two: `pos` ends as the largest
        // prefix holding at most `skip` shown entries, so the answer is the
        // next position.
        let mut remaining = skip as u32;
        let mut pos = 0;
        let mut step = (self.tree.len() - 1).checked_ilog2().map_or(0, |b| 1 << b);
        while step > 0 {
            let next = pos + step;
            if next < self.tree.len() && self.tree[next] <= remaining {
                remaining -= self.tree[next];
                pos = next;
            }
            step >>= 1;
        }
        Some(pos)
    }
}

fn lowbit(i: usize) -> usize {
    i & i.wrapping_neg()
}

#[cfg(test)]
mod tests {
    use super::RankIndex;

    /// Compares against a plain scan over flags with a pattern of gaps,
    /// before and after hiding positions.
    #[test]
    fn nth_shown_matches_a_scan() {
        let mut flags: Vec<bool> = (0..1_000).map(|p| p % 7 != 3 && p % 11 != 0).collect();
        let mut index = RankIndex::new(flags.iter().copied());
        for hide in [0, 1, 2, 500, 998, 999] {
            if flags[hide] {
                flags[hide] = false;
                index.hide(hide);
            }
            let shown: Vec<usize> = (0..flags.len()).filter(|&p| flags[p]).collect();
            assert_eq!(index.shown(), shown.len());
            for (k, &p) in shown.iter().enumerate() {
                assert_eq!(index.nth_shown(k), Some(p), "k = {k}");
            }
            assert_eq!(index.nth_shown(shown.len()), None);
        }
    }

    #[test]
    fn empty_and_all_hidden() {
        assert_eq!(RankIndex::new(std::iter::empty()).nth_shown(0), None);
        let mut one = RankIndex::new([true].into_iter());
        assert_eq!(one.nth_shown(0), Some(0));
        one.hide(0);
        assert_eq!(one.nth_shown(0), None);
    }
}
