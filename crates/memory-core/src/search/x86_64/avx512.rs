//! AVX-512F kernels (16 x f32 per zmm register).
//!
//! - Tails are handled with masked loads (`_mm512_maskz_loadu_ps`), which never touch memory
//!   in masked-off lanes, so no kernel reads past the end of its slices.
//! - `dot_rows` scans one row at a time, so its loads form a single sequential stream for the
//!   hardware prefetchers. Every path sums a (query, row) pair in one order (see `dot_ptr`).
//! - `dot_block` register-blocks 4 rows x 4 queries = 16 zmm accumulators (8 loads per 16
//!   FMAs) and reduces the 16 accumulators of a tile with a 4-level transposing shuffle tree
//!   (45 shuffle/add ops for 16 results instead of 16 separate horizontal sums). The four
//!   128-bit lanes of the result hold 4 consecutive rows of one query each, so a tile is
//!   written with 4 unaligned 128-bit stores.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::*;

use super::super::{check_block_args, check_dot_args, check_rows_args};
use super::PREFETCH_FLOATS;

const W: usize = 16;

/// Prefetch the next row tile into L1 during the last query tile of a group in `dot_block`.
const PREFETCH_TILES: bool = true;

/// Speculatively prefetch the following block of rows into L2 during `dot_block`.
const PREFETCH_NEXT_BLOCK: bool = true;

/// Queries kept hot in L1 while a 4-row tile is reused across them in `dot_block`.
const QUERY_GROUP: usize = 8;

#[inline(always)]
fn tail_mask(rem: usize) -> __mmask16 {
    debug_assert!(rem < W);
    ((1u32 << rem) - 1) as __mmask16
}

// ---------------------------------------------------------------- safe wrappers (table entries)

pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    check_dot_args(a, b);
    // SAFETY: only reachable through `AVX512`, which is handed out after `avx512f` was
    // detected; both pointers are valid for `a.len()` reads (lengths checked above).
    unsafe { dot_ptr(a.as_ptr(), b.as_ptr(), a.len()) }
}

pub(super) fn dot_rows(query: &[f32], rows: &[f32], dims: usize, out: &mut [f32]) {
    check_rows_args(query, rows, dims, out);
    // SAFETY: `avx512f` detected (see `dot`); `query` has `dims` elements and `rows` at least
    // `out.len() * dims` (checked above).
    unsafe { dot_rows_ptr::<false>(query.as_ptr(), rows.as_ptr(), dims, out) }
}

/// [`dot_rows`] with software prefetch of the rows ~1.5 KB ahead (see [`dot_rows_ptr`]).
pub(super) fn dot_rows_prefetch(query: &[f32], rows: &[f32], dims: usize, out: &mut [f32]) {
    check_rows_args(query, rows, dims, out);
    // SAFETY: as in `dot_rows`.
    unsafe { dot_rows_ptr::<true>(query.as_ptr(), rows.as_ptr(), dims, out) }
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
    // SAFETY: `avx512f` detected (see `dot`); `queries` holds `nq * dims`, `rows` `nr * dims`
    // and `out` `nq * nr` elements (checked above).
    unsafe { dot_block_ptr(queries.as_ptr(), nq, rows.as_ptr(), nr, dims, out.as_mut_ptr()) }
}

#[cfg(feature = "bench")]
pub(super) fn sum(v: &[f32]) -> f32 {
    // SAFETY: `avx512f` detected (see `dot`); the pointer is valid for `v.len()` reads.
    unsafe { sum_ptr::<false>(v.as_ptr(), v.len()) }
}

#[cfg(feature = "bench")]
/// [`sum`] with the same software prefetch distance as [`dot_rows_prefetch`].
pub(super) fn sum_prefetch(v: &[f32]) -> f32 {
    // SAFETY: as in `sum`.
    unsafe { sum_ptr::<true>(v.as_ptr(), v.len()) }
}

#[cfg(feature = "bench")]
/// 12 independent zmm FMA chains per iteration: 12 * 16 lanes * 2 FLOPs.
pub(super) const FMA_FLOPS_PER_ITER: u64 = 12 * 16 * 2;

#[cfg(feature = "bench")]
pub(super) fn fma_peak(iters: u64) -> f32 {
    // SAFETY: `avx512f` detected (see `dot`); no memory is accessed.
    unsafe { fma_peak_impl(iters) }
}

// ---------------------------------------------------------------- implementations

