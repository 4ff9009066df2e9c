//! Intel AMX kernel for the exact int8 pre-pass of [`super::super::q8`]: one `tdpbusd`
//! multiplies a tile of 16 queries × 64 dims (u8) by 64 dims × 16 rows (i8) into 16 × 16
//! exact i32 dots — 16,384 products per instruction, against 64 for an AVX-512 `vpdpbusd`.
//!
//! The row panels need no repacking: a panel stores, for each group of 4 dims, the 16 rows'
//! 4 bytes side by side, so 16 groups (64 dims) of one panel are 1,024 contiguous bytes laid
//! out exactly as AMX's B operand (16 rows of 64 bytes, each row = 16 columns × 4 bytes).
//!
//! AMX needs the CPU bits (AMX-TILE, AMX-INT8) and, on Linux, the process's permission to use
//! the 8 KB tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), requested once
//! by [`available`]. Tiles are released after every call, so a thread that is switched out
//! between passes saves no tile data.

#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::asm;

use super::super::q8::{PAD, PANEL};

const _: () = assert!(PANEL == 16 && PAD == 64);

/// Whether the AMX kernel can run in this process (CPU support and, on Linux, the tile-data
/// permission, requested here once).
pub(in super::super) fn available() -> bool {
    static OK: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OK.get_or_init(|| {
        // CPUID.(7,0):EDX bit 24 = AMX-TILE, bit 25 = AMX-INT8.
        if core::arch::x86_64::__cpuid(0).eax < 7 {
            return false;
        }
        let edx = core::arch::x86_64::__cpuid_count(7, 0).edx;
        if edx & (1 << 24) == 0 || edx & (1 << 25) == 0 {
            return false;
        }
        request_permission()
    })
}

#[cfg(target_os = "linux")]
fn request_permission() -> bool {
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain syscall; it only changes which xsave features this process may use.
    unsafe { libc::syscall(libc::SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn request_permission() -> bool {
    false
}

/// The 64-byte operand of `ldtilecfg` (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

/// tmm0, tmm3: accumulators (queries × 16 rows i32); tmm1: queries (u8); tmm2, tmm4: panels.
fn config(queries: usize) -> TileConfig {
    let mut c = TileConfig { palette: 1, start_row: 0, reserved: [0; 14], colsb: [0; 16], rows: [0; 16] };
    for t in [0, 1, 3] {
        c.rows[t] = queries as u8;
        c.colsb[t] = 64;
    }
    for t in [2, 4] {
        c.rows[t] = 16;
        c.colsb[t] = 64;
    }
    c
}

/// # Safety
/// AMX available (see [`available`]); `q` valid for `nq` queries of `dpad` bytes, `p` for
/// `np` panels of `16·dpad` bytes, `out` for `nq · np · 16` i32; `dpad` a multiple of 64.
unsafe fn panels(q: *const u8, nq: usize, p: *const i8, np: usize, dpad: usize, out: *mut i32) {
    let ostride = np * PANEL * 4; // bytes between the output rows of two queries
    let psize = PANEL * dpad;
    let ksteps = dpad / 64;
    let mut qi = 0;
    while qi < nq {
        let mq = (nq - qi).min(16);
        let cfg = config(mq);
        // SAFETY: (all asm below) AMX is available; every tile load reads `mq` query rows of
        // 64 bytes at stride `dpad` inside the queries, or 1,024 contiguous bytes inside one
        // panel (`k < ksteps`); every store writes `mq` rows of 16 i32 inside `out`.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) &cfg, options(nostack, readonly));
            let a0 = q.add(qi * dpad);
            let mut pi = 0;
            while pi + 2 <= np {
                let b0 = p.add(pi * psize);
                let b1 = b0.add(psize);
                asm!("tilezero tmm0", "tilezero tmm3", options(nostack, nomem));
                for k in 0..ksteps {
                    asm!(
                        "tileloadd tmm1, [{a} + {astride}*1]",
                        "tileloadd tmm2, [{b0} + {bstride}*1]",
                        "tileloadd tmm4, [{b1} + {bstride}*1]",
                        "tdpbusd tmm0, tmm1, tmm2",
                        "tdpbusd tmm3, tmm1, tmm4",
                        a = in(reg) a0.add(k * 64),
                        astride = in(reg) dpad,
                        b0 = in(reg) b0.add(k * 1024),
                        b1 = in(reg) b1.add(k * 1024),
                        bstride = in(reg) 64usize,
                        options(nostack, readonly),
                    );
                }
                let o = out.add(qi * np * PANEL + pi * PANEL);
                asm!(
                    "tilestored [{o0} + {s}*1], tmm0",
                    "tilestored [{o1} + {s}*1], tmm3",
                    o0 = in(reg) o,
                    o1 = in(reg) o.add(PANEL),
                    s = in(reg) ostride,
                    options(nostack),
                );
                pi += 2;
            }
            if pi < np {
                let b0 = p.add(pi * psize);
                asm!("tilezero tmm0", options(nostack, nomem));
                for k in 0..ksteps {
                    asm!(
                        "tileloadd tmm1, [{a} + {astride}*1]",
                        "tileloadd tmm2, [{b0} + {bstride}*1]",
                        "tdpbusd tmm0, tmm1, tmm2",
                        a = in(reg) a0.add(k * 64),
                        astride = in(reg) dpad,
                        b0 = in(reg) b0.add(k * 1024),
                        bstride = in(reg) 64usize,
                        options(nostack, readonly),
                    );
                }
                let o = out.add(qi * np * PANEL + pi * PANEL);
                asm!("tilestored [{o} + {s}*1], tmm0", o = in(reg) o, s = in(reg) ostride, options(nostack));
            }
        }
        qi += mq;
    }
    // SAFETY: AMX is available; releases the tile state of this thread.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Safe entry point: handed out only after [`available`] (see `q8::kernel`).
pub(in super::super) fn dot_panels_amx(queries: &[u8], nq: usize, panels_: &[i8], np: usize, dpad: usize, out: &mut [i32]) {
    assert!(dpad.is_multiple_of(PAD), "dpad must be a multiple of {PAD}");
    assert!(queries.len() >= nq * dpad && panels_.len() >= np * PANEL * dpad && out.len() >= nq * np * PANEL, "q8 panels: slices too short");
    assert!(available(), "AMX not available");
    if nq == 0 || np == 0 {
        return;
    }
    // SAFETY: AMX available and permitted (checked above); lengths checked above.
    unsafe { panels(queries.as_ptr(), nq, panels_.as_ptr(), np, dpad, out.as_mut_ptr()) }
}
