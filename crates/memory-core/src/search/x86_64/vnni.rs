//! AVX-512 VNNI int8 block kernel for the exact pre-pass of [`super::super::q8`]:
//! 4 rows × 4 queries register tile, `vpdpbusd` (64 u8×i8 products into 16 i32 lanes per
//! instruction), and the same 4-level transposing reduction as the f32 `dot_block`.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::*;

use super::super::q8::{Q8Cols, QBound, PAD};

/// Queries kept hot in L1 while a 4-row tile is reused across them.
const QUERY_GROUP: usize = 16;

#[inline]
#[target_feature(enable = "avx512f")]
fn shuf_ps<const IMM: i32>(a: __m512i, b: __m512i) -> __m512i {
    _mm512_castps_si512(_mm512_shuffle_ps::<IMM>(_mm512_castsi512_ps(a), _mm512_castsi512_ps(b)))
}

/// 16 accumulators (index `4*row + query`) → one register whose 128-bit lane `k` holds the
/// sums of query `k` with rows 0..4.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce16(v: &[__m512i; 16]) -> __m512i {
    let mut s = [_mm512_setzero_si512(); 8];
    for (i, s) in s.iter_mut().enumerate() {
        let (a, b) = (v[2 * i], v[2 * i + 1]);
        *s = _mm512_add_epi32(_mm512_shuffle_i32x4::<0x44>(a, b), _mm512_shuffle_i32x4::<0xEE>(a, b));
    }
    let mut t = [_mm512_setzero_si512(); 4];
    for (i, t) in t.iter_mut().enumerate() {
        let (a, b) = (s[2 * i], s[2 * i + 1]);
        *t = _mm512_add_epi32(_mm512_shuffle_i32x4::<0x88>(a, b), _mm512_shuffle_i32x4::<0xDD>(a, b));
    }
    let u0 = _mm512_add_epi32(shuf_ps::<0x44>(t[0], t[1]), shuf_ps::<0xEE>(t[0], t[1]));
    let u1 = _mm512_add_epi32(shuf_ps::<0x44>(t[2], t[3]), shuf_ps::<0xEE>(t[2], t[3]));
    _mm512_add_epi32(shuf_ps::<0x88>(u0, u1), shuf_ps::<0xDD>(u0, u1))
}

/// # Safety
/// Requires AVX-512F + VNNI; `q` valid for `3 * dpad + dpad` reads, `r` for `4 * dpad`.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn tile4x4(q: *const u8, r: *const i8, dpad: usize) -> __m512i {
    let mut acc = [_mm512_setzero_si512(); 16];
    let mut i = 0;
    while i < dpad {
        // SAFETY: i + 64 <= dpad, so every load reads 64 in-bounds bytes of a row / query.
        unsafe {
            let rv = [
                _mm512_loadu_si512(r.add(i).cast()),
                _mm512_loadu_si512(r.add(dpad + i).cast()),
                _mm512_loadu_si512(r.add(2 * dpad + i).cast()),
                _mm512_loadu_si512(r.add(3 * dpad + i).cast()),
            ];
            for qi in 0..4 {
                let qv = _mm512_loadu_si512(q.add(qi * dpad + i).cast());
                for ri in 0..4 {
                    acc[4 * ri + qi] = _mm512_dpbusd_epi32(acc[4 * ri + qi], qv, rv[ri]);
                }
            }
        }
        i += PAD;
    }
    reduce16(&acc)
}

/// # Safety
/// Requires AVX-512F + VNNI; `q` and `r` valid for `dpad` reads.
#[inline]
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn dot1(q: *const u8, r: *const i8, dpad: usize) -> i32 {
    let mut acc = _mm512_setzero_si512();
    let mut i = 0;
    while i < dpad {
        // SAFETY: i + 64 <= dpad.
        unsafe {
            acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(q.add(i).cast()), _mm512_loadu_si512(r.add(i).cast()));
        }
        i += PAD;
    }
    _mm512_reduce_add_epi32(acc)
}

/// # Safety
/// Requires AVX-512F + VNNI; slice lengths checked by the caller.
#[target_feature(enable = "avx512f,avx512vnni")]
unsafe fn block(q: *const u8, nq: usize, r: *const i8, nr: usize, dpad: usize, out: *mut i32) {
    let nq4 = nq / 4 * 4;
    let nr4 = nr / 4 * 4;
    let mut qg = 0;
    while qg < nq4 {
        let qg_end = (qg + QUERY_GROUP).min(nq4);
        let mut ri = 0;
        while ri < nr4 {
            let mut qi = qg;
            while qi < qg_end {
                // SAFETY: qi + 4 <= nq and ri + 4 <= nr: the tile's inputs and the four
                // 4-lane stores at out[(qi+k)*nr + ri ..][..4] are in bounds.
                unsafe {
                    let res = tile4x4(q.add(qi * dpad), r.add(ri * dpad), dpad);
                    let o = out.add(qi * nr + ri);
                    _mm_storeu_si128(o.cast(), _mm512_extracti32x4_epi32::<0>(res));
                    _mm_storeu_si128(o.add(nr).cast(), _mm512_extracti32x4_epi32::<1>(res));
                    _mm_storeu_si128(o.add(2 * nr).cast(), _mm512_extracti32x4_epi32::<2>(res));
                    _mm_storeu_si128(o.add(3 * nr).cast(), _mm512_extracti32x4_epi32::<3>(res));
                }
                qi += 4;
            }
            ri += 4;
        }
        qg = qg_end;
    }
    // Leftover rows (for the tiled queries) and leftover queries (for all rows).
    for qi in 0..nq {
        let from = if qi < nq4 { nr4 } else { 0 };
        for ri in from..nr {
            // SAFETY: qi < nq, ri < nr.
            unsafe { *out.add(qi * nr + ri) = dot1(q.add(qi * dpad), r.add(ri * dpad), dpad) };
        }
    }
}

/// Safe entry point: handed out only after `has_avx512_vnni()` (see `q8::kernel`).
pub(in super::super) fn dot_block_q8_vnni(queries: &[u8], nq: usize, rows: &[i8], nr: usize, dpad: usize, out: &mut [i32]) {
    assert!(dpad % PAD == 0, "dpad must be a multiple of {PAD}");
    assert!(queries.len() >= nq * dpad && rows.len() >= nr * dpad && out.len() >= nq * nr, "q8 block: slices too short");
    assert!(super::has_avx512_vnni(), "AVX-512 VNNI not available");
    // SAFETY: features detected above; lengths checked above.
    unsafe { block(queries.as_ptr(), nq, rows.as_ptr(), nr, dpad, out.as_mut_ptr()) }
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
