//! CPU time of the server under test (read from /proc at the measurement window's edges, by
//! the process that defines the window, so no IPC delay skews it) and of this process.

use std::fs;

#[derive(Clone, Copy, Default)]
pub struct Cpu {
    /// utime, stime of all threads, from /proc/<pid>/stat (clock-tick resolution).
    pub user_us: f64,
    pub system_us: f64,
    /// Sum over /proc/<pid>/task/*/schedstat of time on CPU (ns resolution; no user/system split).
    pub sched_ns: u64,
    /// Voluntary + involuntary context switches of all threads (/proc/<pid>/status of each task).
    pub ctx_switches: u64,
}

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// utime and stime of `pid` (all threads) from /proc/<pid>/stat.
fn process_stat(pid: i32) -> Cpu {
    let mut c = Cpu::default();
    if pid <= 0 {
        return c;
    }
    if let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) {
        // After ") ": state is field 3; utime and stime are fields 14 and 15.
        if let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) {
            let f: Vec<&str> = rest.split(' ').collect();
            let tick_us = 1e6 / clk_tck();
            c.user_us = f.get(11).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) * tick_us;
            c.system_us = f.get(12).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0) * tick_us;
        }
    }
    c
}

/// CPU of process `pid` (all threads); zeros when it cannot be read.
pub fn process(pid: i32) -> Cpu {
    let mut c = process_stat(pid);
    if pid <= 0 {
        return c;
    }
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            let p = t.path();
            if let Ok(s) = fs::read_to_string(p.join("schedstat")) {
                c.sched_ns += s.split(' ').next().and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
            }
            if let Ok(s) = fs::read_to_string(p.join("status")) {
                for line in s.lines() {
                    if let Some(v) = line.strip_prefix("voluntary_ctxt_switches:").or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:")) {
                        c.ctx_switches += v.trim().parse::<u64>().unwrap_or(0);
                    }
                }
            }
        }
    }
    c
}

/// This process's user and system CPU time, µs.
pub fn own() -> (f64, f64) {
    // SAFETY: rusage is plain integers (all-zero is valid); getrusage writes into it.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut ru);
        ru
    };
    let us = |t: libc::timeval| t.tv_sec as f64 * 1e6 + t.tv_usec as f64;
    (us(ru.ru_utime), us(ru.ru_stime))
}

/// Busy CPU time of the whole machine, µs (all CPUs; /proc/stat: user, nice, system, irq,
/// softirq, steal), so that what other processes ran during a window can be told apart.
pub fn machine_busy_us() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/stat") else { return 0.0 };
    let Some(line) = stat.lines().next().filter(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<f64> = line.split_whitespace().skip(1).map(|x| x.parse().unwrap_or(0.0)).collect();
    let busy = [0usize, 1, 2, 5, 6, 7].iter().map(|&i| f.get(i).copied().unwrap_or(0.0)).sum::<f64>();
    busy * 1e6 / clk_tck()
}

/// The kernel's softirq threads (ksoftirqd/N): loopback packets they process for the server
/// or this process are charged to them, not to either.
pub fn softirq_threads() -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(dir) = fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.starts_with("ksoftirqd/")) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Total CPU time (µs, /proc/<pid>/stat ticks) of `pids`.
pub fn sum_us(pids: &[i32]) -> f64 {
    pids.iter()
        .map(|&p| {
            let c = process_stat(p);
            c.user_us + c.system_us
        })
        .sum()
}
