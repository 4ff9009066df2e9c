//! The vector arena: every row's f32 values in fixed-size, page-aligned chunks that the scan
//! reads directly, allocated lazily, or mapped from the vectors file (the durable copy).

#[cfg(not(unix))]
use std::alloc::{alloc_zeroed, dealloc};
use std::alloc::Layout;
use std::ptr::NonNull;

/// Rows per vector chunk. A multiple of every scan block size.
pub const CHUNK_ROWS: usize = 16384;

/// One fixed-capacity, zero-initialised block of `CHUNK_ROWS × dims` f32, page aligned.
///
/// On Unix it is an anonymous mapping: pages are zero-filled lazily by the kernel (a small
/// store does not pay for a whole chunk). Transparent huge pages are left to the system's
/// policy, not requested: on the 2-core VM we measure on, faulting in fresh 2 MB pages of a
/// `madvise`d region ran at ~350 MB/s against ~2 GB/s for 4 KB pages (the host backs huge
/// free blocks lazily), which made a cold reopen of 1M memories ~1 s slower, while scans over
/// 4 KB pages measured as fast (see docs/storage.md).
struct Chunk {
    ptr: NonNull<f32>,
    floats: usize,
}

// SAFETY: a Chunk owns its allocation exclusively (like a Box<[f32]>), so it may move to
// another thread…
unsafe impl Send for Chunk {}
// SAFETY: …and shared access is read-only through &self while writes need &mut self, so the
// usual aliasing rules carry over.
unsafe impl Sync for Chunk {}

impl Chunk {
    fn bytes(floats: usize) -> usize {
        floats.max(16) * 4
    }

    #[cfg(unix)]
    fn new(floats: usize) -> Chunk {
        let len = Self::bytes(floats);
        // SAFETY: an anonymous private mapping with no address hint; the result is checked.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if p == libc::MAP_FAILED {
            std::alloc::handle_alloc_error(Layout::from_size_align(len, 4096).expect("chunk layout"));
        }
        Chunk { ptr: NonNull::new(p as *mut f32).expect("mmap returned null"), floats }
    }

    #[cfg(not(unix))]
    fn new(floats: usize) -> Chunk {
        let layout = Layout::from_size_align(Self::bytes(floats), 64).expect("chunk layout");
        // SAFETY: the layout has non-zero size; alloc_zeroed returns memory valid for
        // `floats` f32 (all-zero bytes are a valid f32) or null, which we check.
        let raw = unsafe { alloc_zeroed(layout) } as *mut f32;
        let ptr = NonNull::new(raw).unwrap_or_else(|| std::alloc::handle_alloc_error(layout));
        Chunk { ptr, floats }
    }

    /// Fault in the pages of floats `from..to` on another thread, so the thread that writes
    /// them next does not stall on page faults (zeroing, and on virtual machines the host
    /// backing fresh memory, which can cost milliseconds per huge page). Contents are not
    /// touched, so it is harmless whenever it runs, even after the chunk is gone.
    fn prefault(&self, from: usize, to: usize) {
        #[cfg(target_os = "linux")]
        {
            let start = (self.ptr.as_ptr() as usize + from * 4) & !4095;
            let end = self.ptr.as_ptr() as usize + to.min(self.floats) * 4;
            if end > start {
                let spawned = std::thread::Builder::new().name("memory-prefault".into()).spawn(move || {
                    // SAFETY: MADV_POPULATE_WRITE only faults pages in (write-faults without
                    // writing); on a range no longer mapped it fails with ENOMEM, ignored.
                    unsafe {
                        libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_POPULATE_WRITE);
                    }
                });
                drop(spawned); // best effort: without a thread the writer faults pages itself
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = (from, to);
    }

    /// A full chunk mapped privately from `file` at byte `offset` (a multiple of the page
    /// size), which must hold all `floats` values: the page cache's pages are used as they
    /// are (no zero-filled fresh memory, no copy), and a write to the chunk copies only the
    /// page written (copy-on-write; the file is never changed through it). `None` if the
    /// mapping fails.
    #[cfg(all(unix, target_endian = "little"))]
    fn map_file(file: &std::fs::File, offset: u64, floats: usize) -> Option<Chunk> {
        use std::os::fd::AsRawFd;
        let len = Self::bytes(floats);
        // SAFETY: a private mapping of an open file with no address hint; checked below. The
        // caller guarantees the file covers `floats` values, and the file is only ever
        // appended to (never truncated) while the store is open, so no access faults.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, file.as_raw_fd(), offset as libc::off_t)
        };
        (p != libc::MAP_FAILED).then(|| Chunk { ptr: NonNull::new(p as *mut f32).expect("mmap returned null"), floats })
    }

    /// Drop this process's page-table entries for a chunk mapped from the vectors file, so its
    /// rows stop counting in the process's resident set (they stay in the page cache and
    /// fault back in, from the file, when read). Only for a chunk whose rows the file holds
    /// exactly: copy-on-write pages (rows corrected at open) would be replaced by the file's
    /// bytes, which is harmless only once the file has been rewritten with the same values.
    /// Concurrent readers then read the same values from the file.
    fn release(&self) {
        #[cfg(target_os = "linux")]
        // SAFETY: advisory on the chunk's own mapping; with the file holding these exact
        // values (the caller's guarantee) no content changes.
        unsafe {
            libc::madvise(self.ptr.as_ptr() as *mut libc::c_void, Self::bytes(self.floats), libc::MADV_DONTNEED);
        }
    }

    fn as_slice(&self) -> &[f32] {
        // SAFETY: ptr is valid for `floats` initialised (zeroed) f32 for the life of self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.floats) }
    }
    fn as_mut_slice(&mut self) -> &mut [f32] {
        // SAFETY: as above, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.floats) }
    }
}

