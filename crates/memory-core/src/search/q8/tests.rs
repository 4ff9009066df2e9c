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
fn pair_kernel_matches_the_oracle_exactly() {
    let Some(kk) = kernel_or_skip("pair_kernel_matches_the_oracle_exactly") else { return };
    let mut r = rng(13);
    for dims in [1usize, 64, 100, 128, 384, 385, 768, 1000] {
        let dpad = padded(dims);
        for _ in 0..20 {
            let q: Vec<u8> = (0..dpad).map(|i| if i < dims { ((r() + 1.0) * 127.5) as u8 } else { 128 }).collect();
            let row: Vec<i8> = (0..dpad).map(|i| if i < dims { (r() * 127.0) as i8 } else { 0 }).collect();
            let want: i32 = q.iter().zip(&row).map(|(&a, &b)| a as i32 * b as i32).sum();
            assert_eq!(dot_pair_scalar(&q, &row), want, "oracle, dims={dims}");
            assert_eq!((kk.dot_pair)(&q, &row), want, "dims={dims}");
        }
        // Every product at its maximum magnitude.
        assert_eq!((kk.dot_pair)(&vec![255u8; dpad], &vec![-127i8; dpad]), -255 * 127 * dpad as i32, "dims={dims}");
    }
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
