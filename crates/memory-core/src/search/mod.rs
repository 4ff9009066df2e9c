//! SIMD similarity kernels with one-time runtime ISA dispatch, plus bounded top-k.
//!
//! Layout (memchr / SimSIMD style: one module per ISA next to the scalar oracle):
//!
//! - `scalar` — portable reference kernels (plain loops). They are the oracle the
//!   SIMD kernels are tested against, and the fallback on CPUs without a supported extension.
//! - `x86_64::avx2` — AVX2 + FMA kernels (256-bit).
//! - `x86_64::avx512` — AVX-512F kernels (512-bit, masked tails, register-blocked `dot_block`).
//! - `aarch64::neon` — NEON kernels (128-bit), compiled only on `aarch64`.
//! - [`topk`] — [`TopK`], a bounded min-heap of `(score, row)`.
//!
//! CPU features are detected exactly once (a [`OnceLock`]) and every ISA is exposed as a
//! `'static` [`Kernels`] table of plain `fn` pointers, so the per-call dispatch cost is one
//! indirect call. [`kernels()`] returns the best table for this CPU; the environment variable
//! `MEMORY_SERVER_ISA=scalar|avx2|avx512|neon` (read once, at the first call) forces a specific
//! ISA when it is available (otherwise the best one is used) — meant for tests and benchmarks.
//!
//! All kernels accumulate in `f32`. The SIMD kernels sum in a different order than the scalar
//! ones, so results agree up to rounding (relative error ~1e-6 of `sum |a_i * b_i|`).
//!
//! Safety model: the SIMD implementations are `unsafe fn`s carrying
//! `#[target_feature(enable = ...)]`. They are only reachable through the safe wrapper
//! functions stored in the per-ISA `Kernels` tables, and those tables are only handed out by
//! [`kernels_for`] / [`kernels`] after the corresponding feature has been detected at runtime.
//! The wrappers validate slice lengths (panicking on violated preconditions) before entering
//! code that uses raw-pointer loads.

use std::sync::OnceLock;

#[cfg(target_arch = "aarch64")]
mod aarch64;
pub mod q8;
mod scalar;
pub mod topk;
#[cfg(target_arch = "x86_64")]
mod x86_64;

#[cfg(test)]
mod tests;

pub use topk::TopK;

/// An instruction-set family a [`Kernels`] table is implemented with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// Portable scalar code (the oracle / fallback).
    Scalar,
    /// x86-64 AVX2 + FMA.
    Avx2,
    /// x86-64 AVX-512F.
    Avx512,
    /// AArch64 Advanced SIMD (NEON).
    Neon,
}

impl Isa {
    /// All ISAs, in increasing order of preference on their architecture.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Neon, Isa::Avx2, Isa::Avx512];

    /// Lower-case name: `"scalar" | "avx2" | "avx512" | "neon"`.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Inverse of [`Isa::name`] (case-insensitive, surrounding whitespace ignored).
    pub fn from_name(name: &str) -> Option<Isa> {
        let name = name.trim();
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name().eq_ignore_ascii_case(name))
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Signature of [`Kernels::dot_block`]:
/// `(queries, nq, rows, nr, dims, out)`.
pub type DotBlockFn =
    fn(queries: &[f32], nq: usize, rows: &[f32], nr: usize, dims: usize, out: &mut [f32]);

/// A table of kernel function pointers for one ISA.
///
/// All functions panic (they never read out of bounds) if their length preconditions are
/// violated.
pub struct Kernels {
    pub isa: Isa,
    /// `dot_rows` (and `sum`) prefetch ahead in software (AVX-512 on Intel by default; see
    /// [`kernels`] and [`PREFETCH_ENV_VAR`]).
    pub prefetch: bool,
    /// dot(a, b) over equal-length slices (any length, incl. 0 and odd tails).
    /// Panics if `a.len() != b.len()`.
    pub dot: fn(&[f32], &[f32]) -> f32,
    /// `out[r] = dot(query, rows[r*dims .. (r+1)*dims])` for `r in 0..out.len()`.
    /// Requires `query.len() == dims` and `rows.len() >= out.len() * dims`.
    /// Memory-bandwidth-bound path (single query scan).
    pub dot_rows: fn(query: &[f32], rows: &[f32], dims: usize, out: &mut [f32]),
    /// Multi-query block: `out[q*nr + r] = dot(queries[q*dims..], rows[r*dims..])` for
    /// `q < nq`, `r < nr`. Requires `queries.len() >= nq*dims`, `rows.len() >= nr*dims`,
    /// `out.len() >= nq*nr`.
    ///
    /// This is the compute-bound path: the SIMD versions register-block a tile of rows x
    /// queries (AVX-512: 4 x 4 zmm accumulators) so each loaded row chunk is reused across
    /// queries, and reduce a whole tile of accumulators with one transposing shuffle tree.
    /// Call it with blocks of rows that fit in L2 (e.g. 64..=256 rows) and all queries.
    pub dot_block: DotBlockFn,
    /// Sum of all elements (the memory-bandwidth baseline kernel; benchmarks only).
    #[cfg(feature = "bench")]
    pub sum: fn(&[f32]) -> f32,
    /// Runs `iters` iterations of an FMA-throughput loop with independent accumulators and
    /// returns a value depending on all of them. FLOPs performed =
    /// `iters * fma_flops_per_iter` (one FMA lane = 2 FLOPs). The peak-rate baseline of the
    /// benchmarks only.
    #[cfg(feature = "bench")]
    pub fma_peak: fn(iters: u64) -> f32,
    /// FLOPs performed by one iteration of [`Kernels::fma_peak`].
    #[cfg(feature = "bench")]
    pub fma_flops_per_iter: u64,
}

impl std::fmt::Debug for Kernels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kernels").field("isa", &self.isa).field("prefetch", &self.prefetch).finish_non_exhaustive()
    }
}

