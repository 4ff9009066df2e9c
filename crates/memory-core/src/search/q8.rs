//! Int8 codes for an exact nearest-neighbour pre-pass.
//!
//! Every vector `v` is stored a second time as `scale · v̂` with `v̂ ∈ [-127, 127]^dims`
//! (`scale = max|v_i| / 127`, round to nearest), padded with zeros to a multiple of 64.
//! Alongside the codes we keep, per vector, `norm = ‖v‖`, `err = ‖v − scale·v̂‖` (computed in
//! f64 and rounded up) and `hat = ‖scale·v̂‖`. For a query `q` and a row `r`:
//!
//! ```text
//! q·r − (s_q q̂)·(s_r r̂) = (q − s_q q̂)·r + (s_q q̂)·(r − s_r r̂)
//! |q·r − s_q s_r (q̂·r̂)| ≤ err_q · norm_r + hat_q · err_r        (Cauchy–Schwarz)
//! ```
//!
//! so the int8 score gives a guaranteed interval around the exact cosine. A pass keeps, per
//! query, the k-th best *lower* bound as a threshold and every row whose *upper* bound
//! reaches it; those few candidates are then scored exactly in f32. The result is the exact
//! top-k, not an approximation — the int8 pass only decides which rows are worth an exact dot.
//!
//! Row codes are kept in *panels* of 16 rows: for each group of 4 dimensions, the 4 bytes of
//! each of the 16 rows side by side (64 bytes, one zmm register). One `vpdpbusd` of a
//! broadcast query group with a panel register then advances 16 row dots at once, so a block
//! of rows needs no horizontal sums at all (the int8 GEMM layout).
//!
//! The kernel multiplies unsigned by signed bytes (`vpdpbusd`), so query codes are stored as
//! `q̂ + 128` and the raw sum is corrected by `128 · Σ r̂` (kept per row as `sum`).
//! Integer sums are exact: |Σ| ≤ dims · 255 · 127 fits an i32 for any dims below 66,000.

/// Codes are padded to a multiple of this many bytes (one zmm register).
pub const PAD: usize = 64;

/// Per-vector quantization data (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Q8Meta {
    pub scale: f32,
    /// Σ of the signed codes (for the unsigned-query correction).
    pub sum: i32,
    /// ‖v‖.
    pub norm: f32,
    /// ‖v − scale·v̂‖, rounded up.
    pub err: f32,
    /// ‖scale·v̂‖, rounded up.
    pub hat: f32,
}

/// Padded code length for `dims`.
pub fn padded(dims: usize) -> usize {
    dims.div_ceil(PAD).max(1) * PAD
}

/// Round a non-negative f64 bound up to an f32 that is certainly not below it.
fn up(x: f64) -> f32 {
    let f = x as f32;
    if (f as f64) < x {
        f32::from_bits(f.to_bits() + 1)
    } else {
        f
    }
}

/// Round to nearest (ties to even) without a libm call; exact for |x| < 2^22.
#[inline(always)]
fn round(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23
    (x + MAGIC) - MAGIC
}

/// Sums of squares in f32 over 16 independent lanes (vectorizes); callers inflate the
/// result to cover its rounding (relative error below n · 2^-24 ≤ 1e-4 for n ≤ 1,600 per
/// lane).
#[inline(always)]
fn lanes_sum(acc: &[f32; 16]) -> f64 {
    acc.iter().map(|&x| x as f64).sum()
}

/// Quantize `v` into `out` (len ≥ v.len(); the rest is zeroed) as signed codes.
pub fn quantize(v: &[f32], out: &mut [i8]) -> Q8Meta {
    #[cfg(target_arch = "x86_64")]
    {
        if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
            // SAFETY: the features were just detected.
            return unsafe { quantize_avx512(v, out) };
        }
    }
    quantize_lanes(v, out)
}

