//! Every available kernel table vs an f64 scalar oracle, plus normalize / check_vector / TopK.

use super::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIMS: &[usize] = &[
    0, 1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 100, 383, 384, 385, 768,
];

fn rand_vec(rng: &mut StdRng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.gen_range(-1.0f32..1.0)).collect()
}

/// f64 oracle: (dot, sum |a_i b_i|).
fn oracle_dot(a: &[f32], b: &[f32]) -> (f64, f64) {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).fold((0.0, 0.0), |(s, m), (&x, &y)| {
        let p = f64::from(x) * f64::from(y);
        (s + p, m + p.abs())
    })
}

#[track_caller]
fn assert_close(got: f32, want: f64, mag: f64, what: &str) {
    let err = (f64::from(got) - want).abs();
    assert!(
        err <= 1e-4 * (1.0 + mag),
        "{what}: got {got}, want {want} (|err| = {err}, magnitude {mag})"
    );
}

/// Every kernel table this CPU can run, saying which ISAs of this architecture it skips.
fn all_kernels() -> Vec<&'static Kernels> {
    let native: &[Isa] = if cfg!(target_arch = "x86_64") {
        &[Isa::Avx2, Isa::Avx512]
    } else if cfg!(target_arch = "aarch64") {
        &[Isa::Neon]
    } else {
        &[]
    };
    for isa in native.iter().filter(|isa| kernels_for(**isa).is_none()) {
        eprintln!("{isa} kernels skipped: {isa} not available on this CPU");
    }
    let mut v: Vec<_> = available_isas()
        .into_iter()
        .map(|isa| kernels_for(isa).expect("available isa has a table"))
        .collect();
    // And the software-prefetching variants.
    let variants: Vec<_> = v.iter().filter_map(|&k| prefetching(k)).collect();
    v.extend(variants);
    assert!(v.iter().any(|k| k.isa == Isa::Scalar));
    v
}