/// One (query, row) dot in the one order every path uses: a single accumulator over 16-lane
/// chunks (the tail masked), reduced like `reduce16` reduces each tile accumulator. A pair
/// then scores bit for bit the same in `dot`, `dot_rows` and every part of `dot_block`, so
/// identical rows tie exactly wherever they fall in a scan (the store breaks ties by recency).
/// One dependency chain per row costs nothing measurable: the scan is memory-bound and rows
/// overlap in the out-of-order window.
///
/// # Safety
/// Requires AVX-512F; `a` and `b` must be valid for `n` reads.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn dot_ptr(a: *const f32, b: *const f32, n: usize) -> f32 {
    let mut acc = _mm512_setzero_ps();
    let full = n / W * W;
    let mut i = 0;
    while i < full {
        // SAFETY: i + 16 <= n, so both loads are in bounds.
        let (x, y) = unsafe { (_mm512_loadu_ps(a.add(i)), _mm512_loadu_ps(b.add(i))) };
        acc = _mm512_fmadd_ps(x, y, acc);
        i += W;
    }
    if i < n {
        let m = tail_mask(n - i);
        // SAFETY: masked loads only access the first n - i (< 16) elements, all in bounds.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_ps(m, a.add(i)),
                _mm512_maskz_loadu_ps(m, b.add(i)),
            )
        };
        acc = _mm512_fmadd_ps(x, y, acc);
    }
    reduce1(acc)
}

/// The horizontal sum of `v` in `reduce16`'s order for each of its accumulators: with the
/// 128-bit quarters Q0..Q3, z = (Q0 + Q2) + (Q1 + Q3) lane-wise, then (z0 + z2) + (z1 + z3).
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce1(v: __m512) -> f32 {
    let q0 = _mm512_castps512_ps128(v);
    let q1 = _mm512_extractf32x4_ps::<1>(v);
    let q2 = _mm512_extractf32x4_ps::<2>(v);
    let q3 = _mm512_extractf32x4_ps::<3>(v);
    let z = _mm_add_ps(_mm_add_ps(q0, q2), _mm_add_ps(q1, q3));
    let w = _mm_add_ps(z, _mm_movehl_ps(z, z));
    _mm_cvtss_f32(_mm_add_ss(w, _mm_shuffle_ps::<0x55>(w, w)))
}

/// # Safety
/// Requires AVX-512F; `q` valid for `dims` reads, `rows` for `out.len() * dims` reads.
#[target_feature(enable = "avx512f")]
unsafe fn dot_rows_ptr<const PF: bool>(q: *const f32, rows: *const f32, dims: usize, out: &mut [f32]) {
    // One row at a time, front to back: the loads then form a single sequential stream, which
    // the hardware prefetchers follow at full bandwidth on AMD Zen 4. Interleaving several rows
    // (4 streams `dims` apart, with or without software prefetch) measured 40-50% slower there
    // (`examples/kernel_bench`), and the FMA chains of one row are short enough not to matter.
    // With PF, each row's cache lines are also prefetched whole rows ahead (at least
    // PREFETCH_FLOATS): Intel's prefetchers alone left the scan at ~87% of a summing pass.
    let ahead = PREFETCH_FLOATS.div_ceil(dims.max(1)) * dims;
    for (r, o) in out.iter_mut().enumerate() {
        let row = rows.wrapping_add(r * dims);
        if PF {
            let pf = row.wrapping_add(ahead);
            let mut i = 0;
            while i < dims {
                // A prefetch never faults, past the end of `rows` included.
                _mm_prefetch::<_MM_HINT_T0>(pf.wrapping_add(i).cast::<i8>());
                i += W;
            }
        }
        // SAFETY: row r < out.len() is in bounds of `rows`; `q` is valid for `dims` reads.
        *o = unsafe { dot_ptr(q, row, dims) };
    }
}

/// Reduces 16 accumulators to one vector: lane `4*k + m` = horizontal sum of `v[4*m + k]`.
///
/// With accumulator index `4*row + query` this puts the 4 rows of query `k` in 128-bit lane
/// `k` (in row order).
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(v: &[__m512; 16]) -> __m512 {
    // Level 1: pair (a, b) -> [a.q0+a.q2, a.q1+a.q3, b.q0+b.q2, b.q1+b.q3] (128-bit quarters).
    let mut s = [_mm512_setzero_ps(); 8];
    for (i, s) in s.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        *s = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x44>(a, b),
            _mm512_shuffle_f32x4::<0xEE>(a, b),
        );
    }
    // Level 2: quarter j of t[i] holds a 4-lane partial of v[4*i + j].
    let mut t = [_mm512_setzero_ps(); 4];
    for (i, t) in t.iter_mut().enumerate() {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        *t = _mm512_add_ps(
            _mm512_shuffle_f32x4::<0x88>(a, b),
            _mm512_shuffle_f32x4::<0xDD>(a, b),
        );
    }
    // Level 3 (within 128-bit lanes): quarter k of u0 = [v[k] x2, v[4+k] x2] partials,
    // u1 = [v[8+k] x2, v[12+k] x2].
    let u0 = _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(t[0], t[1]),
        _mm512_shuffle_ps::<0xEE>(t[0], t[1]),
    );
    let u1 = _mm512_add_ps(
        _mm512_shuffle_ps::<0x44>(t[2], t[3]),
        _mm512_shuffle_ps::<0xEE>(t[2], t[3]),
    );
    // Level 4: quarter k = [v[k], v[4+k], v[8+k], v[12+k]] full sums.
    _mm512_add_ps(
        _mm512_shuffle_ps::<0x88>(u0, u1),
        _mm512_shuffle_ps::<0xDD>(u0, u1),
    )
}