/// [`quantize_lanes`] in AVX-512 intrinsics: the same operations in the same order, lane for
/// lane (so the same codes and bounds, bit for bit; a test checks it). The compiler leaves the
/// portable loop scalar (its saturating float-to-int casts), which made quantizing the
/// largest cost of the significance pass after the kernel itself.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quantize_avx512(v: &[f32], out: &mut [i8]) -> Q8Meta {
    use std::arch::x86_64::*;
    let n = v.len();
    assert!(out.len() >= n);
    let tail = |i: usize| -> __mmask16 { if n - i >= 16 { 0xffff } else { ((1u32 << (n - i)) - 1) as __mmask16 } };
    let mut mx = _mm512_setzero_ps();
    let mut i = 0;
    while i < n {
        let x = _mm512_maskz_loadu_ps(tail(i), v.as_ptr().add(i));
        // max(x, acc) keeps acc when x is NaN, like f32::max.
        mx = _mm512_max_ps(_mm512_abs_ps(x), mx);
        i += 16;
    }
    let max = _mm512_reduce_max_ps(mx);
    out.fill(0);
    if max == 0.0 || !max.is_finite() {
        return Q8Meta::default();
    }
    let scale = max / 127.0;
    let inv = 127.0 / max;
    let (vscale, vinv) = (_mm512_set1_ps(scale), _mm512_set1_ps(inv));
    let magic = _mm512_set1_ps(12_582_912.0);
    let (lo, hi) = (_mm512_set1_ps(-127.0), _mm512_set1_ps(127.0));
    let (mut n2, mut e2, mut h2) = (_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps());
    let mut sum = _mm512_setzero_si512();
    let mut i = 0;
    while i < n {
        let m = tail(i);
        let x = _mm512_maskz_loadu_ps(m, v.as_ptr().add(i));
        let r = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(x, vinv), magic), magic);
        let c = _mm512_min_ps(_mm512_max_ps(r, lo), hi);
        let ci = _mm512_cvttps_epi32(c);
        _mm512_mask_cvtepi32_storeu_epi8(out.as_mut_ptr().add(i).cast(), m, ci);
        sum = _mm512_add_epi32(sum, ci);
        let rd = _mm512_mul_ps(vscale, c);
        n2 = _mm512_add_ps(n2, _mm512_mul_ps(x, x));
        let d = _mm512_sub_ps(x, rd);
        e2 = _mm512_add_ps(e2, _mm512_mul_ps(d, d));
        h2 = _mm512_add_ps(h2, _mm512_mul_ps(rd, rd));
        i += 16;
    }
    let lanes = |z: __m512| {
        let mut a = [0f32; 16];
        _mm512_storeu_ps(a.as_mut_ptr(), z);
        lanes_sum(&a)
    };
    finish(scale, _mm512_reduce_add_epi32(sum), lanes(n2), lanes(e2), lanes(h2), n)
}

#[inline(always)]
fn quantize_lanes(v: &[f32], out: &mut [i8]) -> Q8Meta {
    let max = v.iter().fold(0f32, |m, x| m.max(x.abs()));
    out.fill(0);
    if max == 0.0 || !max.is_finite() {
        return Q8Meta::default();
    }
    let scale = max / 127.0;
    let inv = 127.0 / max;
    let mut sum = 0i32;
    let (mut n2, mut e2, mut h2) = ([0f32; 16], [0f32; 16], [0f32; 16]);
    let out = &mut out[..v.len()];
    for (oc, vc) in out.chunks_mut(16).zip(v.chunks(16)) {
        for (l, (o, &x)) in oc.iter_mut().zip(vc).enumerate() {
            let c = round(x * inv).clamp(-127.0, 127.0);
            *o = c as i8;
            sum += c as i32;
            let rd = scale * c;
            n2[l] += x * x;
            e2[l] += (x - rd) * (x - rd);
            h2[l] += rd * rd;
        }
    }
    finish(scale, sum, lanes_sum(&n2), lanes_sum(&e2), lanes_sum(&h2), v.len())
}