#[test]
fn detection_is_consistent() {
    let isas = available_isas();
    assert_eq!(isas[0], Isa::Scalar);
    for isa in Isa::ALL {
        let t = kernels_for(isa);
        assert_eq!(t.is_some(), isas.contains(&isa), "{isa}");
        if let Some(t) = t {
            assert_eq!(t.isa, isa);
        }
        assert_eq!(Isa::from_name(isa.name()), Some(isa));
    }
    assert_eq!(Isa::from_name(" AVX512 "), Some(Isa::Avx512));
    assert_eq!(Isa::from_name("sse"), None);
    // The chosen table is one of the available ones (it may be forced by the env var).
    assert!(isas.contains(&kernels().isa));
    if std::env::var(ISA_ENV_VAR).is_err() {
        assert_eq!(kernels().isa, *isas.last().unwrap());
    }
    #[cfg(target_arch = "x86_64")]
    {
        assert!(kernels_for(Isa::Neon).is_none());
        if is_x86_feature_detected!("avx512f") {
            assert!(isas.contains(&Isa::Avx512));
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        assert!(kernels_for(Isa::Avx2).is_none());
        assert!(isas.contains(&Isa::Neon));
    }
}

#[test]
fn dot_matches_oracle() {
    let mut rng = StdRng::seed_from_u64(1);
    for k in all_kernels() {
        for &d in DIMS.iter().chain(&[1000, 1023, 1024, 1025]) {
            for offset in [0usize, 1, 3] {
                // Unaligned starts as well as aligned ones.
                let a = rand_vec(&mut rng, d + offset);
                let b = rand_vec(&mut rng, d + offset);
                let (a, b) = (&a[offset..], &b[offset..]);
                let (want, mag) = oracle_dot(a, b);
                assert_close((k.dot)(a, b), want, mag, &format!("{} dot d={d}", k.isa));
            }
        }
        assert_eq!((k.dot)(&[], &[]), 0.0);
        assert_eq!((k.dot)(&[2.0], &[3.0]), 6.0);
    }
}

#[test]
#[should_panic]
fn dot_length_mismatch_panics() {
    let k = kernels();
    (k.dot)(&[1.0, 2.0], &[1.0]);
}

#[test]
fn dot_rows_matches_oracle() {
    let mut rng = StdRng::seed_from_u64(2);
    for k in all_kernels() {
        for &d in DIMS {
            for n in [0usize, 1, 2, 3, 4, 5, 7, 8, 9, 13, 32] {
                let q = rand_vec(&mut rng, d);
                // Exactly-sized row buffer (any over-read would be out of bounds) and, for
                // some cases, one with trailing junk that must be ignored.
                let extra = if n % 2 == 1 { d + 5 } else { 0 };
                let rows = rand_vec(&mut rng, n * d + extra);
                let mut out = vec![f32::NAN; n];
                (k.dot_rows)(&q, &rows, d, &mut out);
                for r in 0..n {
                    let (want, mag) = oracle_dot(&q, &rows[r * d..(r + 1) * d]);
                    assert_close(out[r], want, mag, &format!("{} dot_rows d={d} n={n} r={r}", k.isa));
                }
            }
        }
    }
}

fn check_block(k: &Kernels, rng: &mut StdRng, d: usize, nq: usize, nr: usize) {
    let queries = rand_vec(rng, nq * d);
    let rows = rand_vec(rng, nr * d);
    // Output has a guard region that must stay untouched.
    let mut out = vec![f32::NAN; nq * nr + 7];
    for x in &mut out[nq * nr..] {
        *x = 12345.0;
    }
    (k.dot_block)(&queries, nq, &rows, nr, d, &mut out);
    for q in 0..nq {
        for r in 0..nr {
            let (want, mag) = oracle_dot(&queries[q * d..(q + 1) * d], &rows[r * d..(r + 1) * d]);
            assert_close(
                out[q * nr + r],
                want,
                mag,
                &format!("{} dot_block d={d} nq={nq} nr={nr} q={q} r={r}", k.isa),
            );
        }
    }
    assert!(out[nq * nr..].iter().all(|&x| x == 12345.0), "{} wrote past nq*nr", k.isa);
}

#[test]
fn dot_block_matches_oracle() {
    let mut rng = StdRng::seed_from_u64(3);
    for k in all_kernels() {
        for &d in DIMS {
            for nq in 1..=13 {
                for nr in [0usize, 1, 2, 3, 4, 5, 8, 9, 11] {
                    check_block(k, &mut rng, d, nq, nr);
                }
            }
        }
        for &d in &[0usize, 1, 17, 100, 384, 385, 768] {
            for nr in [0usize, 1, 4, 7, 16, 64, 67] {
                check_block(k, &mut rng, d, 64, nr);
            }
        }
        // nq = 0 is a no-op.
        let mut out = [1.0f32; 3];
        (k.dot_block)(&[], 0, &[1.0, 2.0, 3.0], 1, 3, &mut out);
        assert_eq!(out, [1.0; 3]);
    }
}

#[test]
fn a_pairs_dot_is_the_same_on_every_path() {
    // The store breaks ties between equal scores by recency, so a (query, row) pair must score
    // bit for bit the same whichever kernel path computes it: `dot`, `dot_rows` (a row in a
    // 4-row group or in the tail) or `dot_block` (a full tile, a tail row or a tail query).
    // Identical rows then score identically wherever they fall in a scan.
    let mut rng = StdRng::seed_from_u64(4);
    for k in all_kernels() {
        for &d in &[1usize, 3, 4, 7, 8, 15, 16, 17, 31, 33, 64, 100, 383, 384] {
            for &(nq, nr) in &[(1usize, 1usize), (3, 5), (4, 4), (5, 7), (8, 13), (9, 3), (12, 25)] {
                let queries = rand_vec(&mut rng, nq * d);
                let rows = rand_vec(&mut rng, nr * d);
                let mut block = vec![0.0; nq * nr];
                (k.dot_block)(&queries, nq, &rows, nr, d, &mut block);
                for q in 0..nq {
                    let qv = &queries[q * d..(q + 1) * d];
                    let mut single = vec![0.0; nr];
                    (k.dot_rows)(qv, &rows, d, &mut single);
                    for r in 0..nr {
                        let one = (k.dot)(qv, &rows[r * d..(r + 1) * d]);
                        let what = format!("{} d={d} nq={nq} nr={nr} q={q} r={r}", k.isa);
                        assert_eq!(one.to_bits(), single[r].to_bits(), "dot vs dot_rows: {what}");
                        assert_eq!(one.to_bits(), block[q * nr + r].to_bits(), "dot vs dot_block: {what}");
                    }
                }
            }
        }
    }
}

#[test]
#[cfg(feature = "bench")]
fn sum_matches_oracle() {
    let mut rng = StdRng::seed_from_u64(5);
    for k in all_kernels() {
        for n in DIMS.iter().copied().chain([127, 128, 129, 255, 256, 257, 10_000, 10_001]) {
            let v = rand_vec(&mut rng, n + 1);
            let v = &v[1..];
            let want: f64 = v.iter().map(|&x| f64::from(x)).sum();
            let mag: f64 = v.iter().map(|&x| f64::from(x).abs()).sum();
            assert_close((k.sum)(v), want, mag, &format!("{} sum n={n}", k.isa));
        }
        assert_eq!((k.sum)(&[]), 0.0);
    }
}

#[test]
#[cfg(feature = "bench")]
fn fma_peak_runs() {
    for k in all_kernels() {
        assert!(k.fma_flops_per_iter > 0);
        let a = (k.fma_peak)(1000);
        assert!(a.is_finite() && a > 0.0, "{} fma_peak returned {a}", k.isa);
        assert!((k.fma_peak)(0).is_finite());
    }
}

#[test]
fn normalize_works() {
    let mut v = vec![3.0f32, 4.0];
    assert_eq!(normalize(&mut v), 5.0);
    assert!((v[0] - 0.6).abs() < 1e-7 && (v[1] - 0.8).abs() < 1e-7);

    let mut z = vec![0.0f32; 5];
    assert_eq!(normalize(&mut z), 0.0);
    assert!(z.iter().all(|&x| x == 0.0));
    assert_eq!(normalize(&mut []), 0.0);

    // Large but finite values must not overflow the norm.
    let mut big = vec![1e30f32; 384];
    let n = normalize(&mut big);
    assert!(n.is_finite());
    let norm2: f64 = big.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
    assert!((norm2 - 1.0).abs() < 1e-5);

    let mut rng = StdRng::seed_from_u64(6);
    for &d in DIMS.iter().filter(|&&d| d > 0) {
        let mut v = rand_vec(&mut rng, d);
        let orig = v.clone();
        let n = normalize(&mut v);
        let want = orig.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        assert!((f64::from(n) - want).abs() <= 1e-6 * want);
        let (dd, _) = oracle_dot(&v, &v);
        assert!((dd - 1.0).abs() < 1e-5, "d={d}: |v|^2 = {dd}");
        for (a, b) in v.iter().zip(&orig) {
            assert!((f64::from(*a) - f64::from(*b) / want).abs() < 1e-6);
        }
    }
}

#[test]
fn check_vector_errors() {
    assert_eq!(check_vector(&[0.0; 4], 4), Ok(()));
    assert_eq!(check_vector(&[], 0), Ok(()));
    assert_eq!(
        check_vector(&[0.0; 5], 384).unwrap_err(),
        "embedding has 5 dimensions, expected 384"
    );
    assert_eq!(
        check_vector(&[0.0, 1.0, 2.0, f32::NAN, f32::INFINITY], 5).unwrap_err(),
        "embedding[3] is NaN"
    );
    assert_eq!(
        check_vector(&[0.0, f32::INFINITY, f32::NAN], 3).unwrap_err(),
        "embedding[1] is +Infinity"
    );
    assert_eq!(
        check_vector(&[f32::NEG_INFINITY], 1).unwrap_err(),
        "embedding[0] is -Infinity"
    );
    // Length is checked before contents.
    assert!(check_vector(&[f32::NAN], 2).unwrap_err().contains("dimensions"));
    // Subnormals, max and -0.0 are fine.
    assert_eq!(check_vector(&[f32::MIN_POSITIVE / 2.0, f32::MAX, -0.0], 3), Ok(()));
}

/// Sorting oracle: best first = score desc, then row desc.
fn topk_oracle(items: &[(f32, u32)], k: usize) -> Vec<(f32, u32)> {
    let mut v: Vec<_> = items.iter().copied().filter(|x| !x.0.is_nan()).collect();
    v.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap().then(b.1.cmp(&a.1)));
    v.truncate(k);
    v
}

