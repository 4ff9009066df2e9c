//! NEON kernels (4 x f32 per q register, 32 architectural vector registers).
//!
//! - Tails (`len % 4`) are finished with scalar code, so nothing reads past a slice.
//! - `dot_rows` scans 4 rows at a time sharing each query chunk load.
//! - `dot_block` register-blocks 4 rows x 4 queries = 16 accumulators (+ 4 row + 1 query
//!   registers), each reduced with `vaddvq_f32`.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::aarch64::*;

use super::super::{check_block_args, check_dot_args, check_rows_args};

const W: usize = 4;

/// Queries kept hot in L1 while a 4-row tile is reused across them in `dot_block`.
const QUERY_GROUP: usize = 8;

// ---------------------------------------------------------------- safe wrappers (table entries)

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    check_dot_args(a, b);
    // SAFETY: only reachable through `NEON`, handed out after `neon` was detected; both
    // pointers are valid for `a.len()` reads.
    unsafe { dot_ptr(a.as_ptr(), b.as_ptr(), a.len()) }
}

pub(super) fn dot_rows(query: &[f32], rows: &[f32], dims: usize, out: &mut [f32]) {
    check_rows_args(query, rows, dims, out);
    // SAFETY: `neon` detected (see `dot`); lengths checked above.
    unsafe { dot_rows_ptr(query.as_ptr(), rows.as_ptr(), dims, out) }
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
    // SAFETY: `neon` detected (see `dot`); lengths checked above.
    unsafe { dot_block_ptr(queries.as_ptr(), nq, rows.as_ptr(), nr, dims, out.as_mut_ptr()) }
}

#[cfg(feature = "bench")]
pub(super) fn sum(v: &[f32]) -> f32 {
    // SAFETY: `neon` detected (see `dot`); the pointer is valid for `v.len()` reads.
    unsafe { sum_ptr(v.as_ptr(), v.len()) }
}

#[cfg(feature = "bench")]
/// 16 independent q-register FMA chains per iteration: 16 * 4 lanes * 2 FLOPs.
pub(super) const FMA_FLOPS_PER_ITER: u64 = 16 * 4 * 2;

#[cfg(feature = "bench")]
pub(super) fn fma_peak(iters: u64) -> f32 {
    // SAFETY: `neon` detected (see `dot`); no memory is accessed.
    unsafe { fma_peak_impl(iters) }
}

// ---------------------------------------------------------------- implementations

/// One (query, row) dot in the one order every path uses, that of `tile4x4` and of
/// `dot_rows`' 4-row groups: a single accumulator over 4-lane chunks, `vaddvq_f32`, then the
/// tail in scalar. A pair then scores bit for bit the same in `dot`, `dot_rows` and every part
/// of `dot_block`, so identical rows tie exactly wherever they fall in a scan (the store breaks
/// ties by recency).
///
/// # Safety
/// Requires NEON; `a` and `b` valid for `n` reads.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn dot_ptr(a: *const f32, b: *const f32, n: usize) -> f32 {
    let full = n / W * W;
    let mut acc = vdupq_n_f32(0.0);
    let mut i = 0;
    while i < full {
        // SAFETY: i + 4 <= n.
        acc = unsafe { vfmaq_f32(acc, vld1q_f32(b.add(i)), vld1q_f32(a.add(i))) };
        i += W;
    }
    let mut s = vaddvq_f32(acc);
    for i in full..n {
        // SAFETY: i < n.
        s += unsafe { *a.add(i) * *b.add(i) };
    }
    s
}

/// # Safety
/// Requires NEON; `q` valid for `dims` reads, `rows` for `out.len() * dims` reads.
#[target_feature(enable = "neon")]
unsafe fn dot_rows_ptr(q: *const f32, rows: *const f32, dims: usize, out: &mut [f32]) {
    let n = out.len();
    let full = dims / W * W;
    let mut r = 0;
    while r + 4 <= n {
        // SAFETY: rows r..r+4 are in bounds (r + 4 <= n).
        let p = unsafe {
            let p0 = rows.add(r * dims);
            [p0, p0.add(dims), p0.add(2 * dims), p0.add(3 * dims)]
        };
        let mut acc = [vdupq_n_f32(0.0); 4];
        let mut i = 0;
        while i < full {
            // SAFETY: i + 4 <= dims: all loads in bounds.
            unsafe {
                let qv = vld1q_f32(q.add(i));
                for (acc, pj) in acc.iter_mut().zip(p) {
                    *acc = vfmaq_f32(*acc, vld1q_f32(pj.add(i)), qv);
                }
            }
            i += W;
        }
        for j in 0..4 {
            let mut s = vaddvq_f32(acc[j]);
            for i in full..dims {
                // SAFETY: i < dims: in bounds of the query and of row r + j.
                s += unsafe { *q.add(i) * *p[j].add(i) };
            }
            out[r + j] = s;
        }
        r += 4;
    }
    while r < n {
        // SAFETY: row r < n is in bounds; `q` valid for `dims` reads.
        out[r] = unsafe { dot_ptr(q, rows.add(r * dims), dims) };
        r += 1;
    }
}

