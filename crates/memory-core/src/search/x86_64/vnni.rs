//! AVX-512 VNNI kernels for the exact int8 pre-pass of [`super::super::q8`]: queries × row
//! panels with `vpdpbusd` (64 u8×i8 products into 16 i32 lanes per instruction), and the
//! per-block bounds.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::*;

use super::super::q8::{Q8Cols, QBound, PAD, PANEL};

/// `QN` queries × `PN` panels (16 rows each) register tile: `QN·PN` accumulators of 16 row
/// dots each. Per group of 4 dims: `PN` panel loads, `QN` query broadcasts, `QN·PN`
/// `vpdpbusd`. No horizontal sums: each accumulator is 16 finished dots.
///
/// # Safety
/// Requires AVX-512F + VNNI; `q` valid for `QN` queries of `dpad` bytes (stride `dpad`), `p`
/// for `PN` panels (stride `16·dpad`), `out` for `QN` rows of `PN·16` i32 (stride `ostride`).
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile<const QN: usize, const PN: usize>(q: *const u8, dpad: usize, p: *const i8, out: *mut i32, ostride: usize) {
    let pstride = PANEL * dpad;
    let mut acc = [[_mm512_setzero_si512(); PN]; QN];
    let mut g = 0;
    while g < dpad / 4 {
        // SAFETY: g < dpad/4: panel loads read bytes [64g, 64g+64) of a 16·dpad-byte panel;
        // query reads are bytes [4g, 4g+4) of a dpad-byte query.
        unsafe {
            let mut pv = [_mm512_setzero_si512(); PN];
            for (pi, v) in pv.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(p.add(pi * pstride + g * 4 * PANEL).cast());
            }
            for (qi, a) in acc.iter_mut().enumerate() {
                let qb = _mm512_set1_epi32(q.add(qi * dpad + 4 * g).cast::<i32>().read_unaligned());
                for (pi, a) in a.iter_mut().enumerate() {
                    *a = _mm512_dpbusd_epi32(*a, qb, pv[pi]);
                }
            }
        }
        g += 1;
    }
    for (qi, a) in acc.iter().enumerate() {
        for (pi, a) in a.iter().enumerate() {
            // SAFETY: within the caller's `out` (see above).
            unsafe { _mm512_storeu_si512(out.add(qi * ostride + pi * PANEL).cast(), *a) };
        }
    }
}

/// # Safety
/// Requires AVX-512F + VNNI; slice lengths checked by the caller.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn panels(q: *const u8, nq: usize, p: *const i8, np: usize, dpad: usize, out: *mut i32) {
    let ostride = np * PANEL;
    let mut pi = 0;
    while pi < np {
        let pn = if np - pi >= 2 { 2 } else { 1 };
        let mut qi = 0;
        while qi < nq {
            let qn = (nq - qi).min(8);
            // SAFETY: qi + qn <= nq and pi + pn <= np: the tile stays inside the checked slices.
            unsafe {
                let (qp, pp, op) = (q.add(qi * dpad), p.add(pi * PANEL * dpad), out.add(qi * ostride + pi * PANEL));
                macro_rules! go {
                    ($($n:literal)*) => {
                        match (qn, pn) {
                            $(($n, 2) => tile::<$n, 2>(qp, dpad, pp, op, ostride),
                              ($n, _) => tile::<$n, 1>(qp, dpad, pp, op, ostride),)*
                            _ => unreachable!(),
                        }
                    };
                }
                go!(1 2 3 4 5 6 7 8);
            }
            qi += qn;
        }
        pi += pn;
    }
}

/// Safe entry point: handed out only after `has_avx512_vnni()` (see `q8::kernel`).
pub(in super::super) fn dot_panels_vnni(queries: &[u8], nq: usize, panels_: &[i8], np: usize, dpad: usize, out: &mut [i32]) {
    assert!(dpad.is_multiple_of(PAD), "dpad must be a multiple of {PAD}");
    assert!(queries.len() >= nq * dpad && panels_.len() >= np * PANEL * dpad && out.len() >= nq * np * PANEL, "q8 panels: slices too short");
    assert!(super::has_avx512_vnni(), "AVX-512 VNNI not available");
    // SAFETY: features detected above; lengths checked above.
    unsafe { panels(queries.as_ptr(), nq, panels_.as_ptr(), np, dpad, out.as_mut_ptr()) }
}