#[test]
fn topk_matches_sorting_oracle() {
    let mut rng = StdRng::seed_from_u64(7);
    for trial in 0..400 {
        let n = rng.gen_range(0..200usize);
        let k = match trial % 5 {
            0 => 0,
            1 => n + rng.gen_range(0..5), // k >= n
            _ => rng.gen_range(1..20),
        };
        // Few distinct scores so ties are frequent; rows in random (not increasing) order.
        let distinct = rng.gen_range(1..10);
        let mut rows: Vec<u32> = (0..n as u32).collect();
        for i in (1..rows.len()).rev() {
            rows.swap(i, rng.gen_range(0..=i));
        }
        let items: Vec<(f32, u32)> = rows
            .iter()
            .map(|&r| (rng.gen_range(0..distinct) as f32 * 0.25 - 1.0, r))
            .collect();
        let mut t = TopK::new(k);
        for &(s, r) in &items {
            t.push(s, r);
            assert!(t.len() <= k);
        }
        assert_eq!(t.into_sorted_vec(), topk_oracle(&items, k), "trial {trial} n={n} k={k}");

        // Same data split in two selectors and merged; and via push_scores.
        let mid = items.len() / 2;
        let (mut a, mut b) = (TopK::new(k), TopK::new(k));
        items[..mid].iter().for_each(|&(s, r)| {
            a.push(s, r);
        });
        items[mid..].iter().for_each(|&(s, r)| {
            b.push(s, r);
        });
        a.merge(b);
        assert_eq!(a.into_sorted_vec(), topk_oracle(&items, k));

        let scores: Vec<f32> = (0..n).map(|_| rng.gen_range(0..distinct) as f32).collect();
        let mut c = TopK::new(k);
        c.push_scores(&scores, 100);
        let as_items: Vec<(f32, u32)> =
            scores.iter().enumerate().map(|(i, &s)| (s, 100 + i as u32)).collect();
        assert_eq!(c.into_sorted_vec(), topk_oracle(&as_items, k));
    }
}