/// 4 rows x 4 queries tile. Returns `reduce16` of accumulators indexed `4*row + query`:
/// 128-bit lane `k` = dots of query `k` with rows 0..4.
///
/// # Safety
/// Requires AVX-512F; `q` valid for `3 * qstride + dims` reads, `r` for `4 * dims` reads
/// (rows are `dims` apart).
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile4x4(
    q: *const f32,
    qstride: usize,
    r: *const f32,
    dims: usize,
    prefetch: bool,
) -> __m512 {
    let mut acc = [_mm512_setzero_ps(); 16];
    let full = dims / W * W;
    let mut i = 0;
    while i < full {
        if prefetch {
            // Pull the next 4-row tile (the 4 rows following this one) from L2 into L1 while
            // this tile computes. Prefetches never fault; `wrapping_add` keeps the address
            // computation free of out-of-allocation pointer arithmetic.
            for j in 4..8 {
                _mm_prefetch::<_MM_HINT_T0>(r.wrapping_add(j * dims + i) as *const i8);
            }
        }
        // SAFETY: i + 16 <= dims: every load reads 16 in-bounds elements of a row / query.
        unsafe {
            let rv = [
                _mm512_loadu_ps(r.add(i)),
                _mm512_loadu_ps(r.add(dims + i)),
                _mm512_loadu_ps(r.add(2 * dims + i)),
                _mm512_loadu_ps(r.add(3 * dims + i)),
            ];
            for qi in 0..4 {
                let qv = _mm512_loadu_ps(q.add(qi * qstride + i));
                for ri in 0..4 {
                    acc[4 * ri + qi] = _mm512_fmadd_ps(rv[ri], qv, acc[4 * ri + qi]);
                }
            }
        }
        i += W;
    }
    if full < dims {
        let m = tail_mask(dims - full);
        // SAFETY: masked loads access only the last dims - full (< 16) elements of each
        // row / query, all in bounds.
        unsafe {
            let rv = [
                _mm512_maskz_loadu_ps(m, r.add(full)),
                _mm512_maskz_loadu_ps(m, r.add(dims + full)),
                _mm512_maskz_loadu_ps(m, r.add(2 * dims + full)),
                _mm512_maskz_loadu_ps(m, r.add(3 * dims + full)),
            ];
            for qi in 0..4 {
                let qv = _mm512_maskz_loadu_ps(m, q.add(qi * qstride + full));
                for ri in 0..4 {
                    acc[4 * ri + qi] = _mm512_fmadd_ps(rv[ri], qv, acc[4 * ri + qi]);
                }
            }
        }
    }
    reduce16(&acc)
}

