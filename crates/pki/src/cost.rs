//! The iteration budget: every key derivation asks here first, so a hostile file is refused
//! before any work is done for it.

use crate::IntakeError;

/// Caps on the key-derivation work one file may ask for.
#[derive(Clone, Copy, Debug)]
pub struct CostLimits {
    /// Largest iteration count accepted for any single derivation (KDF or MAC).
    pub max_iterations: u32,
    /// Largest sum of iteration counts over the whole file, every password form tried included.
    pub max_total_iterations: u64,
}

impl Default for CostLimits {
    fn default() -> Self {
        Self {
            max_iterations: 1_000_000,
            max_total_iterations: 4_000_000,
        }
    }
}

/// The running account of one parse.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: CostLimits,
    spent: u64,
}

impl Budget {
    pub(crate) fn new(limits: CostLimits) -> Self {
        Self { limits, spent: 0 }
    }

    /// Reserves `iterations` for one derivation, or refuses with `p12_too_costly`.
    pub(crate) fn charge(&mut self, iterations: u64) -> Result<(), IntakeError> {
        if iterations > u64::from(self.limits.max_iterations) {
            return Err(IntakeError::TooCostly {
                iterations,
                cap: u64::from(self.limits.max_iterations),
            });
        }
        let total = self.spent.saturating_add(iterations.max(1));
        if total > self.limits.max_total_iterations {
            return Err(IntakeError::TooCostly {
                iterations: total,
                cap: self.limits.max_total_iterations,
            });
        }
        self.spent = total;
        Ok(())
    }
}
