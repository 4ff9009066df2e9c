//! AArch64 kernels: NEON (Advanced SIMD).
//!
//! NEON is architecturally mandatory on AArch64 Linux/macOS targets, but it is still detected
//! at runtime (once) so the `Neon` table is only handed out when the feature is present, which
//! is what makes calling the `#[target_feature]` implementations in its wrappers sound.

use super::{Isa, Kernels};

mod neon;

pub(super) fn has_neon() -> bool {
    std::arch::is_aarch64_feature_detected!("neon")
}

pub(super) static NEON: Kernels = Kernels {
    isa: Isa::Neon,
    prefetch: false,
    dot: neon::dot,
    dot_rows: neon::dot_rows,
    dot_block: neon::dot_block,
    #[cfg(feature = "bench")]
    sum: neon::sum,
    #[cfg(feature = "bench")]
    fma_peak: neon::fma_peak,
    #[cfg(feature = "bench")]
    fma_flops_per_iter: neon::FMA_FLOPS_PER_ITER,
};