/// The metadata from the lane sums of squares (of `v`, of the error, of the reconstruction).
#[inline(always)]
fn finish(scale: f32, sum: i32, n: f64, e: f64, h: f64, dims: usize) -> Q8Meta {
    // f32 sums of at most dims/16 terms per lane: a relative margin of 1e-4 (plus an absolute
    // one for subnormal-sized values) keeps every bound above the true value.
    let f = |x: f64| up((x * (1.0 + 1e-4)).sqrt() + 1e-30);
    debug_assert!(dims <= 16 * 1600);
    Q8Meta { scale, sum, norm: f(n), err: f(e) + scale * 1e-6, hat: f(h) }
}

/// Query codes as unsigned bytes (`code + 128`; padding = 128, i.e. code 0).
pub fn quantize_query(q: &[f32], out: &mut [u8], scratch: &mut [i8]) -> Q8Meta {
    let m = quantize(q, scratch);
    for (o, &c) in out.iter_mut().zip(scratch.iter()) {
        *o = (c as i16 + 128) as u8;
    }
    m
}

/// Rows per panel.
pub const PANEL: usize = 16;

/// `out[q * np*16 + p*16 + l] = Σ_i queries[q][i] · row(p, l)[i]` (u8 × i8, exact i32) for
/// `np` panels of codes of `dpad` bytes (a multiple of [`PAD`]).
pub type DotPanelsQ8 = fn(queries: &[u8], nq: usize, panels: &[i8], np: usize, dpad: usize, out: &mut [i32]);

fn check(queries: &[u8], nq: usize, panels: &[i8], np: usize, dpad: usize, out: &[i32]) {
    assert!(dpad.is_multiple_of(PAD), "dpad must be a multiple of {PAD}");
    assert!(queries.len() >= nq * dpad && panels.len() >= np * PANEL * dpad && out.len() >= nq * np * PANEL, "q8 panels: slices too short");
}

/// Offset of row-lane `l`, dims `4g..4g+4`, inside a panel.
#[inline(always)]
fn at(g: usize, l: usize) -> usize {
    g * 4 * PANEL + l * 4
}

/// Portable reference (the oracle of the SIMD kernel).
pub fn dot_panels_scalar(queries: &[u8], nq: usize, panels: &[i8], np: usize, dpad: usize, out: &mut [i32]) {
    check(queries, nq, panels, np, dpad, out);
    for q in 0..nq {
        let qv = &queries[q * dpad..(q + 1) * dpad];
        for p in 0..np {
            let pv = &panels[p * PANEL * dpad..(p + 1) * PANEL * dpad];
            for l in 0..PANEL {
                let mut s = 0i32;
                for g in 0..dpad / 4 {
                    for b in 0..4 {
                        s += qv[4 * g + b] as i32 * pv[at(g, l) + b] as i32;
                    }
                }
                out[q * np * PANEL + p * PANEL + l] = s;
            }
        }
    }
}

/// Plain row-major codes (`nr × dpad`) in panel layout (the last panel zero-padded).
pub fn to_panels(rows: &[i8], nr: usize, dpad: usize) -> Vec<i8> {
    let np = nr.div_ceil(PANEL);
    let mut out = vec![0i8; np * PANEL * dpad];
    for r in 0..nr {
        let base = (r / PANEL) * PANEL * dpad;
        for g in 0..dpad / 4 {
            out[base + at(g, r % PANEL)..][..4].copy_from_slice(&rows[r * dpad + 4 * g..][..4]);
        }
    }
    out
}

/// A query's side of the bound: `a = scale · row.scale · (raw − row.corr)`,
/// `b = err · row.norm + hat · row.err + slack`.
#[derive(Clone, Copy, Debug)]
pub struct QBound {
    pub scale: f32,
    pub err: f32,
    pub hat: f32,
    pub slack: f32,
}