/// Name of the environment variable that forces an ISA (see module docs).
pub const ISA_ENV_VAR: &str = "MEMORY_SERVER_ISA";

static SCALAR: Kernels = Kernels {
    isa: Isa::Scalar,
    prefetch: false,
    dot: scalar::dot,
    dot_rows: scalar::dot_rows,
    dot_block: scalar::dot_block,
    #[cfg(feature = "bench")]
    sum: scalar::sum,
    #[cfg(feature = "bench")]
    fma_peak: scalar::fma_peak,
    #[cfg(feature = "bench")]
    fma_flops_per_iter: scalar::FMA_FLOPS_PER_ITER,
};

/// Supported ISAs on this CPU, in increasing order of preference (detected once).
fn detected() -> &'static [Isa] {
    static DETECTED: OnceLock<Vec<Isa>> = OnceLock::new();
    DETECTED.get_or_init(|| {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Scalar];
        #[cfg(target_arch = "x86_64")]
        {
            if x86_64::has_avx2() {
                v.push(Isa::Avx2);
            }
            if x86_64::has_avx512() {
                v.push(Isa::Avx512);
            }
        }
        #[cfg(target_arch = "aarch64")]
        {
            if aarch64::has_neon() {
                v.push(Isa::Neon);
            }
        }
        v
    })
}

fn table(isa: Isa) -> &'static Kernels {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => &x86_64::AVX2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => &x86_64::AVX512,
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => &aarch64::NEON,
        _ => &SCALAR,
    }
}

/// Name of the environment variable that turns the software-prefetching variants of the
/// memory-bound kernels `on` or `off` (default: on for AVX-512 on Intel CPUs, where they scan
/// at the summing pass's bandwidth instead of ~87% of it; off elsewhere, where the hardware
/// prefetchers already keep up — AMD Zen 4 measured 96% without).
pub const PREFETCH_ENV_VAR: &str = "MEMORY_SERVER_PREFETCH";

/// The best kernel table for this CPU (or the one forced by `MEMORY_SERVER_ISA`, if that ISA
/// is available), with software prefetch per [`PREFETCH_ENV_VAR`]. Detected once; subsequent
/// calls are a single atomic load.
pub fn kernels() -> &'static Kernels {
    static BEST: OnceLock<&'static Kernels> = OnceLock::new();
    BEST.get_or_init(|| {
        let forced = std::env::var(ISA_ENV_VAR)
            .ok()
            .and_then(|s| Isa::from_name(&s))
            .and_then(kernels_for);
        let k = forced.unwrap_or_else(|| {
            let best = *detected().last().expect("scalar is always available");
            table(best)
        });
        let prefetch = match std::env::var(PREFETCH_ENV_VAR).ok().as_deref() {
            Some("on") => true,
            Some("off") => false,
            _ => default_prefetch(),
        };
        if prefetch {
            prefetching(k).unwrap_or(k)
        } else {
            k
        }
    })
}