/// # Safety
/// Requires AVX-512F; `queries` valid for `nq * dims` reads, `rows` for `nr * dims` reads,
/// `out` for `nq * nr` writes (and not aliasing the inputs).
#[target_feature(enable = "avx512f")]
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
    // Speculative L2 prefetch of the *next* block of rows (`rows[nr*dims .. 2*nr*dims]`),
    // spread over the query groups after the first: callers scan contiguous rows block by
    // block, and the first query group over a block is otherwise DRAM-bound. Prefetches never
    // fault, so running past the end of the caller's data is harmless.
    let groups = nq4.div_ceil(QUERY_GROUP);
    let block_lines = (nr * dims * 4).div_ceil(64);
    let pf_steps = (groups.saturating_sub(1) * (nr4 / 4)).max(1);
    let pf_per_step = if PREFETCH_NEXT_BLOCK && groups > 1 {
        block_lines.div_ceil(pf_steps)
    } else {
        0
    };
    let mut pf_line = 0usize;
    let next_block = rows.wrapping_add(nr * dims) as *const i8;
    let mut qg = 0;
    while qg < nq4 {
        let qg_end = (qg + QUERY_GROUP).min(nq4);
        let mut r = 0;
        while r < nr4 {
            if qg > 0 {
                let end = (pf_line + pf_per_step).min(block_lines);
                while pf_line < end {
                    _mm_prefetch::<_MM_HINT_T1>(next_block.wrapping_add(pf_line * 64));
                    pf_line += 1;
                }
            }
            let mut q = qg;
            while q < qg_end {
                // SAFETY: q + 4 <= nq and r + 4 <= nr, so the tile's inputs are in bounds and
                // the four 4-element stores at out[(q+k)*nr + r ..][..4] are too.
                unsafe {
                    let res = tile4x4(
                        queries.add(q * dims),
                        dims,
                        rows.add(r * dims),
                        dims,
                        PREFETCH_TILES && q + 4 == qg_end && r + 4 < nr4,
                    );
                    let o = out.add(q * nr + r);
                    _mm_storeu_ps(o, _mm512_extractf32x4_ps::<0>(res));
                    _mm_storeu_ps(o.add(nr), _mm512_extractf32x4_ps::<1>(res));
                    _mm_storeu_ps(o.add(2 * nr), _mm512_extractf32x4_ps::<2>(res));
                    _mm_storeu_ps(o.add(3 * nr), _mm512_extractf32x4_ps::<3>(res));
                }
                q += 4;
            }
            r += 4;
        }
        qg = qg_end;
    }
    // Leftover rows (nr % 4) for the blocked queries.
    for q in 0..nq4 {
        for r in nr4..nr {
            // SAFETY: q < nq, r < nr: inputs and output index in bounds.
            unsafe {
                *out.add(q * nr + r) = dot_ptr(queries.add(q * dims), rows.add(r * dims), dims);
            }
        }
    }
    // Leftover queries (nq % 4) against all rows: the single-query row scan.
    for q in nq4..nq {
        // SAFETY: out[q*nr .. (q+1)*nr] is in bounds and does not alias the inputs; the query
        // has `dims` elements and `rows` holds `nr * dims`.
        unsafe {
            let o = core::slice::from_raw_parts_mut(out.add(q * nr), nr);
            dot_rows_ptr::<false>(queries.add(q * dims), rows, dims, o);
        }
    }
}

#[cfg(feature = "bench")]
/// # Safety
/// Requires AVX-512F; `v` valid for `n` reads.
#[target_feature(enable = "avx512f")]
unsafe fn sum_ptr<const PF: bool>(v: *const f32, n: usize) -> f32 {
    let mut acc = [_mm512_setzero_ps(); 8];
    let mut i = 0;
    while i + 8 * W <= n {
        if PF {
            for j in 0..8 {
                // A prefetch never faults, past the end of `v` included.
                _mm_prefetch::<_MM_HINT_T0>(v.wrapping_add(i + PREFETCH_FLOATS + j * W).cast::<i8>());
            }
        }
        for (j, acc) in acc.iter_mut().enumerate() {
            // SAFETY: i + 16*j + 16 <= n.
            *acc = _mm512_add_ps(*acc, unsafe { _mm512_loadu_ps(v.add(i + j * W)) });
        }
        i += 8 * W;
    }
    while i + W <= n {
        // SAFETY: i + 16 <= n.
        acc[0] = _mm512_add_ps(acc[0], unsafe { _mm512_loadu_ps(v.add(i)) });
        i += W;
    }
    if i < n {
        // SAFETY: the masked load reads only the last n - i (< 16) in-bounds elements.
        acc[1] = _mm512_add_ps(acc[1], unsafe {
            _mm512_maskz_loadu_ps(tail_mask(n - i), v.add(i))
        });
    }
    let a = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
    let b = _mm512_add_ps(_mm512_add_ps(acc[4], acc[5]), _mm512_add_ps(acc[6], acc[7]));
    _mm512_reduce_add_ps(_mm512_add_ps(a, b))
}

#[cfg(feature = "bench")]
#[target_feature(enable = "avx512f")]
fn fma_peak_impl(iters: u64) -> f32 {
    let m = _mm512_set1_ps(std::hint::black_box(0.999_999f32));
    let c = _mm512_set1_ps(std::hint::black_box(1.0e-3f32));
    let mut acc = [_mm512_setzero_ps(); 12];
    for (j, a) in acc.iter_mut().enumerate() {
        *a = _mm512_set1_ps(j as f32 * 0.01);
    }
    for _ in 0..iters {
        for a in acc.iter_mut() {
            *a = _mm512_fmadd_ps(*a, m, c);
        }
    }
    let mut s = acc[0];
    for a in &acc[1..] {
        s = _mm512_add_ps(s, *a);
    }
    _mm512_reduce_add_ps(s)
}
