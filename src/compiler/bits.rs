//! The rule bitsets: one bit per rule of the chain, what the shared matchers
//! mark and the decision reads.

/// One bit per rule of the chain.
#[derive(Debug, Default)]
pub(crate) struct RuleBits(Vec<u64>);

impl RuleBits {
    /// Sized for `rules` rules, with the bits of the rules where `f` holds set.
    pub(crate) fn from_fn(rules: usize, f: impl Fn(usize) -> bool) -> Self {
        let mut bits = RuleBits::default();
        bits.reset(rules);
        for rule in (0..rules).filter(|&r| f(r)) {
            bits.set(rule);
        }
        bits
    }

    /// Number of 64-bit words.
    pub(crate) fn words(&self) -> usize {
        self.0.len()
    }

    /// Word `w` (rules `64 * w ..`), zero past the end.
    #[inline]
    pub(crate) fn word(&self, w: usize) -> u64 {
        self.0.get(w).copied().unwrap_or(0)
    }

    /// All clear, sized for `rules` rules (reusing the allocation).
    pub(crate) fn reset(&mut self, rules: usize) {
        self.0.clear();
        self.0.resize(rules.div_ceil(64), 0);
    }

    #[inline]
    pub(crate) fn get(&self, rule: usize) -> bool {
        self.0
            .get(rule / 64)
            .is_some_and(|w| w & (1 << (rule % 64)) != 0)
    }

    #[inline]
    pub(crate) fn set(&mut self, rule: usize) {
        if let Some(w) = self.0.get_mut(rule / 64) {
            *w |= 1 << (rule % 64);
        }
    }
}