#[test]
fn topk_ties_threshold_and_edge_cases() {
    // Ties: higher (newer) row wins, regardless of push order.
    let mut t = TopK::new(2);
    assert_eq!(t.threshold(), f32::NEG_INFINITY);
    assert!(t.push(0.5, 1));
    assert!(t.push(0.5, 2));
    assert!(t.is_full());
    assert_eq!(t.threshold(), 0.5);
    assert!(!t.push(0.4, 9)); // below threshold
    assert!(!t.push(0.5, 0)); // equal score, older row
    assert!(t.push(0.5, 3)); // equal score, newer row evicts row 1
    assert!(t.push(0.9, 0));
    assert_eq!(t.into_sorted_vec(), vec![(0.9, 0), (0.5, 3)]);

    // k = 0 keeps nothing.
    let mut z = TopK::new(0);
    assert_eq!(z.threshold(), f32::INFINITY);
    assert!(!z.push(1.0, 1));
    assert!(z.is_empty());
    assert!(z.into_sorted_vec().is_empty());

    // k > n returns everything, sorted; NaN is never kept; infinities are ordinary scores.
    let mut big = TopK::new(10);
    for (s, r) in [(0.1, 5), (f32::NAN, 6), (0.3, 2), (f32::NEG_INFINITY, 7), (0.3, 9)] {
        big.push(s, r);
    }
    assert_eq!(big.len(), 4);
    assert_eq!(
        big.into_sorted_vec(),
        vec![(0.3, 9), (0.3, 2), (0.1, 5), (f32::NEG_INFINITY, 7)]
    );
}
