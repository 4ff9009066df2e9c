//! Mean pooling (+ optional L2 normalization) of a transformer's last hidden state: the
//! sentence-transformers `Pooling(mean)` + `Normalize` head, run on the ONNX model's output.

use rayon::prelude::*;

use crate::error::{Error, Result};

/// Work size (floats of `hidden`) from which rows are pooled in parallel.
const PAR_MIN_FLOATS: usize = 1 << 20;

/// Same epsilon as `torch.nn.functional.normalize` (sentence-transformers' `Normalize`).
const NORM_EPS: f32 = 1e-12;

/// Mean-pool `hidden` (row-major `[batch, seq_len, dims]`) over the positions where
/// `attention_mask` (`[batch, seq_len]`) is non-zero: `out[b] = Σ hidden[b, t] / count`, then
/// divide by the L2 norm when `normalize` (`x / max(‖x‖, 1e-12)`). A row whose mask is all zero
/// gives zeros. Returns `batch * dims` floats, row-major.
///
/// Errors (`invalid_request`): `dims == 0`, a size overflow, or `hidden` / `attention_mask` of the
/// wrong length (the message gives expected and actual lengths).
pub fn mean_pool(
    hidden: &[f32],
    attention_mask: &[i64],
    batch: usize,
    seq_len: usize,
    dims: usize,
    normalize: bool,
) -> Result<Vec<f32>> {
    if dims == 0 {
        return Err(Error::invalid("mean_pool: dims must be at least 1 (got 0)"));
    }
    let tokens = batch.checked_mul(seq_len);
    let floats = tokens.and_then(|t| t.checked_mul(dims));
    let (Some(tokens), Some(floats)) = (tokens, floats) else {
        return Err(Error::invalid(format!(
            "mean_pool: batch ({batch}) x seq_len ({seq_len}) x dims ({dims}) overflows"
        )));
    };
    if attention_mask.len() != tokens {
        return Err(Error::invalid(format!(
            "mean_pool: attention_mask has {} values, expected batch ({batch}) x seq_len ({seq_len}) = {tokens}",
            attention_mask.len()
        )));
    }
    if hidden.len() != floats {
        return Err(Error::invalid(format!(
            "mean_pool: hidden has {} values, expected batch ({batch}) x seq_len ({seq_len}) x dims ({dims}) = {floats}",
            hidden.len()
        )));
    }
    let mut out = vec![0.0f32; batch * dims];
    if batch == 0 || seq_len == 0 {
        return Ok(out);
    }
    let row_len = seq_len * dims;
    let pool_row = |(b, acc): (usize, &mut [f32])| {
        pool_one(
            &hidden[b * row_len..(b + 1) * row_len],
            &attention_mask[b * seq_len..(b + 1) * seq_len],
            acc,
            normalize,
        )
    };
    if floats >= PAR_MIN_FLOATS && batch > 1 {
        out.par_chunks_mut(dims).enumerate().for_each(pool_row);
    } else {
        out.chunks_mut(dims).enumerate().for_each(pool_row);
    }
    Ok(out)
}

/// Pool one sequence (`hidden`: `[seq_len, dims]`) into `acc` (`dims`, zeroed).
#[inline]
fn pool_one(hidden: &[f32], mask: &[i64], acc: &mut [f32], normalize: bool) {
    let dims = acc.len();
    let mut count = 0u32;
    for (h, &m) in hidden.chunks_exact(dims).zip(mask) {
        if m != 0 {
            count += 1;
            // Contiguous, equal-length slices: compiles to packed adds.
            for (a, &x) in acc.iter_mut().zip(h) {
                *a += x;
            }
        }
    }
    if count == 0 {
        return; // all-padding row: zeros
    }
    let c = count as f32;
    for a in acc.iter_mut() {
        *a /= c;
    }
    if normalize {
        let norm = sum_squares(acc).sqrt().max(NORM_EPS);
        for a in acc.iter_mut() {
            *a /= norm;
        }
    }
}

