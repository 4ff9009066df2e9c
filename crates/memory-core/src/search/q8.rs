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

/// The int8 pre-pass kernels of one ISA.
#[derive(Debug)]
pub struct Q8Kernels {
    pub dot_panels: DotPanelsQ8,
    pub bounds: BoundsFn,
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
pub(crate) mod tests {
    use super::*;

    /// xorshift in [-1, 1) (shared with the store's int8 tests).
    pub(crate) fn rng(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
        }
    }

    /// [`kernel`], or `None` after a line saying why `test` is skipped: these tests need an
    /// int8 kernel, which only some CPUs have (and the environment can turn off).
    pub(crate) fn kernel_or_skip(test: &str) -> Option<&'static Q8Kernels> {
        let k = kernel();
        if k.is_none() {
            let why = if std::env::var(Q8_ENV_VAR).is_ok_and(|v| v.trim().eq_ignore_ascii_case("off")) {
                format!("{Q8_ENV_VAR}=off")
            } else if !vnni_available() {
                "AVX-512 VNNI not available on this CPU".to_string()
            } else {
                format!("{} forces an ISA below avx512", super::super::ISA_ENV_VAR)
            };
            eprintln!("{test}: skipped: {why}");
        }
        k
    }

    fn vnni_available() -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            super::super::x86_64::has_avx512_vnni()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    }

    /// Every int8 kernel this CPU can run (not only the one `kernel()` picks); says which of
    /// them `test` skips.
    fn runnable(test: &str) -> Vec<(&'static str, DotPanelsQ8)> {
        #[allow(unused_mut)]
        let mut v: Vec<(&'static str, DotPanelsQ8)> = Vec::new();
        if !vnni_available() {
            eprintln!("{test}: vnni, amx skipped: AVX-512 VNNI not available on this CPU");
            return v;
        }
        #[cfg(target_arch = "x86_64")]
        {
            v.push(("vnni", super::super::x86_64::Q8_VNNI.dot_panels));
            if super::super::x86_64::has_amx() {
                v.push(("amx", super::super::x86_64::Q8_AMX.dot_panels));
            } else {
                eprintln!("{test}: amx skipped: AMX-INT8 not available on this CPU (or not granted by the OS)");
            }
        }
        v
    }

    /// `cargo test --release --lib q8_kernel_speed -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn q8_kernel_speed() {
        let dpad = padded(384);
        let (nq, nr) = (25, 45_056);
        let mut r = rng(3);
        let q: Vec<u8> = (0..nq * dpad).map(|_| ((r() + 1.0) * 127.5) as u8).collect();
        let panels: Vec<i8> = (0..nr * dpad).map(|_| (r() * 127.0) as i8).collect();
        let np = nr / PANEL;
        let mut out = vec![0; nq * np * PANEL];
        println!("kernel() picks {}", kernel_name());
        for (name, k) in runnable("q8_kernel_speed") {
            for _ in 0..3 {
                let t = std::time::Instant::now();
                for _ in 0..10 {
                    // 4 panels (64 rows, one Q8_BLOCK) per call, like the pass.
                    for b in (0..np).step_by(4) {
                        let n = 4.min(np - b);
                        k(&q, nq, &panels[b * PANEL * dpad..(b + n) * PANEL * dpad], n, dpad, &mut out[..nq * n * PANEL]);
                    }
                }
                let s = t.elapsed().as_secs_f64() / 10.0;
                println!("{name}: {:.3} ms per pass, {:.0} G int8 MAC/s", s * 1e3, (nq * nr * dpad) as f64 / s / 1e9);
            }
        }
    }

    #[test]
    fn kernel_matches_the_oracle_exactly() {
        for (name, k) in runnable("kernel_matches_the_oracle_exactly") {
            kernel_matches_the_oracle(name, k);
        }
    }

    fn kernel_matches_the_oracle(name: &str, k: DotPanelsQ8) {
        let mut r = rng(7);
        let shapes = [(1, 1, 1), (4, 4, 64), (5, 7, 100), (8, 13, 384), (12, 33, 385), (3, 64, 768), (17, 50, 384), (9, 16, 128), (16, 48, 384), (33, 80, 384), (64, 17, 384), (2, 1000, 384)];
        for &(nq, nr, dims) in &shapes {
            let dpad = padded(dims);
            let q: Vec<u8> = (0..nq * dpad).map(|i| if i % dpad < dims { ((r() + 1.0) * 127.5) as u8 } else { 128 }).collect();
            let rows: Vec<i8> = (0..nr * dpad).map(|i| if i % dpad < dims { (r() * 127.0) as i8 } else { 0 }).collect();
            let panels = to_panels(&rows, nr, dpad);
            let np = nr.div_ceil(PANEL);
            let (mut a, mut b) = (vec![0; nq * np * PANEL], vec![0; nq * np * PANEL]);
            dot_panels_scalar(&q, nq, &panels, np, dpad, &mut a);
            k(&q, nq, &panels, np, dpad, &mut b);
            assert_eq!(a, b, "{name}: nq={nq} nr={nr} dims={dims}");
            // And the oracle against plain row-major dots.
            for qi in 0..nq {
                for ri in 0..nr {
                    let want: i32 = (0..dpad).map(|i| q[qi * dpad + i] as i32 * rows[ri * dpad + i] as i32).sum();
                    assert_eq!(a[qi * np * PANEL + ri], want);
                }
            }
        }
        // Extremes: every product at its maximum magnitude.
        let dpad = padded(384);
        let q = vec![255u8; 4 * dpad];
        let panels = vec![-127i8; 2 * PANEL * dpad];
        let mut out = vec![0; 4 * 2 * PANEL];
        k(&q, 4, &panels, 2, dpad, &mut out);
        assert!(out.iter().all(|&x| x == -255 * 127 * dpad as i32), "{name}");
    }

    #[test]
    fn simd_bounds_match_the_scalar_ones() {
        let Some(kk) = kernel_or_skip("simd_bounds_match_the_scalar_ones") else { return };
        let mut r = rng(5);
        for m in [1usize, 7, 16, 17, 33, 64] {
            let raw: Vec<i32> = (0..m).map(|_| (r() * 1e6) as i32).collect();
            let corr: Vec<i32> = (0..m).map(|_| (r() * 1e4) as i32).collect();
            let scale: Vec<f32> = (0..m).map(|_| r().abs() * 1e-2).collect();
            let norm: Vec<f32> = (0..m).map(|_| 1.0 + r() * 1e-3).collect();
            let err: Vec<f32> = (0..m).map(|_| r().abs() * 1e-2).collect();
            let cols = Q8Cols { scale: &scale, corr: &corr, norm: &norm, err: &err };
            let q = QBound { scale: 1.3e-2, err: 9e-3, hat: 0.99, slack: 1e-4 };
            for thr in [f32::NEG_INFINITY, -10.0, 0.0, 5.0, f32::INFINITY] {
                let (mut u1, mut l1, mut u2, mut l2) = (vec![0.0; m], vec![0.0; m], vec![0.0; m], vec![0.0; m]);
                let a = bounds_scalar(&raw, cols, q, thr, &mut u1, &mut l1);
                let b = (kk.bounds)(&raw, cols, q, thr, &mut u2, &mut l2);
                for j in 0..m {
                    assert!((u1[j] - u2[j]).abs() <= 1e-5 * (1.0 + u1[j].abs()) && (l1[j] - l2[j]).abs() <= 1e-5 * (1.0 + l1[j].abs()), "m={m} j={j}");
                    // The mask agrees wherever the comparison isn't within rounding.
                    if (u1[j] - thr).abs() > 1e-4 * (1.0 + u1[j].abs()) {
                        assert_eq!(a >> j & 1, b >> j & 1, "m={m} j={j} thr={thr}");
                    }
                }
                assert_eq!(a >> m.min(63) >> 1, 0);
                assert_eq!(b >> m.min(63) >> 1, 0);
            }
        }
    }

    #[test]
    fn bounds_contain_the_exact_dot() {
        let mut r = rng(11);
        for dims in [3usize, 64, 384, 1000] {
            let dpad = padded(dims);
            for _ in 0..200 {
                let mut a: Vec<f32> = (0..dims).map(|_| r()).collect();
                let b: Vec<f32> = (0..dims).map(|_| r() * 3.0).collect();
                if dims > 10 {
                    a[3] = 40.0; // one large component: coarse codes for the rest
                }
                let (mut qa, mut sa, mut cb) = (vec![0u8; dpad], vec![0i8; dpad], vec![0i8; dpad]);
                let ma = quantize_query(&a, &mut qa, &mut sa);
                let mb = quantize(&b, &mut cb);
                let mut raw = [0i32; PANEL];
                dot_panels_scalar(&qa, 1, &to_panels(&cb, 1, dpad), 1, dpad, &mut raw);
                let approx = ma.scale as f64 * mb.scale as f64 * (raw[0] - 128 * mb.sum) as f64;
                let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
                let bound = ma.err as f64 * mb.norm as f64 + ma.hat as f64 * mb.err as f64;
                assert!((exact - approx).abs() <= bound, "dims={dims}: |{exact} - {approx}| > {bound}");
            }
        }
    }

    #[test]
    fn rows_are_stored_in_panels_and_copied_out_of_them() {
        let mut r = rng(3);
        let dims = 70;
        let mut q8 = Q8Rows::new(dims);
        let mut plain = Vec::new();
        for _ in 0..37 {
            let v: Vec<f32> = (0..dims).map(|_| r()).collect();
            let mut c = vec![0i8; q8.dpad()];
            quantize(&v, &mut c);
            plain.extend_from_slice(&c);
            q8.push(&v);
        }
        let dpad = q8.dpad();
        assert_eq!(q8.panels(0, 3), &to_panels(&plain, 37, dpad)[..]);
        let mut dst = vec![0i8; 2 * PANEL * dpad];
        for (j, r) in [36usize, 0, 17, 5].into_iter().enumerate() {
            q8.copy_row(r, &mut dst, j + 14);
        }
        let picked: Vec<i8> = [36usize, 0, 17, 5].iter().flat_map(|&r| plain[r * dpad..(r + 1) * dpad].to_vec()).collect();
        let want = to_panels(&[vec![0i8; 14 * dpad], picked].concat(), 18, dpad);
        assert_eq!(&dst[..], &want[..]);
    }

    #[test]
    fn avx512_quantization_is_bit_identical_to_the_portable_one() {
        #[cfg(target_arch = "x86_64")]
        {
            if !(is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")) {
                eprintln!("avx512_quantization_is_bit_identical_to_the_portable_one: skipped: AVX-512F/BW not available on this CPU");
                return;
            }
            let mut r = rng(9);
            for dims in [1usize, 15, 16, 17, 100, 384, 385, 1000] {
                for scale in [1e-30f32, 1e-3, 1.0, 1e20] {
                    let v: Vec<f32> = (0..dims).map(|_| r() * scale).collect();
                    let (mut a, mut b) = (vec![1i8; padded(dims)], vec![2i8; padded(dims)]);
                    let ma = quantize_lanes(&v, &mut a);
                    // SAFETY: the features were detected above.
                    let mb = unsafe { quantize_avx512(&v, &mut b) };
                    assert_eq!((ma, &a), (mb, &b), "dims={dims} scale={scale}");
                }
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        eprintln!("avx512_quantization_is_bit_identical_to_the_portable_one: skipped: AVX-512 is x86-64 only");
    }

    #[test]
    fn zero_and_tiny_vectors() {
        let mut c = vec![0i8; 64];
        assert_eq!(quantize(&[0.0; 5], &mut c), Q8Meta::default());
        let m = quantize(&[1e-30, -1e-30, 0.0], &mut c);
        assert_eq!(&c[..3], &[127, -127, 0]);
        assert!(m.err >= 0.0 && m.norm > 0.0);
    }
}

