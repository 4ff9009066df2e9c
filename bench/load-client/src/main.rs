//! Open-loop WebSocket load generator for `bench/bench-transport.js`.
//!
//! `load-client <host> <port> <path> <connections> <templates>` opens the connections (hand-made
//! upgrade, one after another), prints `ready <opened> <failed>`, then reads commands from
//! stdin, one per line:
//!
//! - `run rate=<req/s> warmup_ms= window_ms= tail_ms= drain_ms= max_requests= max_outstanding=
//!   tick_us= server_pid=` — open loop: request k is due at start + k/rate whatever the replies
//!   do, and goes out on connection k mod n. Its latency runs from that due time (not from
//!   when it was written), so a stalled server or generator is charged for every request it
//!   delayed (no coordinated omission). `rate=0 depth=<d>` runs a closed loop instead: `d`
//!   requests in flight per connection, each reply sending the next (for a maximum).
//!   Prints one JSON line: the window's counts, latency and send-lag percentiles, and CPU.
//! - `jitter count= sleep_us=` sleeps `count` times and reports how late it woke (the
//!   machine's scheduling jitter, a floor under every latency percentile measured here).
//! - `quit` (or end of input) exits.
//!
//! Between runs the connections are still served: pings answered, late replies read.
//!
//! `<templates>` is a file of request lines, each holding `{ID}` once; request k uses line
//! k mod lines with `{ID}` replaced by its id (ids grow across runs, so a late reply from an
//! earlier run is recognised). Replies are matched by the `"id":` in their first 200 bytes and
//! count as errors unless they start with `{"status":"success"`.
//!
//! The measurement window is `window_ms` after `warmup_ms`; sending goes on `tail_ms` past it
//! (so the window's last requests meet the same load), then replies are awaited up to
//! `drain_ms`. At the window's edges this process reads the server's CPU (`server_pid`, from
//! /proc) and its own (getrusage): it shares the machine with the server, so its cost is
//! reported too; so are the kernel's ksoftirqd threads and, as `other_cpu`, the rest of the
//! machine's busy time (/proc/stat), to tell a disturbed window. Requests due in the window
//! make the latency histogram (unanswered ones enter it at the time the run gave up on them);
//! replies received in it make the throughput. A request due while `max_outstanding` are
//! unanswered is not sent and counts as dropped.
//!
//! One thread, level-triggered epoll, `epoll_pwait2` with a timer slack of 1 µs; the wait
//! before the next due request is at least `tick_us`, so requests due within one tick go out
//! together (still one frame each, on their own connections).

mod cpu;
mod hist;
mod ws;

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use hist::Histogram;

struct Conn {
    stream: TcpStream,
    /// Frames not yet written (from `out_off`), and whether EPOLLOUT is armed for them.
    out: Vec<u8>,
    out_off: usize,
    polling_out: bool,
    dirty: bool,
    /// Bytes of an unfinished server frame carried over from the previous read.
    partial: Vec<u8>,
    open: bool,
}

struct Template {
    prefix: Vec<u8>,
    suffix: Vec<u8>,
}

fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Args {
    rate: f64,
    depth: usize,
    warmup_ms: u64,
    window_ms: u64,
    tail_ms: u64,
    drain_ms: u64,
    max_requests: usize,
    max_outstanding: usize,
    tick_us: u64,
    server_pid: i32,
}