/// Σ x² with 8 independent accumulators (vectorizes without reassociating a single sum).
#[inline]
fn sum_squares(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in &mut chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v * v;
        }
    }
    let mut s: f32 = lanes.iter().sum();
    for &v in chunks.remainder() {
        s += v * v;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use rand::{Rng, SeedableRng};

    /// Naive f64 reference.
    fn reference(
        h: &[f32],
        m: &[i64],
        batch: usize,
        seq: usize,
        dims: usize,
        normalize: bool,
    ) -> Vec<f32> {
        let mut out = vec![0.0f32; batch * dims];
        for b in 0..batch {
            let mut sum = vec![0.0f64; dims];
            let mut n = 0.0f64;
            for t in 0..seq {
                if m[b * seq + t] == 1 {
                    n += 1.0;
                    for d in 0..dims {
                        sum[d] += h[(b * seq + t) * dims + d] as f64;
                    }
                }
            }
            if n == 0.0 {
                continue;
            }
            let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
            let norm = if normalize {
                mean.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12)
            } else {
                1.0
            };
            for d in 0..dims {
                out[b * dims + d] = (mean[d] / norm) as f32;
            }
        }
        out
    }

    fn random_case(
        rng: &mut rand::rngs::StdRng,
        batch: usize,
        seq: usize,
        dims: usize,
    ) -> (Vec<f32>, Vec<i64>) {
        let h: Vec<f32> = (0..batch * seq * dims)
            .map(|_| rng.gen_range(-3.0f32..3.0))
            .collect();
        let mut m = vec![0i64; batch * seq];
        for b in 0..batch {
            // Row 0 is all padding; others have a random real length (right padding).
            let len = if b == 0 { 0 } else { rng.gen_range(1..=seq) };
            m[b * seq..b * seq + len].fill(1);
        }
        (h, m)
    }

    #[test]
    fn matches_reference_random() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for &(batch, seq, dims) in &[(1, 1, 1), (3, 5, 7), (6, 17, 384), (4, 9, 13), (2, 3, 1024)] {
            let (h, m) = random_case(&mut rng, batch, seq, dims);
            for normalize in [false, true] {
                let got = mean_pool(&h, &m, batch, seq, dims, normalize).unwrap();
                let want = reference(&h, &m, batch, seq, dims, normalize);
                assert_eq!(got.len(), batch * dims);
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (g - w).abs() <= 1e-5 * (1.0 + w.abs()),
                        "{batch}x{seq}x{dims} [{i}] {g} vs {w}"
                    );
                }
                // The zero-mask row is zeros.
                assert!(got[..dims].iter().all(|&x| x == 0.0));
                if normalize {
                    for row in got.chunks(dims).skip(1) {
                        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
                        assert!((n - 1.0).abs() < 1e-5, "{n}");
                    }
                }
            }
        }
    }

    #[test]
    fn parallel_path_matches_reference() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let (batch, seq, dims) = (24, 128, 384); // > PAR_MIN_FLOATS
        assert!(batch * seq * dims >= PAR_MIN_FLOATS);
        let (h, mut m) = random_case(&mut rng, batch, seq, dims);
        // A mask with holes in the middle (not just right padding).
        m[5 * seq + 2] = 0;
        m[5 * seq + 3] = 0;
        let got = mean_pool(&h, &m, batch, seq, dims, true).unwrap();
        let want = reference(&h, &m, batch, seq, dims, true);
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() <= 1e-5, "{g} vs {w}");
        }
    }

    #[test]
    fn padded_rows_ignore_padding_values() {
        // Padding positions hold garbage: they must not leak into the mean.
        let h = vec![1.0, 2.0, 3.0, 4.0, 1e9, -1e9];
        let m = vec![1, 1, 0];
        let got = mean_pool(&h, &m, 1, 3, 2, false).unwrap();
        assert_eq!(got, vec![2.0, 3.0]);
        let got = mean_pool(&h, &m, 1, 3, 2, true).unwrap();
        let n = (4.0f32 + 9.0).sqrt();
        assert!((got[0] - 2.0 / n).abs() < 1e-7 && (got[1] - 3.0 / n).abs() < 1e-7);
        // A zero mean normalizes to zeros (no NaN).
        let got = mean_pool(&[1.0, -1.0, -1.0, 1.0], &[1, 1], 1, 2, 2, true).unwrap();
        assert_eq!(got, vec![0.0, 0.0]);
    }

    #[test]
    fn empty_and_errors() {
        assert!(mean_pool(&[], &[], 0, 7, 4, true).unwrap().is_empty());
        assert_eq!(mean_pool(&[], &[], 3, 0, 2, true).unwrap(), vec![0.0; 6]);
        // (hidden, attention_mask, batch, seq_len, dims, expected error or "ok")
        type Case<'a> = (&'a [f32], &'a [i64], usize, usize, usize, &'a str);
        let cases: [Case; 4] = [
            (&[0.0; 6], &[1, 1], 1, 2, 3, "ok"),
            (&[0.0; 5], &[1, 1], 1, 2, 3, "hidden has 5 values"),
            (&[0.0; 6], &[1], 1, 2, 3, "attention_mask has 1 values"),
            (&[], &[], 1, 0, 0, "dims must be at least 1"),
        ];
        for (h, m, b, s, d, msg) in cases {
            let r = mean_pool(h, m, b, s, d, false);
            if msg == "ok" {
                assert!(r.is_ok());
                continue;
            }
            let e = r.unwrap_err();
            assert_eq!(e.code(), ErrorCode::InvalidRequest);
            assert!(e.to_string().contains(msg), "{e}");
        }
        let e = mean_pool(&[], &[], usize::MAX, 2, 2, false).unwrap_err();
        assert!(e.to_string().contains("overflows"), "{e}");
    }
}
