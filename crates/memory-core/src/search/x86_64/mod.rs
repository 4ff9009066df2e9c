//! x86-64 kernels: AVX2+FMA (`avx2`) and AVX-512F (`avx512`).
//!
//! The safe wrappers in the tables below are only handed out (via `super::kernels_for`) after
//! `has_avx2()` / `has_avx512()` returned true, which is what makes calling the
//! `#[target_feature]` implementations inside them sound.

use super::{Isa, Kernels};

mod amx;
mod avx2;
mod avx512;
mod vnni;

/// Int8 pre-pass kernels (AVX-512 VNNI); only handed out after `has_avx512_vnni()`.
pub(super) static Q8_VNNI: super::q8::Q8Kernels = super::q8::Q8Kernels { dot_panels: vnni::dot_panels_vnni, bounds: vnni::bounds_avx512, dot_pair: vnni::dot_pair_vnni };
/// Int8 pre-pass kernels with Intel AMX tiles for the dots (AVX-512 bounds); only handed out
/// after `has_avx512_vnni()` and `has_amx()`.
pub(super) static Q8_AMX: super::q8::Q8Kernels = super::q8::Q8Kernels { dot_panels: amx::dot_panels_amx, bounds: vnni::bounds_avx512, dot_pair: vnni::dot_pair_vnni };

/// AMX-TILE + AMX-INT8, with this process allowed to use the tile state (asked once).
pub(super) fn has_amx() -> bool {
    amx::available()
}

/// Software prefetch distance of the prefetching variants, in floats (1.5 KB: one row at 384
/// dims). `examples/kernel_bench` on an Intel Xeon (Sapphire Rapids class, 2 vCPUs): AVX-512
/// `dot_rows` at 87% of the plain `sum` without prefetch, 103-104% with it one row ahead at
/// 384 dims (110% at 128 dims, 3 rows ahead; 92% at 768, one row ahead), and `sum` itself
/// +8% with it. The same prefetch in the AVX2 kernels measured +4% for `dot_rows` and -4% for
/// `sum` there, so AVX2 has no prefetching variant.
pub(super) const PREFETCH_FLOATS: usize = 384;

/// AVX2 and FMA are both required by the `avx2` kernels.
pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
}

/// The `avx512` kernels only use AVX-512F instructions.
pub(super) fn has_avx512() -> bool {
    is_x86_feature_detected!("avx512f")
}

/// AVX-512 VNNI (`vpdpbusd`), for the int8 pre-pass kernel.
pub(super) fn has_avx512_vnni() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vnni")
}

pub(super) static AVX2: Kernels = Kernels {
    isa: Isa::Avx2,
    prefetch: false,
    dot: avx2::dot,
    dot_rows: avx2::dot_rows,
    dot_block: avx2::dot_block,
    #[cfg(feature = "bench")]
    sum: avx2::sum,
    #[cfg(feature = "bench")]
    fma_peak: avx2::fma_peak,
    #[cfg(feature = "bench")]
    fma_flops_per_iter: avx2::FMA_FLOPS_PER_ITER,
};

pub(super) static AVX512: Kernels = Kernels {
    isa: Isa::Avx512,
    prefetch: false,
    dot: avx512::dot,
    dot_rows: avx512::dot_rows,
    dot_block: avx512::dot_block,
    #[cfg(feature = "bench")]
    sum: avx512::sum,
    #[cfg(feature = "bench")]
    fma_peak: avx512::fma_peak,
    #[cfg(feature = "bench")]
    fma_flops_per_iter: avx512::FMA_FLOPS_PER_ITER,
};

/// `AVX512` with software prefetch in the memory-bound kernels (`dot_rows`, `sum`): the
/// default on Intel CPUs (see `super::kernels`).
pub(super) static AVX512_PREFETCH: Kernels = Kernels {
    prefetch: true,
    dot_rows: avx512::dot_rows_prefetch,
    #[cfg(feature = "bench")]
    sum: avx512::sum_prefetch,
    ..AVX512
};

/// Whether the CPU's vendor string is "GenuineIntel".
pub(super) fn is_intel() -> bool {
    let r = core::arch::x86_64::__cpuid(0);
    let mut v = [0u8; 12];
    v[..4].copy_from_slice(&r.ebx.to_le_bytes());
    v[4..8].copy_from_slice(&r.edx.to_le_bytes());
    v[8..].copy_from_slice(&r.ecx.to_le_bytes());
    &v == b"GenuineIntel"
}
