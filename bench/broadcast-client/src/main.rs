//! Broadcast receipt clients for `bench/bench-broadcast.js`.
//!
//! `broadcast-client <host> <port> <path> <n>` opens `n` WebSocket connections (hand-made
//! upgrade, one after another), prints `ready <opened> <failed>`, then waits on epoll for
//! server frames. Every text or binary frame whose payload head carries
//! `"type":"bench_broadcast"` is counted under its `"seq":<n>`, stamped with CLOCK_MONOTONIC
//! (milliseconds, the clock of Node's `process.hrtime`) right after the read that completed
//! it. Pings are answered with pongs; close frames close the socket.
//!
//! Commands on stdin, one per line: `report` prints
//! `{"open":N,"receipts":{"<seq>":{"count":C,"first":MS,"last":MS},…}}`; `poll <µs>` makes
//! the client sleep that long before each `epoll_wait` (0, the start value: block in it),
//! answering `ok poll <µs>`; `quit` or end of input exits.
//!
//! One thread, one shared read buffer, level-triggered epoll: the receipt costs a read
//! syscall and a few byte comparisons, so the clients take as little of the machine's CPU
//! as they can while sharing it with the server they measure.
//!
//! Why `poll`: on loopback the server's send runs the receiving side's TCP input and, when
//! the receiving process sleeps in `epoll_wait`, its wake-up — inside the server's syscall,
//! on the server's CPU time. A client that blocks in `epoll_wait` is always faster than the
//! server and so sleeps between almost every two frames: perf shows ~20% of the server's
//! broadcast CPU in that wake-up path. Polling every few hundred µs (as an interrupt-
//! coalescing receiver would) leaves the ready list to fill without wake-ups; each receipt is
//! then stamped up to that much later, which counts against the server.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

// The WebSocket frame parsing shared with the load generator (one copy of the framing code).
#[allow(dead_code)] // this client does not send data frames (`push_frame`)
#[path = "../../load-client/src/ws.rs"]
mod ws;
use ws::find;

const TYPE_TAG: &[u8] = b"\"type\":\"bench_broadcast\"";
const SEQ_TAG: &[u8] = b"\"seq\":";
const HEAD: usize = 400;

struct Client {
    stream: TcpStream,
    /// Bytes of an unfinished frame carried over from the previous read.
    partial: Vec<u8>,
    open: bool,
}

struct Receipt {
    count: u64,
    first: f64,
    last: f64,
}

fn now_ms() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6
}


fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: valid pointers to an rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn open_one(host: &str, port: u16, path: &str) -> io::Result<Client> {
    let (stream, partial) = ws::connect(host, port, path)?;
    Ok(Client { stream, partial, open: true })
}

fn record(receipts: &mut BTreeMap<i64, Receipt>, payload: &[u8], t: f64) {
    let head = &payload[..payload.len().min(HEAD)];
    if find(head, TYPE_TAG).is_none() {
        return;
    }
    let mut seq: i64 = -1;
    if let Some(i) = find(head, SEQ_TAG) {
        seq = 0;
        for &b in &payload[i + SEQ_TAG.len()..] {
            if !b.is_ascii_digit() {
                break;
            }
            seq = seq * 10 + i64::from(b - b'0');
        }
    }
    let r = receipts.entry(seq).or_insert(Receipt { count: 0, first: t, last: t });
    r.count += 1;
    r.first = r.first.min(t);
    r.last = r.last.max(t);
}

/// Handles the complete server frames at the start of `buf`; returns the bytes consumed.
fn frames(c: &mut Client, buf: &[u8], receipts: &mut BTreeMap<i64, Receipt>, t: f64) -> usize {
    ws::frames(buf, |op, p| match op {
        0x1 | 0x2 => record(receipts, p, t),
        0x9 if p.len() <= 125 => {
            // Pong with the ping's payload, masked with a zero key (payload unchanged).
            let mut pong = Vec::with_capacity(6 + p.len());
            pong.extend_from_slice(&[0x8a, 0x80 | p.len() as u8, 0, 0, 0, 0]);
            pong.extend_from_slice(p);
            let _ = c.stream.write_all(&pong);
        }
        0x8 => c.open = false,
        _ => {}
    })
}