/// # Safety
/// Requires AVX-512F; all slices hold at least `raw.len()` (≤ 64) elements.
#[target_feature(enable = "avx512f")]
unsafe fn bounds_impl(raw: &[i32], cols: Q8Cols, q: QBound, thr: f32, ub: &mut [f32], lo: &mut [f32]) -> u64 {
    let m = raw.len();
    let (qs, qe, qh, sl, t) = (_mm512_set1_ps(q.scale), _mm512_set1_ps(q.err), _mm512_set1_ps(q.hat), _mm512_set1_ps(q.slack), _mm512_set1_ps(thr));
    let mut mask = 0u64;
    let mut j = 0;
    while j < m {
        let k: __mmask16 = if m - j >= 16 { 0xFFFF } else { (1u16 << (m - j)) - 1 };
        // SAFETY: masked loads/stores touch only lanes j..min(j+16, m), all in bounds.
        unsafe {
            let d = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, raw.as_ptr().add(j)), _mm512_maskz_loadu_epi32(k, cols.corr.as_ptr().add(j)));
            let a = _mm512_mul_ps(_mm512_mul_ps(qs, _mm512_maskz_loadu_ps(k, cols.scale.as_ptr().add(j))), _mm512_cvtepi32_ps(d));
            let b = _mm512_fmadd_ps(qe, _mm512_maskz_loadu_ps(k, cols.norm.as_ptr().add(j)), _mm512_fmadd_ps(qh, _mm512_maskz_loadu_ps(k, cols.err.as_ptr().add(j)), sl));
            let u = _mm512_add_ps(a, b);
            _mm512_mask_storeu_ps(ub.as_mut_ptr().add(j), k, u);
            _mm512_mask_storeu_ps(lo.as_mut_ptr().add(j), k, _mm512_sub_ps(a, b));
            mask |= (_mm512_mask_cmp_ps_mask::<_CMP_GE_OQ>(k, u, t) as u64) << j;
        }
        j += 16;
    }
    mask
}

/// Safe entry point of the AVX-512 bounds (see `q8::BoundsFn`).
pub(in super::super) fn bounds_avx512(raw: &[i32], cols: Q8Cols, q: QBound, thr: f32, ub: &mut [f32], lo: &mut [f32]) -> u64 {
    let m = raw.len();
    assert!(m <= 64 && cols.scale.len() >= m && cols.corr.len() >= m && cols.norm.len() >= m && cols.err.len() >= m && ub.len() >= m && lo.len() >= m);
    assert!(super::has_avx512(), "AVX-512F not available");
    // SAFETY: feature checked; lengths checked.
    unsafe { bounds_impl(raw, cols, q, thr, ub, lo) }
}

/// # Safety
/// Requires AVX-512F + VNNI; `q` and `r` valid for `dpad` bytes, `dpad` a multiple of 64.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot_pair_impl(q: *const u8, r: *const i8, dpad: usize) -> i32 {
    // Two accumulators: consecutive `vpdpbusd` into one register wait on each other.
    let (mut a0, mut a1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut i = 0;
    while i + 128 <= dpad {
        // SAFETY: i + 128 <= dpad: both loads of each vector stay inside its `dpad` bytes.
        unsafe {
            a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(q.add(i).cast()), _mm512_loadu_si512(r.add(i).cast()));
            a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(q.add(i + 64).cast()), _mm512_loadu_si512(r.add(i + 64).cast()));
        }
        i += 128;
    }
    if i < dpad {
        // SAFETY: dpad is a multiple of 64 and i < dpad, so i + 64 <= dpad.
        unsafe { a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(q.add(i).cast()), _mm512_loadu_si512(r.add(i).cast())) };
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(a0, a1))
}

/// Safe entry point of the one-pair dot (see `q8::DotPairQ8`); handed out only after
/// `has_avx512_vnni()`.
pub(in super::super) fn dot_pair_vnni(q: &[u8], r: &[i8]) -> i32 {
    assert!(q.len() == r.len() && q.len().is_multiple_of(PAD), "q8 pair: lengths");
    assert!(super::has_avx512_vnni(), "AVX-512 VNNI not available");
    // SAFETY: features detected above; lengths checked above.
    unsafe { dot_pair_impl(q.as_ptr(), r.as_ptr(), q.len()) }
}