/// For a block of at most 64 rows: `ub[j] = a + b`, `lo[j] = a − b`; returns the mask of the
/// rows with `ub[j] >= thr` (bit j).
pub type BoundsFn = fn(raw: &[i32], cols: Q8Cols, q: QBound, thr: f32, ub: &mut [f32], lo: &mut [f32]) -> u64;

/// Portable [`BoundsFn`].
pub fn bounds_scalar(raw: &[i32], cols: Q8Cols, q: QBound, thr: f32, ub: &mut [f32], lo: &mut [f32]) -> u64 {
    let m = raw.len();
    assert!(m <= 64 && cols.scale.len() >= m && cols.corr.len() >= m && cols.norm.len() >= m && cols.err.len() >= m && ub.len() >= m && lo.len() >= m);
    let mut mask = 0u64;
    for j in 0..m {
        let a = q.scale * cols.scale[j] * (raw[j] - cols.corr[j]) as f32;
        let b = q.err * cols.norm[j] + q.hat * cols.err[j] + q.slack;
        ub[j] = a + b;
        lo[j] = a - b;
        mask |= ((a + b >= thr) as u64) << j;
    }
    mask
}

/// `Σ_i q[i] · r[i]` (u8 × i8, exact i32) of one query's codes and one row's codes in plain
/// layout, both `dpad` bytes (a multiple of [`PAD`]): the graph traversal's score, one
/// visited node at a time (`crate::ann`).
pub type DotPairQ8 = fn(q: &[u8], r: &[i8]) -> i32;

/// Portable [`DotPairQ8`] (the oracle of the SIMD kernel).
pub fn dot_pair_scalar(q: &[u8], r: &[i8]) -> i32 {
    assert!(q.len() == r.len() && q.len().is_multiple_of(PAD), "q8 pair: lengths");
    q.iter().zip(r).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// The int8 pre-pass kernels of one ISA.
#[derive(Debug)]
pub struct Q8Kernels {
    pub dot_panels: DotPanelsQ8,
    pub bounds: BoundsFn,
    pub dot_pair: DotPairQ8,
}

/// `off` skips the int8 pre-pass, `vnni` keeps it off AMX tiles (read once; for comparisons
/// in benchmarks).
pub const Q8_ENV_VAR: &str = "MEMORY_SERVER_Q8";

/// Which int8 kernel [`kernel`] hands out: "amx", "vnni", or "none".
pub fn kernel_name() -> &'static str {
    match kernel() {
        None => "none",
        #[cfg(target_arch = "x86_64")]
        Some(k) if std::ptr::eq(k, &super::x86_64::Q8_AMX) => "amx",
        Some(_) => "vnni",
    }
}

/// The int8 block kernel for this CPU, if it has one worth using (AVX-512 VNNI, with AMX
/// tiles for the dots where the CPU and OS have them), the ISA isn't forced below AVX-512
/// with `MEMORY_SERVER_ISA` and `MEMORY_SERVER_Q8` isn't `off`. Without one, callers use the
/// exact f32 scan directly (an int8 pass without VNNI isn't faster than AVX2 f32).
pub fn kernel() -> Option<&'static Q8Kernels> {
    static CHOICE: std::sync::OnceLock<Option<&'static Q8Kernels>> = std::sync::OnceLock::new();
    *CHOICE.get_or_init(|| {
        let env = std::env::var(Q8_ENV_VAR).unwrap_or_default().trim().to_ascii_lowercase();
        if env == "off" {
            return None;
        }
        #[cfg(target_arch = "x86_64")]
        {
            if super::kernels().isa == super::Isa::Avx512 && super::x86_64::has_avx512_vnni() {
                if env != "vnni" && super::x86_64::has_amx() {
                    return Some(&super::x86_64::Q8_AMX);
                }
                return Some(&super::x86_64::Q8_VNNI);
            }
        }
        let _ = env;
        None
    })
}