fn report(clients: &[Client], receipts: &BTreeMap<i64, Receipt>) -> String {
    let open = clients.iter().filter(|c| c.open).count();
    let body: Vec<String> = receipts
        .iter()
        .map(|(seq, r)| format!("\"{seq}\":{{\"count\":{},\"first\":{:.4},\"last\":{:.4}}}", r.count, r.first, r.last))
        .collect();
    format!("{{\"open\":{open},\"receipts\":{{{}}}}}\n", body.join(","))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: broadcast-client <host> <port> <path> <n>");
        std::process::exit(2);
    }
    let host = args[1].as_str();
    let port: u16 = args[2].parse().expect("port");
    let path = args[3].as_str();
    let n: usize = args[4].parse().expect("n");
    raise_fd_limit();

    let mut clients = Vec::with_capacity(n);
    let mut failed = 0usize;
    for _ in 0..n {
        match open_one(host, port, path) {
            Ok(c) => clients.push(c),
            Err(_) => failed += 1,
        }
    }
    let out = io::stdout();
    {
        let mut o = out.lock();
        let _ = writeln!(o, "ready {} {}", clients.len(), failed);
        let _ = o.flush();
    }

    // SAFETY: plain epoll calls on descriptors this process owns.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(ep >= 0, "epoll_create1");
    const STDIN: u64 = u64::MAX;
    let add = |fd: i32, tag: u64| {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: tag };
        // SAFETY: see above.
        unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) }
    };
    add(0, STDIN);
    for (i, c) in clients.iter().enumerate() {
        add(c.stream.as_raw_fd(), i as u64);
    }

    let mut receipts: BTreeMap<i64, Receipt> = BTreeMap::new();
    // Frames left in a client's upgrade read (none expected) count as received at start.
    let t0 = now_ms();
    for c in clients.iter_mut() {
        if !c.partial.is_empty() {
            let data = std::mem::take(&mut c.partial);
            let used = frames(c, &data, &mut receipts, t0);
            c.partial = data[used..].to_vec();
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
    let mut stdin_line = Vec::new();
    let mut poll_us: u64 = 0;
    loop {
        if poll_us > 0 {
            std::thread::sleep(std::time::Duration::from_micros(poll_us));
        }
        // SAFETY: `events` has room for its length.
        let k = unsafe { libc::epoll_wait(ep, events.as_mut_ptr(), events.len() as i32, -1) };
        if k < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("epoll_wait: {}", io::Error::last_os_error());
        }
        for ev in &events[..k as usize] {
            let tag = ev.u64;
            if tag == STDIN {
                let mut b = [0u8; 256];
                // SAFETY: reading into a local buffer.
                let r = unsafe { libc::read(0, b.as_mut_ptr().cast(), b.len()) };
                if r <= 0 {
                    return;
                }
                stdin_line.extend_from_slice(&b[..r as usize]);
                while let Some(nl) = stdin_line.iter().position(|&x| x == b'\n') {
                    let line: Vec<u8> = stdin_line.drain(..=nl).collect();
                    match std::str::from_utf8(&line).unwrap_or("").trim() {
                        "report" => {
                            let mut o = out.lock();
                            let _ = o.write_all(report(&clients, &receipts).as_bytes());
                            let _ = o.flush();
                        }
                        "quit" => return,
                        cmd => {
                            let reply = match cmd.strip_prefix("poll ").map(str::parse::<u64>) {
                                Some(Ok(us)) if us <= 100_000 => {
                                    poll_us = us;
                                    format!("ok poll {us}\n")
                                }
                                _ => format!("error unknown command {cmd:?}\n"),
                            };
                            let mut o = out.lock();
                            let _ = o.write_all(reply.as_bytes());
                            let _ = o.flush();
                        }
                    }
                }
                continue;
            }
            let c = &mut clients[tag as usize];
            let n = match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.open = false;
                    0
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.open = false;
                    0
                }
            };
            if n > 0 {
                let t = now_ms();
                if c.partial.is_empty() {
                    let used = frames(c, &buf[..n], &mut receipts, t);
                    if used < n {
                        c.partial.extend_from_slice(&buf[used..n]);
                    }
                } else {
                    let mut data = std::mem::take(&mut c.partial);
                    data.extend_from_slice(&buf[..n]);
                    let used = frames(c, &data, &mut receipts, t);
                    data.drain(..used);
                    c.partial = data;
                }
            }
            if !c.open {
                // SAFETY: removing a descriptor this process owns.
                unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_DEL, c.stream.as_raw_fd(), std::ptr::null_mut()) };
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}