fn parse_args(words: &[&str]) -> Result<Args, String> {
    let mut a = Args {
        rate: 0.0,
        depth: 0,
        warmup_ms: 1000,
        window_ms: 2000,
        tail_ms: 100,
        drain_ms: 5000,
        max_requests: 4_000_000,
        max_outstanding: 100_000,
        tick_us: 50,
        server_pid: 0,
    };
    for w in words {
        let (k, v) = w.split_once('=').ok_or(format!("expected key=value, got {w:?}"))?;
        let bad = format!("bad value for {k}: {v:?}");
        let int = || v.parse::<u64>().map_err(|_| bad.clone());
        match k {
            "rate" => a.rate = v.parse().map_err(|_| bad.clone())?,
            "depth" => a.depth = int()? as usize,
            "warmup_ms" => a.warmup_ms = int()?,
            "window_ms" => a.window_ms = int()?,
            "tail_ms" => a.tail_ms = int()?,
            "drain_ms" => a.drain_ms = int()?,
            "max_requests" => a.max_requests = int()? as usize,
            "max_outstanding" => a.max_outstanding = int()? as usize,
            "tick_us" => a.tick_us = int()?,
            "server_pid" => a.server_pid = int()? as i32,
            _ => return Err(format!("unknown key {k:?}")),
        }
    }
    if a.rate <= 0.0 && a.depth == 0 {
        return Err("rate=<req/s> (open loop) or depth=<n> (closed loop) is required".into());
    }
    if a.window_ms == 0 || a.window_ms > 600_000 || a.warmup_ms > 600_000 || a.drain_ms > 600_000 {
        return Err("window_ms must be 1..600000; warmup_ms and drain_ms at most 600000".into());
    }
    Ok(a)
}

fn set_events(ep: i32, c: &Conn, tag: usize, out: bool) {
    let bits = libc::EPOLLIN | if out { libc::EPOLLOUT } else { 0 };
    let mut ev = libc::epoll_event { events: bits as u32, u64: tag as u64 };
    // SAFETY: modifying the registration of a descriptor this process owns.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_MOD, c.stream.as_raw_fd(), &mut ev) };
}

/// Drops a connection the server closed or that failed; its unanswered requests stay so.
fn close(ep: i32, c: &mut Conn) {
    c.open = false;
    c.out.clear();
    c.out_off = 0;
    // SAFETY: removing a descriptor this process owns.
    unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), std::ptr::null_mut()) };
    let _ = c.stream.shutdown(std::net::Shutdown::Both);
}

/// Writes what the socket takes; arms EPOLLOUT while anything is left.
fn flush(ep: i32, c: &mut Conn, tag: usize) {
    c.dirty = false;
    while c.open && c.out_off < c.out.len() {
        match c.stream.write(&c.out[c.out_off..]) {
            Ok(n) => c.out_off += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return close(ep, c),
        }
    }
    if c.out_off == c.out.len() {
        c.out.clear();
        c.out_off = 0;
        if c.polling_out {
            c.polling_out = false;
            set_events(ep, c, tag, false);
        }
    } else {
        if c.out_off > 1 << 20 {
            c.out.drain(..c.out_off);
            c.out_off = 0;
        }
        if !c.polling_out {
            c.polling_out = true;
            set_events(ep, c, tag, true);
        }
    }
}

/// One read from a readable connection: answers pings, notes a close, and hands each text or
/// binary frame to `on_text`; returns how many of those it accepted (true).
fn read_conn(ep: i32, c: &mut Conn, buf: &mut [u8], mut on_text: impl FnMut(&[u8]) -> bool) -> usize {
    if !c.open {
        return 0;
    }
    let got = match c.stream.read(buf) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => return 0,
        Err(_) => 0,
    };
    let mut close_frame = got == 0;
    let mut accepted = 0usize;
    let mut pongs: Vec<Vec<u8>> = Vec::new();
    let mut handle = |op: u8, p: &[u8]| match op {
        0x1 | 0x2 => accepted += usize::from(on_text(p)),
        0x9 => pongs.push(p.to_vec()),
        0x8 => close_frame = true,
        _ => {}
    };
    if c.partial.is_empty() {
        let used = ws::frames(&buf[..got], &mut handle);
        c.partial.extend_from_slice(&buf[used..got]);
    } else {
        let mut data = std::mem::take(&mut c.partial);
        data.extend_from_slice(&buf[..got]);
        let used = ws::frames(&data, &mut handle);
        data.drain(..used);
        c.partial = data;
    }
    for p in pongs {
        ws::push_frame(&mut c.out, 0xA, &p, [0; 4]);
        c.dirty = true;
    }
    if close_frame {
        close(ep, c);
    }
    accepted
}