/// Per-row columns of a block of [`Q8Rows`]: `a = q.scale · scale · (raw − corr)` and the
/// bound `q.err · norm + q.hat · err` vectorize over them.
#[derive(Clone, Copy)]
pub struct Q8Cols<'a> {
    pub scale: &'a [f32],
    /// 128 · Σ codes.
    pub corr: &'a [i32],
    pub norm: &'a [f32],
    pub err: &'a [f32],
}

/// Int8 codes of a growing list of vectors (row i = the i-th vector pushed), in panels, with
/// their quantization data in columns.
#[derive(Debug)]
pub struct Q8Rows {
    dims: usize,
    dpad: usize,
    codes: Vec<i8>,
    scratch: Vec<i8>,
    scale: Vec<f32>,
    corr: Vec<i32>,
    norm: Vec<f32>,
    err: Vec<f32>,
    max_norm: f32,
}

impl Q8Rows {
    pub fn new(dims: usize) -> Self {
        let dpad = padded(dims);
        Q8Rows { dims, dpad, codes: Vec::new(), scratch: vec![0; dpad], scale: Vec::new(), corr: Vec::new(), norm: Vec::new(), err: Vec::new(), max_norm: 0.0 }
    }
    pub fn dims(&self) -> usize {
        self.dims
    }
    pub fn dpad(&self) -> usize {
        self.dpad
    }
    pub fn len(&self) -> usize {
        self.scale.len()
    }
    pub fn is_empty(&self) -> bool {
        self.scale.is_empty()
    }
    pub fn clear(&mut self) {
        self.codes.clear();
        self.scale.clear();
        self.corr.clear();
        self.norm.clear();
        self.err.clear();
        self.max_norm = 0.0;
    }
    /// The largest ‖v‖ pushed so far.
    pub fn max_norm(&self) -> f32 {
        self.max_norm
    }
    pub fn push(&mut self, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dims);
        let r = self.len();
        if r.is_multiple_of(PANEL) {
            self.codes.resize(self.codes.len() + PANEL * self.dpad, 0);
        }
        let m = quantize(v, &mut self.scratch);
        let base = (r / PANEL) * PANEL * self.dpad;
        for g in 0..self.dpad / 4 {
            self.codes[base + at(g, r % PANEL)..][..4].copy_from_slice(&self.scratch[4 * g..][..4]);
        }
        self.max_norm = self.max_norm.max(m.norm);
        self.scale.push(m.scale);
        self.corr.push(128 * m.sum);
        self.norm.push(m.norm);
        self.err.push(m.err);
    }
    /// Panels `p0..p1` (rows `16·p0 .. 16·p1`; lanes past the last row are zero).
    #[inline]
    pub fn panels(&self, p0: usize, p1: usize) -> &[i8] {
        &self.codes[p0 * PANEL * self.dpad..p1 * PANEL * self.dpad]
    }
    /// Copy row `r`'s codes into lane `j` of a panel buffer (`dst` panels of this `dpad`).
    #[inline]
    pub fn copy_row(&self, r: usize, dst: &mut [i8], j: usize) {
        let (src, dst_base) = ((r / PANEL) * PANEL * self.dpad, (j / PANEL) * PANEL * self.dpad);
        for g in 0..self.dpad / 4 {
            dst[dst_base + at(g, j % PANEL)..][..4].copy_from_slice(&self.codes[src + at(g, r % PANEL)..][..4]);
        }
    }
    /// Columns of rows `start..end`.
    #[inline]
    pub fn cols(&self, start: usize, end: usize) -> Q8Cols<'_> {
        Q8Cols { scale: &self.scale[start..end], corr: &self.corr[start..end], norm: &self.norm[start..end], err: &self.err[start..end] }
    }
}

#[cfg(test)]
pub(crate) mod tests;
