//! Baselines for the benchmarks (`bench/bench-search.js`): the machine's read bandwidth and
//! peak FP32 rate, measured with the same kernel table the scans use. Built only with the
//! `bench` feature (the benchmarks' own build of the addon, see `bench/lib/bench-addon.js`).

use memory_core::search::{init_scan_pool, kernels};
use napi::bindgen_prelude::*;
use napi_derive::napi;
use rayon::prelude::*;

/// Anonymous mapping for the bandwidth baseline, with 4 KB pages (`MADV_NOHUGEPAGE`) like the
/// store's vector chunks: a buffer from the global allocator can land on transparent huge
/// pages (mimalloc asks for them), whose fewer TLB misses read ~10% faster here than the
/// memory the scans read.
struct BandwidthBuf {
    ptr: *mut f32,
    floats: usize,
}

// SAFETY: the mapping is owned by the struct (nothing else holds the pointer) and only
// accessed under the mutex in `bench_read_bandwidth`, so it may move between threads.
unsafe impl Send for BandwidthBuf {}

impl BandwidthBuf {
    fn new(floats: usize) -> Option<Self> {
        let len = floats * 4;
        // SAFETY: a fresh private anonymous mapping with no address hint (touches no existing
        // memory); the result is checked before use.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        if p == libc::MAP_FAILED {
            return None;
        }
        // SAFETY: advisory only (the paging policy of the mapping just made, `len` bytes).
        unsafe { libc::madvise(p, len, libc::MADV_NOHUGEPAGE) };
        let ptr = p as *mut f32;
        // SAFETY: the mapping is `floats * 4` bytes, readable and writable, page aligned (so
        // aligned for f32), zero-filled (a valid f32) and referenced by nothing else yet.
        unsafe { std::slice::from_raw_parts_mut(ptr, floats) }.fill(1.0);
        Some(Self { ptr, floats })
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: `floats` initialized f32s, mapped until drop; only read through &self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.floats) }
    }
}

impl Drop for BandwidthBuf {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`; no slice of it outlives self.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.floats * 4) };
    }
}

/// Sum of a large array with the bandwidth kernel on both cores: the read-bandwidth
/// baseline for search benchmarks. Returns seconds taken (best of `repeat`). The array is
/// kept between calls of the same size, so a benchmark can alternate this with the pass it
/// compares (`floats = 0` frees it). It is mapped with 4 KB pages, like the store's vectors.
#[napi]
pub fn bench_read_bandwidth(floats: u32, repeat: u32) -> Result<f64> {
    static BUF: std::sync::Mutex<Option<BandwidthBuf>> = std::sync::Mutex::new(None);
    // The scans' pool (threads at the scans' priority), as in the product.
    init_scan_pool();
    let mut buf = BUF.lock().unwrap_or_else(|e| e.into_inner());
    if floats == 0 {
        *buf = None;
        return Ok(0.0);
    }
    if buf.as_ref().is_none_or(|b| b.floats != floats as usize) {
        *buf = None;
        *buf = Some(BandwidthBuf::new(floats as usize).ok_or_else(|| Error::from_reason("benchReadBandwidth: mmap failed"))?);
    }
    let data = buf.as_ref().expect("set above").as_slice();
    let k = kernels();
    let mut best = f64::INFINITY;
    let mut acc = 0.0f32;
    for _ in 0..repeat.max(1) {
        let t = std::time::Instant::now();
        acc += data.par_chunks(1 << 18).map(|c| (k.sum)(c)).sum::<f32>();
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(acc);
    Ok(best)
}

/// The machine's measured peak FP32 rate with the FMA kernel on both cores (FLOP/s).
#[napi]
pub fn bench_peak_flops(iters: u32) -> f64 {
    init_scan_pool();
    let k = kernels();
    let threads = rayon::current_num_threads().max(1);
    let t = std::time::Instant::now();
    let r: f32 = (0..threads).into_par_iter().map(|_| (k.fma_peak)(iters as u64)).sum();
    std::hint::black_box(r);
    let secs = t.elapsed().as_secs_f64();
    (threads as f64 * iters as f64 * k.fma_flops_per_iter as f64) / secs
}