fn json_str(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() + 2);
    s.push('"');
    for ch in String::from_utf8_lossy(bytes).chars() {
        match ch {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            c if (c as u32) < 0x20 => s.push_str(&format!("\\u{:04x}", c as u32)),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// One run's bookkeeping: per request (index k = id − base) its due time, the time it was
/// written (0: dropped), and its latency once answered.
struct Run {
    base: u64,
    due: Vec<u64>,
    sent: Vec<u64>,
    latency: Vec<u64>,
    answered: Vec<bool>,
    outstanding: usize,
    in_window: bool,
    window_replies: u64,
    window_errors: u64,
    errors: u64,
    first_error: Option<String>,
    stale: u64,
    dropped: u64,
    reply_bytes: (usize, usize),
    sample: Option<Vec<u8>>,
    rng: u32,
    scratch: Vec<u8>,
}

impl Run {
    /// Queues request k (due at `due`) on connection `ci`; false when it was dropped.
    fn issue(&mut self, conns: &mut [Conn], tpl: &[Template], ci: usize, due: u64, now: u64, max_outstanding: usize) -> bool {
        let k = self.due.len();
        self.due.push(due);
        self.latency.push(0);
        self.answered.push(false);
        let c = &mut conns[ci];
        if !c.open || self.outstanding >= max_outstanding {
            self.sent.push(0);
            self.dropped += 1;
            return false;
        }
        self.sent.push(now);
        self.outstanding += 1;
        let id = self.base + k as u64;
        let t = &tpl[(id as usize) % tpl.len()];
        self.scratch.clear();
        self.scratch.extend_from_slice(&t.prefix);
        let _ = write!(self.scratch, "{id}");
        self.scratch.extend_from_slice(&t.suffix);
        // xorshift32: a fresh masking key per frame, as RFC 6455 asks of clients.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        ws::push_frame(&mut c.out, 0x1, &self.scratch, self.rng.to_le_bytes());
        c.dirty = true;
        true
    }

    /// Matches one reply; true when it answered a request of this run.
    fn reply(&mut self, p: &[u8], t: u64) -> bool {
        let head = &p[..p.len().min(200)];
        let Some(i) = ws::find(head, b"\"id\":") else {
            self.stale += 1;
            return false;
        };
        let mut id: u64 = 0;
        let mut digits = 0;
        for &b in &head[i + 5..] {
            if !b.is_ascii_digit() {
                break;
            }
            id = id * 10 + u64::from(b - b'0');
            digits += 1;
        }
        if digits == 0 || id < self.base || id - self.base >= self.due.len() as u64 {
            self.stale += 1;
            return false;
        }
        let k = (id - self.base) as usize;
        if self.answered[k] || self.sent[k] == 0 {
            self.stale += 1;
            return false;
        }
        self.answered[k] = true;
        self.outstanding -= 1;
        self.latency[k] = t.saturating_sub(self.due[k]);
        let ok = p.starts_with(b"{\"status\":\"success\"");
        if !ok {
            self.errors += 1;
            if self.first_error.is_none() {
                self.first_error = Some(String::from_utf8_lossy(&p[..p.len().min(300)]).into_owned());
            }
        }
        if self.in_window {
            self.window_replies += 1;
            if !ok {
                self.window_errors += 1;
            }
            self.reply_bytes = (self.reply_bytes.0.min(p.len()), self.reply_bytes.1.max(p.len()));
            if ok && self.sample.is_none() {
                self.sample = Some(p[..p.len().min(64 * 1024)].to_vec());
            }
        }
        true
    }
}

fn run(ep: i32, conns: &mut [Conn], tpl: &[Template], softirqd: &[i32], next_id: &mut u64, a: &Args) -> String {
    let n = conns.len();
    let closed_loop = a.rate <= 0.0;
    let ms = 1_000_000u64;
    let t0 = now_ns() + ms;
    let w0 = t0 + a.warmup_ms * ms;
    let w1 = w0 + a.window_ms * ms;
    let t_end = w1 + a.tail_ms * ms;
    let deadline = t_end + a.drain_ms * ms;
    let interval = if closed_loop { 0.0 } else { 1e9 / a.rate };
    let planned = if closed_loop { a.max_requests } else { (((t_end - t0) as f64 / interval).ceil() as usize).min(a.max_requests) };
    let due_of = |k: usize| t0 + (k as f64 * interval) as u64;
    let tick = a.tick_us * 1000;
    let mut r = Run {
        base: *next_id,
        due: Vec::with_capacity(if closed_loop { 1 << 16 } else { planned }),
        sent: Vec::with_capacity(if closed_loop { 1 << 16 } else { planned }),
        latency: Vec::with_capacity(if closed_loop { 1 << 16 } else { planned }),
        answered: Vec::with_capacity(if closed_loop { 1 << 16 } else { planned }),
        outstanding: 0,
        in_window: false,
        window_replies: 0,
        window_errors: 0,
        errors: 0,
        first_error: None,
        stale: 0,
        dropped: 0,
        reply_bytes: (usize::MAX, 0),
        sample: None,
        rng: 0x9e37_79b9 ^ (*next_id as u32 | 1),
        scratch: Vec::with_capacity(8192),
    };
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut phase = 0; // 0 warm-up, 1 window, 2 tail, 3 drain
    let (mut srv0, mut srv1) = (cpu::Cpu::default(), cpu::Cpu::default());
    let (mut own0, mut own1) = ((0.0, 0.0), (0.0, 0.0));
    let (mut all0, mut all1) = (0.0, 0.0);
    let (mut sirq0, mut sirq1) = (0.0, 0.0);
    let (mut w0a, mut w1a) = (0u64, 0u64);
    let mut started = false;
    let mut resend: Vec<usize> = Vec::new();
    let end;
    loop {
        let now = now_ns();
        if phase == 0 && now >= w0 {
            all0 = cpu::machine_busy_us();
            sirq0 = cpu::sum_us(softirqd);
            srv0 = cpu::process(a.server_pid);
            own0 = cpu::own();
            w0a = now_ns();
            phase = 1;
            r.in_window = true;
        }
        if phase == 1 && now >= w1 {
            all1 = cpu::machine_busy_us();
            sirq1 = cpu::sum_us(softirqd);
            srv1 = cpu::process(a.server_pid);
            own1 = cpu::own();
            w1a = now_ns();
            phase = 2;
            r.in_window = false;
        }
        if phase == 2 && now >= t_end {
            phase = 3;
        }
        if phase == 3 && (r.outstanding == 0 || now >= deadline) {
            end = now;
            break;
        }
        if closed_loop {
            if !started && now >= t0 {
                started = true;
                for ci in 0..n {
                    for _ in 0..a.depth {
                        r.issue(conns, tpl, ci, now, now, usize::MAX);
                    }
                }
            }
        } else if phase < 3 {
            let mut k = r.due.len();
            while k < planned && due_of(k) <= now {
                r.issue(conns, tpl, k % n, due_of(k), now, a.max_outstanding);
                k += 1;
            }
        }
        for (ci, c) in conns.iter_mut().enumerate() {
            if c.dirty {
                flush(ep, c, ci);
            }
        }

        let mut wake = deadline;
        match phase {
            0 => wake = wake.min(w0),
            1 => wake = wake.min(w1),
            2 => wake = wake.min(t_end),
            _ => {}
        }
        if closed_loop && !started {
            wake = wake.min(t0);
        }
        if !closed_loop && phase < 3 && r.due.len() < planned {
            wake = wake.min(due_of(r.due.len()).max(now + tick));
        }
        let wait = wake.saturating_sub(now_ns());
        let ts = libc::timespec { tv_sec: (wait / 1_000_000_000) as i64, tv_nsec: (wait % 1_000_000_000) as i64 };
        // SAFETY: `events` has room for its length; `ts` outlives the call.
        let k = unsafe { libc::epoll_pwait2(ep, events.as_mut_ptr(), events.len() as i32, &ts, std::ptr::null()) };
        if k < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_pwait2: {}", io::Error::last_os_error());
        }
        let t = now_ns();
        for ev in &events[..k as usize] {
            let ci = ev.u64 as usize;
            let bits = ev.events;
            if bits & libc::EPOLLOUT as u32 != 0 {
                flush(ep, &mut conns[ci], ci);
            }
            if bits & (libc::EPOLLIN | libc::EPOLLHUP | libc::EPOLLERR) as u32 == 0 {
                continue;
            }
            let answered = read_conn(ep, &mut conns[ci], &mut buf, |p| r.reply(p, t));
            if closed_loop && phase < 3 {
                resend.extend(std::iter::repeat_n(ci, answered));
            }
        }
        for ci in resend.drain(..) {
            if r.due.len() < a.max_requests {
                r.issue(conns, tpl, ci, t, t, usize::MAX);
            }
        }
    }
    *next_id = r.base + r.due.len() as u64 + 1;
    if w1a == 0 {
        // Ended before the window closed (max_requests reached in a closed loop is not possible
        // before it; this is a drain timeout during it): close the window now.
        all1 = cpu::machine_busy_us();
        sirq1 = cpu::sum_us(softirqd);
        srv1 = cpu::process(a.server_pid);
        own1 = cpu::own();
        w1a = end;
    }

    let mut lat = Histogram::new();
    let mut lag = Histogram::new();
    let (mut due_in_window, mut dropped_in_window, mut unanswered_in_window) = (0u64, 0u64, 0u64);
    for k in 0..r.due.len() {
        let d = r.due[k];
        if d < w0a || d >= w1a {
            continue;
        }
        due_in_window += 1;
        if r.sent[k] == 0 {
            dropped_in_window += 1;
        } else if r.answered[k] {
            lat.record(r.latency[k]);
            lag.record(r.sent[k] - d);
        } else {
            unanswered_in_window += 1;
            lat.record(end - d);
            lag.record(r.sent[k] - d);
        }
    }
    let unanswered = r.sent.iter().zip(&r.answered).filter(|(s, a)| **s != 0 && !**a).count();
    let win_s = (w1a - w0a) as f64 / 1e9;
    let srv_sched_us = srv1.sched_ns.saturating_sub(srv0.sched_ns) as f64 / 1e3;
    let srv_us = srv1.user_us - srv0.user_us + srv1.system_us - srv0.system_us;
    let own_us = own1.0 - own0.0 + own1.1 - own0.1;
    // What the rest of the machine ran in the window (other engineers' builds, the bench's Node
    // parent): tick-granular, so only a guide (a few % of a core either way).
    let sirq_us = sirq1 - sirq0;
    let other_us = (all1 - all0 - srv_us - own_us - sirq_us).max(0.0);
    let per = |x: f64| if r.window_replies > 0 { x / r.window_replies as f64 } else { 0.0 };
    let (bmin, bmax) = if r.window_replies > 0 { r.reply_bytes } else { (0, 0) };
    format!(
        concat!(
            "{{\"mode\":\"{}\",\"offered_per_s\":{:.1},\"depth\":{},\"connections\":{},\"open_connections\":{},",
            "\"window_s\":{:.6},\"due_in_window\":{},\"offered_in_window_per_s\":{:.1},\"replies_in_window\":{},\"achieved_per_s\":{:.1},",
            "\"errors_in_window\":{},\"errors\":{},\"first_error\":{},\"dropped_in_window\":{},\"dropped\":{},",
            "\"unanswered_in_window\":{},\"unanswered\":{},\"stale_replies\":{},\"requests\":{},\"planned\":{},",
            "\"latency\":{},\"send_lag\":{},",
            "\"server_cpu\":{{\"user_us\":{:.0},\"system_us\":{:.0},\"total_us\":{:.0},\"sched_us\":{:.0},\"ctx_switches\":{},",
            "\"us_per_reply\":{:.4},\"sched_us_per_reply\":{:.4},\"user_us_per_reply\":{:.4},\"system_us_per_reply\":{:.4},\"utilization\":{:.4}}},",
            "\"client_cpu\":{{\"user_us\":{:.0},\"system_us\":{:.0},\"us_per_reply\":{:.4},\"utilization\":{:.4}}},",
            "\"softirqd_cpu\":{{\"us\":{:.0},\"utilization\":{:.4}}},\"other_cpu\":{{\"us\":{:.0},\"utilization\":{:.4}}},",
            "\"reply_bytes\":{{\"min\":{},\"max\":{}}},\"sample_reply\":{}}}"
        ),
        if closed_loop { "closed" } else { "open" },
        a.rate,
        a.depth,
        n,
        conns.iter().filter(|c| c.open).count(),
        win_s,
        due_in_window,
        due_in_window as f64 / win_s,
        r.window_replies,
        r.window_replies as f64 / win_s,
        r.window_errors,
        r.errors,
        r.first_error.as_deref().map_or("null".into(), |e| json_str(e.as_bytes())),
        dropped_in_window,
        r.dropped,
        unanswered_in_window,
        unanswered,
        r.stale,
        r.due.len(),
        planned,
        lat.json_us(),
        lag.json_us(),
        srv1.user_us - srv0.user_us,
        srv1.system_us - srv0.system_us,
        srv_us,
        srv_sched_us,
        srv1.ctx_switches.saturating_sub(srv0.ctx_switches),
        per(srv_us),
        per(srv_sched_us),
        per(srv1.user_us - srv0.user_us),
        per(srv1.system_us - srv0.system_us),
        srv_sched_us / 1e6 / win_s,
        own1.0 - own0.0,
        own1.1 - own0.1,
        per(own_us),
        own_us / 1e6 / win_s,
        sirq_us,
        sirq_us / 1e6 / win_s,
        other_us,
        other_us / 1e6 / win_s,
        bmin,
        bmax,
        r.sample.as_deref().map_or("null".into(), json_str),
    )
}

/// `jitter count=<n> sleep_us=<µs>`: how late this process wakes from `n` sleeps of `sleep_us`
/// with nothing else to do, the machine's own floor under every latency percentile here.
fn jitter(words: &[&str]) -> String {
    let (mut count, mut sleep_us) = (20_000u64, 50u64);
    for w in words {
        match w.split_once('=') {
            Some(("count", v)) => count = v.parse().unwrap_or(count).min(1_000_000),
            Some(("sleep_us", v)) => sleep_us = v.parse().unwrap_or(sleep_us).min(100_000),
            _ => return format!("{{\"error\":{}}}", json_str(format!("bad argument {w}").as_bytes())),
        }
    }
    let mut late = Histogram::new();
    let d = std::time::Duration::from_micros(sleep_us);
    for _ in 0..count {
        let t = now_ns();
        std::thread::sleep(d);
        late.record((now_ns() - t).saturating_sub(sleep_us * 1000));
    }
    format!("{{\"sleep_us\":{sleep_us},\"late\":{}}}", late.json_us())
}

fn load_templates(path: &str) -> Vec<Template> {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let tpl: Vec<Template> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let i = ws::find(l, b"{ID}").unwrap_or_else(|| panic!("{path}: a line without {{ID}}"));
            Template { prefix: l[..i].to_vec(), suffix: l[i + 4..].to_vec() }
        })
        .collect();
    assert!(!tpl.is_empty(), "{path}: no request lines");
    tpl
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 6 {
        eprintln!("usage: load-client <host> <port> <path> <connections> <templates-file>");
        std::process::exit(2);
    }
    let (host, path) = (args[1].as_str(), args[3].as_str());
    let port: u16 = args[2].parse().expect("port");
    let n: usize = args[4].parse().expect("connections");
    let tpl = load_templates(&args[5]);
    let softirqd = cpu::softirq_threads();
    // SAFETY: prctl with an integer argument; a 1 µs timer slack lets epoll_pwait2 wake on time.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong) };

    let mut conns = Vec::with_capacity(n);
    let mut failed = 0usize;
    for _ in 0..n {
        match ws::connect(host, port, path) {
            Ok((stream, partial)) => conns.push(Conn { stream, out: Vec::new(), out_off: 0, polling_out: false, dirty: false, partial, open: true }),
            Err(_) => failed += 1,
        }
    }
    // SAFETY: plain epoll calls on descriptors this process owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    for (i, c) in conns.iter().enumerate() {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: i as u64 };
        // SAFETY: see above.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, c.stream.as_raw_fd(), &mut ev) };
    }
    let out = io::stdout();
    let say = |s: &str| {
        let mut o = out.lock();
        let _ = writeln!(o, "{s}");
        let _ = o.flush();
    };
    say(&format!("ready {} {failed}", conns.len()));

    // Between runs the connections are still served (pings answered, late replies read), so
    // a server's keep-alive does not drop them; stdin is out of the set during a run.
    const STDIN: u64 = u64::MAX;
    let stdin_ctl = |op: i32| {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: STDIN };
        // SAFETY: registering descriptor 0, which this process owns.
        unsafe { libc::epoll_ctl(ep, op, 0, &mut ev) };
    };
    stdin_ctl(libc::EPOLL_CTL_ADD);
    let mut next_id: u64 = 1;
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut line = Vec::new();
    loop {
        // SAFETY: `events` has room for its length.
        let k = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if k < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {}", io::Error::last_os_error());
        }
        let mut commands = Vec::new();
        for ev in &events[..k as usize] {
            if ev.u64 == STDIN {
                let mut b = [0u8; 4096];
                // SAFETY: reading into a local buffer.
                let got = unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) };
                if got <= 0 {
                    return;
                }
                line.extend_from_slice(&b[..got as usize]);
                while let Some(nl) = line.iter().position(|&x| x == b'\n') {
                    let l: Vec<u8> = line.drain(..=nl).collect();
                    commands.push(String::from_utf8_lossy(&l).trim().to_string());
                }
                continue;
            }
            let ci = ev.u64 as usize;
            if ev.events & libc::EPOLLOUT as u32 != 0 {
                flush(ep, &mut conns[ci], ci);
            }
            read_conn(ep, &mut conns[ci], &mut buf, |_| false);
            if conns[ci].dirty {
                flush(ep, &mut conns[ci], ci);
            }
        }
        for cmd in commands {
            let words: Vec<&str> = cmd.split_whitespace().collect();
            match words.first().copied() {
                Some("run") => match parse_args(&words[1..]) {
                    Ok(_) if !conns.iter().any(|c| c.open) => say("{\"error\":\"no open connections\"}"),
                    Ok(a) => {
                        stdin_ctl(libc::EPOLL_CTL_DEL);
                        let report = run(ep, &mut conns, &tpl, &softirqd, &mut next_id, &a);
                        stdin_ctl(libc::EPOLL_CTL_ADD);
                        say(&report);
                    }
                    Err(e) => say(&format!("{{\"error\":{}}}", json_str(e.as_bytes()))),
                },
                Some("jitter") => say(&jitter(&words[1..])),
                Some("quit") => return,
                None => {}
                Some(c) => say(&format!("{{\"error\":{}}}", json_str(format!("unknown command {c}").as_bytes()))),
            }
        }
    }
}
