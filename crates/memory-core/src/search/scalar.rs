//! Portable scalar kernels: the reference ("oracle") implementation and the fallback for CPUs
//! without a supported SIMD extension.
//!
//! `dot` and `sum` keep 8 independent partial sums (plain loops over fixed-size chunks, which
//! the compiler may auto-vectorize with baseline SSE2/NEON because the lanes are independent);
//! everything else is the obvious loop over `dot`.

use super::{check_block_args, check_dot_args, check_rows_args};

const LANES: usize = 8;

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    check_dot_args(a, b);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..LANES {
            acc[i] += x[i] * y[i];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ta.iter().zip(tb) {
        tail += x * y;
    }
    hsum(&acc) + tail
}

#[inline]
fn hsum(acc: &[f32; LANES]) -> f32 {
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]))
}

pub(super) fn dot_rows(query: &[f32], rows: &[f32], dims: usize, out: &mut [f32]) {
    check_rows_args(query, rows, dims, out);
    for (r, o) in out.iter_mut().enumerate() {
        *o = dot(query, &rows[r * dims..(r + 1) * dims]);
    }
}

pub(super) fn dot_block(
    queries: &[f32],
    nq: usize,
    rows: &[f32],
    nr: usize,
    dims: usize,
    out: &mut [f32],
) {
    check_block_args(queries, nq, rows, nr, dims, out);
    for q in 0..nq {
        let qv = &queries[q * dims..(q + 1) * dims];
        for r in 0..nr {
            out[q * nr + r] = dot(qv, &rows[r * dims..(r + 1) * dims]);
        }
    }
}

#[cfg(feature = "bench")]
pub(super) fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let c = v.chunks_exact(LANES);
    let t = c.remainder();
    for x in c {
        for i in 0..LANES {
            acc[i] += x[i];
        }
    }
    hsum(&acc) + t.iter().sum::<f32>()
}

#[cfg(feature = "bench")]
/// 8 independent multiply-add chains (`acc = acc * m + c`, 2 FLOPs each) per iteration.
pub(super) const FMA_FLOPS_PER_ITER: u64 = (LANES as u64) * 2;

#[cfg(feature = "bench")]
pub(super) fn fma_peak(iters: u64) -> f32 {
    let m = std::hint::black_box(0.999_999f32);
    let c = std::hint::black_box(1.0e-3f32);
    let mut acc = [0.0f32, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7];
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = *a * m + c;
        }
    }
    hsum(&acc)
}