impl Drop for Chunk {
    #[cfg(unix)]
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping made in `new`.
        unsafe {
            libc::munmap(self.ptr.as_ptr() as *mut libc::c_void, Self::bytes(self.floats));
        }
    }
    #[cfg(not(unix))]
    fn drop(&mut self) {
        let layout = Layout::from_size_align(Self::bytes(self.floats), 64).expect("chunk layout");
        // SAFETY: allocated in `new` with this exact layout.
        unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
    }
}

/// Whether `dst` holds exactly the little-endian f32 bytes `src` (bit for bit).
#[inline]
fn le_f32_equal(dst: &[f32], src: &[u8]) -> bool {
    #[cfg(target_endian = "little")]
    {
        // SAFETY: plain f32 values viewed as their bytes (same memory and lifetime).
        src == unsafe { std::slice::from_raw_parts(dst.as_ptr() as *const u8, dst.len() * 4) }
    }
    #[cfg(target_endian = "big")]
    {
        src.len() == dst.len() * 4 && dst.iter().zip(src.chunks_exact(4)).all(|(d, s)| d.to_bits() == u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
}

/// Copy little-endian f32 bytes into floats (a plain memcpy on little-endian targets).
#[inline]
fn copy_le_f32(dst: &mut [f32], src: &[u8]) {
    assert_eq!(src.len(), dst.len() * 4);
    #[cfg(target_endian = "little")]
    // SAFETY: lengths checked above; f32 has no invalid bit patterns and the target stores
    // it little-endian, so the bytes are the values; the regions cannot overlap (&mut).
    unsafe {
        std::ptr::copy_nonoverlapping(src.as_ptr(), dst.as_mut_ptr() as *mut u8, src.len());
    }
    #[cfg(target_endian = "big")]
    for (d, s) in dst.iter_mut().zip(src.chunks_exact(4)) {
        *d = f32::from_le_bytes([s[0], s[1], s[2], s[3]]);
    }
}

/// Read exactly `buf.len()` bytes of `file` at `offset` (also the scrub's reader).
pub(super) fn read_at(file: &std::fs::File, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        std::os::unix::fs::FileExt::read_exact_at(file, buf, offset)
    }
    #[cfg(not(unix))]
    {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = file;
        f.seek(SeekFrom::Start(offset))?;
        f.read_exact(buf)
    }
}

/// Flat vector storage: row r lives at chunk r / CHUNK_ROWS, offset (r % CHUNK_ROWS) × dims.
pub struct Vectors {
    dims: usize,
    len: usize,
    chunks: Vec<Chunk>,
    /// Rows below this have been handed to [`Chunk::prefault`].
    prefaulted: usize,
    /// The first chunks, mapped from the vectors file (see [`Vectors::load_file`]).
    mapped_chunks: usize,
}

/// How far ahead of the last row [`Vectors`] has its pages faulted in, in rows (about 3 MB
/// at 384 dims); a new request goes out when half of it is used.
const PREFAULT_ROWS: usize = 2048;

impl Vectors {
    pub fn new(dims: usize) -> Self {
        Vectors { dims, len: 0, chunks: Vec::new(), prefaulted: 0, mapped_chunks: 0 }
    }
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Chunk and offset of the next row, allocating its chunk and faulting pages in ahead.
    fn next_slot(&mut self) -> (usize, usize) {
        let (c, o) = (self.len / CHUNK_ROWS, self.len % CHUNK_ROWS);
        if c == self.chunks.len() {
            self.chunks.push(Chunk::new(CHUNK_ROWS * self.dims));
        }
        if self.len + PREFAULT_ROWS / 2 >= self.prefaulted {
            let from = self.prefaulted.max(self.len);
            if from / CHUNK_ROWS == c {
                let to = (from + PREFAULT_ROWS).min((c + 1) * CHUNK_ROWS);
                self.chunks[c].prefault((from % CHUNK_ROWS) * self.dims, (to - c * CHUNK_ROWS) * self.dims);
                self.prefaulted = to;
            }
        }
        (c, o)
    }

    pub fn push(&mut self, v: &[f32]) {
        debug_assert_eq!(v.len(), self.dims);
        let (c, o) = self.next_slot();
        self.chunks[c].as_mut_slice()[o * self.dims..(o + 1) * self.dims].copy_from_slice(v);
        self.len += 1;
    }
    /// Add a row whose values are written later by [`Vectors::fill_le_bytes`] (zero until then).
    pub fn push_deferred(&mut self) {
        if self.len / CHUNK_ROWS == self.chunks.len() {
            self.chunks.push(Chunk::new(CHUNK_ROWS * self.dims));
        }
        self.len += 1;
    }

    /// Make room for `rows` rows in total (chunks allocated up front; `len` unchanged).
    pub fn reserve_rows(&mut self, rows: usize) {
        while self.chunks.len() * CHUNK_ROWS < rows {
            self.chunks.push(Chunk::new(CHUNK_ROWS * self.dims));
        }
    }

    /// Declare rows `0..len` written (after [`Vectors::fill_le_bytes`] on reserved chunks).
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.chunks.len() * CHUNK_ROWS);
        self.len = len;
    }

    /// Load rows `0..rows` from the vectors file (row r's f32 values at byte `r · dims · 4`,
    /// native little-endian) into the empty arena, with `len` rows in all (those past `rows`,
    /// which the file lacks, stay zero): whole chunks are mapped privately from the page
    /// cache instead of copied (where mapping works), the rest is read. Contents are
    /// unchecked: [`Vectors::rows_not_matching`] checks them against the log's checksums.
    pub fn load_file(&mut self, file: &std::fs::File, rows: usize, len: usize) {
        assert!(self.chunks.is_empty() && self.len == 0, "load_file needs an empty arena");
        assert!(rows <= len);
        #[cfg(all(unix, target_endian = "little"))]
        {
            let floats = CHUNK_ROWS * self.dims;
            for c in 0..rows / CHUNK_ROWS {
                match Chunk::map_file(file, (c * floats * 4) as u64, floats) {
                    Some(ch) => self.chunks.push(ch),
                    None => break,
                }
            }
            self.mapped_chunks = self.chunks.len();
        }
        self.reserve_rows(len);
        let from = self.mapped_chunks * CHUNK_ROWS;
        let dims = self.dims;
        let mut r = from;
        while r < rows {
            let end = rows.min((r / CHUNK_ROWS + 1) * CHUNK_ROWS);
            let (c, o) = (r / CHUNK_ROWS, r % CHUNK_ROWS);
            let dst = &mut self.chunks[c].as_mut_slice()[o * dims..(o + end - r) * dims];
            // SAFETY: plain f32 values viewed as their bytes, written whole by the read below.
            let bytes = unsafe { std::slice::from_raw_parts_mut(dst.as_mut_ptr() as *mut u8, dst.len() * 4) };
            if read_at(file, bytes, (r * dims * 4) as u64).is_err() {
                // Left zero: the checksums tell these rows from the log's.
                break;
            }
            r = end;
        }
        self.len = len;
    }

    /// The rows `k` (ascending, from `from`) whose bytes do not have crc32c `crcs[k]`,
    /// checked on all cores; rows before `from` and from `crcs.len()` on are not looked at.
    pub fn rows_not_matching(&self, crcs: &[u32], from: usize) -> Vec<usize> {
        use rayon::prelude::*;
        (from..crcs.len().min(self.len))
            .into_par_iter()
            .with_min_len(1024)
            .filter(|&k| {
                let row = self.row(k);
                // SAFETY: plain f32 values viewed as their bytes (same memory and lifetime).
                let b = unsafe { std::slice::from_raw_parts(row.as_ptr() as *const u8, row.len() * 4) };
                crc32c::crc32c(b) != crcs[k]
            })
            .collect()
    }

    /// Once the vectors file holds rows `0..file_rows` exactly (the writer wrote them, or
    /// replay found them equal to the log): map the whole chunks among them that are still
    /// anonymous memory from the file instead (their f32 leave RAM for the page cache), and
    /// release every whole mapped chunk from the resident set (see [`Chunk::release`]).
    /// Returns the chunks newly mapped.
    pub fn adopt_file(&mut self, file: &std::fs::File, file_rows: usize) -> usize {
        let whole = (file_rows / CHUNK_ROWS).min(self.len / CHUNK_ROWS);
        let mut adopted = 0;
        #[cfg(all(unix, target_endian = "little"))]
        while self.mapped_chunks < whole {
            let c = self.mapped_chunks;
            let floats = CHUNK_ROWS * self.dims;
            let Some(ch) = Chunk::map_file(file, (c * floats * 4) as u64, floats) else { break };
            // The old anonymous chunk is unmapped here; readers hold the state's read lock,
            // so none can be reading it while we hold `&mut self`.
            self.chunks[c] = ch;
            self.mapped_chunks += 1;
            adopted += 1;
        }
        let _ = file;
        self.release_mapped(file_rows);
        adopted
    }

    /// Release every whole mapped chunk below `file_rows` (rows the file holds exactly) from
    /// the resident set (see [`Chunk::release`]).
    pub fn release_mapped(&self, file_rows: usize) {
        let clean = (file_rows / CHUNK_ROWS).min(self.mapped_chunks);
        for ch in &self.chunks[..clean] {
            ch.release();
        }
    }

    /// Rows backed by the vectors file (see [`Vectors::load_file`]).
    pub fn mapped_rows(&self) -> usize {
        self.mapped_chunks * CHUNK_ROWS
    }

    /// Write rows from little-endian bytes, on all cores (one task per chunk). `rows` must be
    /// sorted by row. In chunks mapped from the vectors file, rows are compared instead and
    /// written only where they differ; returns the first such row, if any.
    pub fn fill_le_bytes(&mut self, rows: &[(u32, &[u8])]) -> Option<usize> {
        use rayon::prelude::*;
        let dims = self.dims;
        let mapped = self.mapped_chunks;
        self.chunks
            .par_iter_mut()
            .enumerate()
            .filter_map(|(c, chunk)| {
                let lo = rows.partition_point(|&(r, _)| (r as usize) < c * CHUNK_ROWS);
                let hi = rows.partition_point(|&(r, _)| (r as usize) < (c + 1) * CHUNK_ROWS);
                let dst = chunk.as_mut_slice();
                let mut first_diff = None;
                for &(r, b) in &rows[lo..hi] {
                    let o = (r as usize % CHUNK_ROWS) * dims;
                    if c < mapped {
                        if le_f32_equal(&dst[o..o + dims], b) {
                            continue;
                        }
                        first_diff = first_diff.or(Some(r as usize));
                    }
                    copy_le_f32(&mut dst[o..o + dims], b);
                }
                first_diff
            })
            .min()
    }

    /// Push a row given as little-endian f32 bytes (`dims × 4` of them).
    pub fn push_le_bytes(&mut self, b: &[u8]) {
        debug_assert_eq!(b.len(), self.dims * 4);
        let (c, o) = self.next_slot();
        let dst = &mut self.chunks[c].as_mut_slice()[o * self.dims..(o + 1) * self.dims];
        copy_le_f32(dst, b);
        self.len += 1;
    }

    /// Rows `start..end` as their native (little-endian) bytes, one slice per chunk they
    /// span: what the vectors file holds for them.
    pub fn rows_bytes(&self, start: usize, end: usize) -> Vec<&[u8]> {
        let mut out = Vec::new();
        let mut r = start;
        while r < end {
            let e = end.min((r / CHUNK_ROWS + 1) * CHUNK_ROWS);
            let f = self.rows(r, e);
            // SAFETY: plain f32 values viewed as their bytes (same memory, same lifetime).
            out.push(unsafe { std::slice::from_raw_parts(f.as_ptr() as *const u8, f.len() * 4) });
            r = e;
        }
        out
    }

    #[inline]
    pub fn row(&self, r: usize) -> &[f32] {
        let (c, o) = (r / CHUNK_ROWS, r % CHUNK_ROWS);
        &self.chunks[c].as_slice()[o * self.dims..(o + 1) * self.dims]
    }
    /// Rows `start..end` as one contiguous slice; the range must not cross a chunk boundary.
    #[inline]
    pub fn rows(&self, start: usize, end: usize) -> &[f32] {
        let c = start / CHUNK_ROWS;
        debug_assert!(end <= self.len && (end - 1) / CHUNK_ROWS == c);
        let o = start % CHUNK_ROWS;
        &self.chunks[c].as_slice()[o * self.dims..(o + end - start) * self.dims]
    }
    pub fn bytes(&self) -> usize {
        self.len * self.dims * 4
    }
}