/// 4 rows x 4 queries tile; writes `res[4*query + row]`.
///
/// # Safety
/// Requires NEON; `q` valid for `4 * dims` reads, `r` for `4 * dims` reads.
#[inline]
#[target_feature(enable = "neon")]
unsafe fn tile4x4(q: *const f32, r: *const f32, dims: usize, res: &mut [f32; 16]) {
    let mut acc = [vdupq_n_f32(0.0); 16];
    let full = dims / W * W;
    let mut i = 0;
    while i < full {
        // SAFETY: i + 4 <= dims: every load is in bounds.
        unsafe {
            let rv = [
                vld1q_f32(r.add(i)),
                vld1q_f32(r.add(dims + i)),
                vld1q_f32(r.add(2 * dims + i)),
                vld1q_f32(r.add(3 * dims + i)),
            ];
            for qi in 0..4 {
                let qv = vld1q_f32(q.add(qi * dims + i));
                for ri in 0..4 {
                    acc[4 * qi + ri] = vfmaq_f32(acc[4 * qi + ri], rv[ri], qv);
                }
            }
        }
        i += W;
    }
    for qi in 0..4 {
        for ri in 0..4 {
            let mut s = vaddvq_f32(acc[4 * qi + ri]);
            for i in full..dims {
                // SAFETY: i < dims: in bounds of query qi and row ri.
                s += unsafe { *q.add(qi * dims + i) * *r.add(ri * dims + i) };
            }
            res[4 * qi + ri] = s;
        }
    }
}

/// # Safety
/// Requires NEON; `queries` valid for `nq * dims` reads, `rows` for `nr * dims` reads,
/// `out` for `nq * nr` writes (not aliasing the inputs).
#[target_feature(enable = "neon")]
unsafe fn dot_block_ptr(
    queries: *const f32,
    nq: usize,
    rows: *const f32,
    nr: usize,
    dims: usize,
    out: *mut f32,
) {
    let nq4 = nq / 4 * 4;
    let nr4 = nr / 4 * 4;
    let mut res = [0.0f32; 16];
    let mut qg = 0;
    while qg < nq4 {
        let qg_end = (qg + QUERY_GROUP).min(nq4);
        let mut r = 0;
        while r < nr4 {
            let mut q = qg;
            while q < qg_end {
                // SAFETY: q + 4 <= nq and r + 4 <= nr: tile inputs in bounds, and every
                // output index (q+qi)*nr + r + ri below is < nq * nr.
                unsafe {
                    tile4x4(queries.add(q * dims), rows.add(r * dims), dims, &mut res);
                    for qi in 0..4 {
                        let o = out.add((q + qi) * nr + r);
                        for ri in 0..4 {
                            *o.add(ri) = res[4 * qi + ri];
                        }
                    }
                }
                q += 4;
            }
            r += 4;
        }
        qg = qg_end;
    }
    for q in 0..nq4 {
        for r in nr4..nr {
            // SAFETY: q < nq, r < nr: inputs and output index in bounds.
            unsafe {
                *out.add(q * nr + r) = dot_ptr(queries.add(q * dims), rows.add(r * dims), dims);
            }
        }
    }
    for q in nq4..nq {
        // SAFETY: out[q*nr .. (q+1)*nr] is in bounds and does not alias the inputs.
        unsafe {
            let o = core::slice::from_raw_parts_mut(out.add(q * nr), nr);
            dot_rows_ptr(queries.add(q * dims), rows, dims, o);
        }
    }
}

#[cfg(feature = "bench")]
/// # Safety
/// Requires NEON; `v` valid for `n` reads.
#[target_feature(enable = "neon")]
unsafe fn sum_ptr(v: *const f32, n: usize) -> f32 {
    let mut acc = [vdupq_n_f32(0.0); 8];
    let mut i = 0;
    while i + 8 * W <= n {
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 4*j + 4 <= n.
            *acc = vaddq_f32(*acc, unsafe { vld1q_f32(v.add(i + j * W)) });
        }
        i += 8 * W;
    }
    while i + W <= n {
        // SAFETY: i + 4 <= n.
        acc[0] = vaddq_f32(acc[0], unsafe { vld1q_f32(v.add(i)) });
        i += W;
    }
    let a = vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3]));
    let b = vaddq_f32(vaddq_f32(acc[4], acc[5]), vaddq_f32(acc[6], acc[7]));
    let mut s = vaddvq_f32(vaddq_f32(a, b));
    while i < n {
        // SAFETY: i < n.
        s += unsafe { *v.add(i) };
        i += 1;
    }
    s
}

#[cfg(feature = "bench")]
#[target_feature(enable = "neon")]
fn fma_peak_impl(iters: u64) -> f32 {
    let m = vdupq_n_f32(std::hint::black_box(0.999_999f32));
    let c = vdupq_n_f32(std::hint::black_box(1.0e-3f32));
    let mut acc = [vdupq_n_f32(0.0); 16];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = vdupq_n_f32(j as f32 * 0.01);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            // acc = c + acc * m
            *a = vfmaq_f32(c, *a, m);
        }
    }
    let mut s = acc[0];
    for a in &acc[1..] {
        s = vaddq_f32(s, *a);
    }
    vaddvq_f32(s)
}