fn default_prefetch() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        x86_64::is_intel()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The software-prefetching variant of a kernel table, where there is one (AVX-512).
pub fn prefetching(k: &'static Kernels) -> Option<&'static Kernels> {
    match k.isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Some(&x86_64::AVX512_PREFETCH),
        _ => None,
    }
}

/// Niceness of the scan threads (see [`init_scan_pool`]).
pub const SCAN_NICE: i32 = 5;

/// Builds rayon's global pool (once) with threads named `memory-scan-<i>` at a lower CPU
/// priority than the rest of the process: multi-core passes then use what the event loop
/// leaves free instead of taking the cores from it. Does nothing if the global pool exists.
pub fn init_scan_pool() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("memory-scan-{i}"))
            .start_handler(|_| {
                #[cfg(target_os = "linux")]
                // SAFETY: plain syscalls on the calling thread.
                unsafe {
                    let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
                    let now = libc::getpriority(libc::PRIO_PROCESS, tid);
                    libc::setpriority(libc::PRIO_PROCESS, tid, (now + SCAN_NICE).min(19));
                }
            })
            .build_global();
    });
}

/// The kernel table for `isa`, or `None` if it is not supported on this CPU / architecture.
pub fn kernels_for(isa: Isa) -> Option<&'static Kernels> {
    detected().contains(&isa).then(|| table(isa))
}

/// ISAs usable on this CPU (always includes [`Isa::Scalar`]), in increasing preference.
pub fn available_isas() -> Vec<Isa> {
    detected().to_vec()
}

/// L2-normalize `v` in place; returns the original norm. A zero vector stays zero (returns
/// 0.0). The norm is accumulated in `f64`, so large-but-finite inputs do not overflow.
/// Non-finite inputs are not meaningful here: validate with [`check_vector`] first.
pub fn normalize(v: &mut [f32]) -> f32 {
    let sq: f64 = v.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    let norm = sq.sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return norm as f32;
    }
    let inv = 1.0 / norm;
    for x in v.iter_mut() {
        *x = (f64::from(*x) * inv) as f32;
    }
    norm as f32
}

/// Validate an embedding: exactly `dims` elements, all finite.
///
/// Errors: `"embedding has 5 dimensions, expected 384"`, `"embedding[3] is NaN"`,
/// `"embedding[3] is +Infinity"` / `"embedding[3] is -Infinity"` (first offending index).
pub fn check_vector(v: &[f32], dims: usize) -> Result<(), String> {
    if v.len() != dims {
        return Err(format!(
            "embedding has {} dimensions, expected {}",
            v.len(),
            dims
        ));
    }
    if let Some((i, &x)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        let what = if x.is_nan() {
            "NaN"
        } else if x > 0.0 {
            "+Infinity"
        } else {
            "-Infinity"
        };
        return Err(format!("embedding[{i}] is {what}"));
    }
    Ok(())
}

// ---- shared precondition checks used by every ISA's safe wrappers ----

#[inline]
#[track_caller]
pub(crate) fn check_dot_args(a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "dot: slices have different lengths");
}

#[inline]
#[track_caller]
pub(crate) fn check_rows_args(query: &[f32], rows: &[f32], dims: usize, out: &[f32]) {
    assert_eq!(query.len(), dims, "dot_rows: query.len() != dims");
    let need = out
        .len()
        .checked_mul(dims)
        .expect("dot_rows: out.len() * dims overflows");
    assert!(rows.len() >= need, "dot_rows: rows.len() < out.len() * dims");
}

#[inline]
#[track_caller]
pub(crate) fn check_block_args(
    queries: &[f32],
    nq: usize,
    rows: &[f32],
    nr: usize,
    dims: usize,
    out: &[f32],
) {
    let qn = nq.checked_mul(dims).expect("dot_block: nq * dims overflows");
    let rn = nr.checked_mul(dims).expect("dot_block: nr * dims overflows");
    let on = nq.checked_mul(nr).expect("dot_block: nq * nr overflows");
    assert!(queries.len() >= qn, "dot_block: queries.len() < nq * dims");
    assert!(rows.len() >= rn, "dot_block: rows.len() < nr * dims");
    assert!(out.len() >= on, "dot_block: out.len() < nq * nr");
}
