// `pnpm soak` (not in CI): SOAK_MINUTES (default 30) of mixed load on one memory server
// process (`node dist/cli/main.js --no-control --no-inference`, 127.0.0.1, a temp data dir):
// a client that never reads, a flooder above the rate limit, a churner and writers whose
// acknowledged ids go to a ledger file (bench/lib/soak-load.js). A sampler reads the server's
// RSS (/proc/<pid>/status VmRSS), open fds and `stats` every SOAK_SAMPLE_S.
//
// Criteria (exit 1 if one fails): the RSS at the end within +SOAK_RSS_TOLERANCE (10%) of its
// level after warm-up; then `kill -9` during a burst of writes, a restart on the same data
// dir, and every id in the ledger must be there (and no id of an acknowledged delete). The
// summary goes to stdout and bench/results/soak.json. See bench/README.md "Soak".
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { median, removeDir, RESULTS_DIR, tempDir } from './common.js';
import { sleep } from './lib/procs.js';
import { churner, flooder, memoryClient, neverReader, writers } from './lib/soak-load.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const num = (name, dflt) => (process.env[name] !== undefined && process.env[name] !== '' ? Number(process.env[name]) : dflt);
const cfg = {
  minutes: num('SOAK_MINUTES', 30),
  sampleS: num('SOAK_SAMPLE_S', 2),
  rateLimit: num('SOAK_RATE_LIMIT', 50),
  // Permanent memories per second (all writers): ~2 KB of RSS each, ~3.5 MB in 30 min (~2% of
  // the server's RSS): growth the tolerance must not be spent on.
  // Low, so the live set stays nearly constant and RSS growth means leaks, not data: a stored
  // memory costs ~1–3 KB of RSS (measured), 2/s for 30 min would be ~5% of the server's RSS.
  writeRate: num('SOAK_WRITE_RATE', 0.2),
  churnBatch: num('SOAK_CHURN_BATCH', 50),
  churnIntervalMs: num('SOAK_CHURN_INTERVAL_MS', 250),
  ballast: num('SOAK_BALLAST', 1000),
  rssTolerance: num('SOAK_RSS_TOLERANCE', 0.1),
  // SOAK_LOAD: which of the load's parts run besides the writers (for diagnosis; default all).
  load: (process.env.SOAK_LOAD || 'never-reader,flooder,churner').split(',').filter(Boolean),
};
cfg.warmupMinutes = num('SOAK_WARMUP_MINUTES', Math.max(1, cfg.minutes / 10));
// RSS swings by ±15% from sample to sample under this load (the never-reader's ~4 MB replies
// come and go), so baseline and final are each the median over a window of this length.
cfg.windowS = num('SOAK_WINDOW_S', Math.max(30, (cfg.warmupMinutes * 60) / 2));
// The server closes after more than 1000 rejected frames within 10 s (DEFAULTS.rateLimit
// closeAfterRejected / rejectWindowMs) and its bucket holds 2 s of messages: a big burst goes
// past both, a small one only the bucket (until the window's count adds up).
const flood = { bigBurst: 2 * cfg.rateLimit + 1500, smallBurst: 2 * cfg.rateLimit + 300 };
const NS = { writes: 'soak-writes', ballast: 'soak-ballast', churn: 'soak-churn' };

const work = tempDir('memory-soak-');
const dataDir = join(work, 'data');
const ledgerPath = join(work, 'acked.tsv');
const logFd = openSync(join(work, 'server.log'), 'a');
let server = null;
process.on('exit', () => server && !server.exit && server.child.kill('SIGKILL'));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(130));

/** Starts the CLI on the data dir and resolves once it prints its address. */
function startServer() {
  const child = spawn(
    process.execPath,
    [join(root, 'dist/cli/main.js'), '--no-control', '--no-inference', '--host', '127.0.0.1', '--port', '0', '--data-dir', dataDir, '--fsync', 'always', '--rate-limit', String(cfg.rateLimit), '--log-level', 'warn'],
    { stdio: ['ignore', 'pipe', logFd] },
  );
  const s = { child, exit: null, url: null, startedMs: Date.now() };
  child.on('exit', (code, signal) => (s.exit = { code, signal }));
  return new Promise((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('server did not start within 120 s')), 120_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /memory server\s+ws:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      if (m && !s.url) {
        clearTimeout(t);
        s.url = `ws://127.0.0.1:${m[1]}/`;
        s.openMs = Date.now() - s.startedMs;
        resolve(s);
      }
    });
    child.on('exit', (code, signal) => reject(new Error(`server exited with ${code ?? signal} before listening (log: ${join(work, 'server.log')})`)));
  });
}

/** utime + stime of a process, in seconds (clock ticks of 10 ms, as on every Linux we run on). */
const cpuSeconds = (pid) => {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const procStatus = (pid, key) => Number(new RegExp(`${key}:\\s+(\\d+)`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]);

/** Every `sampleS`: RSS, open fds and `stats` of the running server (a stats failure is counted, not fatal). */
function sampler(url, pid, t0) {
  const client = memoryClient(url);
  const samples = [];
  const st = { stats_requests: 0, stats_failures: 0 };
  const take = async () => {
    const s = { t_s: Math.round((Date.now() - t0) / 100) / 10, rss_kb: procStatus(pid, 'VmRSS'), anon_kb: procStatus(pid, 'RssAnon'), file_kb: procStatus(pid, 'RssFile'), fds: readdirSync(`/proc/${pid}/fd`).length, cpu_s: cpuSeconds(pid) };
    try {
      st.stats_requests++;
      const r = await client.stats();
      Object.assign(s, { total_memories: r.total_memories, storage_bytes: r.storage_bytes, connections: r.connections, fsyncs: r.fsyncs });
      // Compaction counters, if this build's stats report any (their names are not fixed here).
      for (const [k, v] of Object.entries(r)) if (/compact|dead/i.test(k)) s[k] = v;
    } catch {
      st.stats_failures++;
    }
    samples.push(s);
  };
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    take().finally(() => (busy = false));
  }, cfg.sampleS * 1000);
  return { samples, st, stop: () => (clearInterval(timer), client.close().catch(() => {})) };
}

/** Reads the ledger back and checks each id against the restarted server's `list` pages. */
async function verify(url, churnLastDeleted) {
  const want = new Map(); // namespace → Set(id)
  for (const line of readFileSync(ledgerPath, 'utf8').split('\n')) {
    const [ns, id] = line.split('\t');
    if (!id) continue;
    if (!want.has(ns)) want.set(ns, new Set());
    want.get(ns).add(id);
  }
  const client = memoryClient(url);
  try {
    let acked = 0;
    const missing = [];
    for (const [ns, ids] of want) {
      acked += ids.size;
      const present = new Set();
      for await (const m of client.listAll({ namespace: ns, limit: 1000 })) present.add(m.id);
      for (const id of ids) if (!present.has(id)) missing.push(`${ns}/${id}`);
    }
    const resurrected = [];
    for await (const m of client.listAll({ namespace: NS.churn, limit: 1000 })) {
      if (Number(/^c(\d+)-/.exec(m.id)?.[1]) <= churnLastDeleted) resurrected.push(m.id);
    }
    return { acked, missing: missing.length, missing_examples: missing.slice(0, 10), resurrected_deletes: resurrected.length, resurrected_examples: resurrected.slice(0, 10) };
  } finally {
    await client.close().catch(() => {});
  }
}

/** Sleeps `ms` in 1 s steps; throws if the server died meanwhile. */
async function run(ms) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (server.exit) throw new Error(`server died during the soak: ${JSON.stringify(server.exit)} (log: ${join(work, 'server.log')})`);
    await sleep(Math.min(1000, end - Date.now()));
  }
}

async function main() {
  console.log(`soak: ${cfg.minutes} min (warm-up ${cfg.warmupMinutes} min), work dir ${work}`);
  mkdirSync(dataDir);
  server = await startServer();
  const t0 = Date.now();
  const ledgerFd = openSync(ledgerPath, 'a');

  // Ballast: what the never-reader asks for (every memory with its embedding, ~4 MB a reply).
  const c = memoryClient(server.url);
  for (let i = 0; i < cfg.ballast; i += 500) {
    const items = Array.from({ length: Math.min(500, cfg.ballast - i) }, (_, k) => ({ id: `b${i + k}`, text: `ballast memory ${i + k} for the reader that never reads` }));
    await c.storeMany(items, { namespace: NS.ballast });
    for (const it of items) writeSync(ledgerFd, `${NS.ballast}\t${it.id}\n`);
  }
  await c.close();

  const pid = server.child.pid;
  const samp = sampler(server.url, pid, t0);
  const wr = writers(server.url, { namespace: NS.writes, ledgerFd });
  wr.setRate(cfg.writeRate);
  const on = (part, start) => (cfg.load.includes(part) ? start() : { stats: { off: true, rate_limited: 0, closes: {}, open_ms: [], last_deleted_cycle: -1 }, stop: async () => {} });
  const ch = on('churner', () => churner(server.url, { namespace: NS.churn, batch: cfg.churnBatch, intervalMs: cfg.churnIntervalMs }));
  const fl = on('flooder', () => flooder(server.url, flood));
  const nr = on('never-reader', () => neverReader(server.url, { namespace: NS.ballast }));

  const windowMedian = (fromS, key = 'rss_kb') => median(samp.samples.filter((s) => s.t_s >= fromS).map((s) => s[key]));
  await run(cfg.warmupMinutes * 60_000);
  const warmEndS = (Date.now() - t0) / 1000;
  const baselineKb = windowMedian(warmEndS - cfg.windowS);
  const baselineParts = { anon: windowMedian(warmEndS - cfg.windowS, 'anon_kb'), file: windowMedian(warmEndS - cfg.windowS, 'file_kb') };
  console.log(`soak: warm-up done, baseline RSS ${(baselineKb / 1024).toFixed(1)} MB (median over the last ${cfg.windowS} s)`);
  await run((cfg.minutes - cfg.warmupMinutes) * 60_000);

  const endS = (Date.now() - t0) / 1000;
  const finalKb = windowMedian(endS - cfg.windowS);
  const finalParts = { anon: windowMedian(endS - cfg.windowS, 'anon_kb'), file: windowMedian(endS - cfg.windowS, 'file_kb') };
  const maxKb = Math.max(...samp.samples.filter((s) => s.t_s > warmEndS).map((s) => s.rss_kb));
  samp.stop();

  // kill -9 in the middle of a burst of writes, with the rest of the load still running.
  wr.burst(16);
  const burstEnd = Date.now() + 5000;
  while (wr.stats.acked_in_burst < 200 && Date.now() < burstEnd && !server.exit) await sleep(20);
  if (server.exit) throw new Error(`server died during the write burst: ${JSON.stringify(server.exit)}`);
  const ackedAtKill = wr.stats.acked;
  const failedBeforeKill = wr.stats.failures;
  server.child.kill('SIGKILL');
  while (!server.exit) await sleep(10);
  const killed = { signal: server.exit.signal, acked_in_burst: wr.stats.acked_in_burst, failed_after_kill: 0 };
  await Promise.all([wr.stop(), ch.stop(), fl.stop(), nr.stop()]);
  closeSync(ledgerFd);
  killed.acked_after_kill_signal = wr.stats.acked - ackedAtKill; // replies already on their way
  killed.failed_after_kill = wr.stats.failures - failedBeforeKill; // in flight at the kill, and retries until stop()

  server = await startServer();
  const check = await verify(server.url, ch.stats.last_deleted_cycle);
  check.restart_open_ms = server.openMs;
  server.child.kill('SIGTERM');
  const stopBy = Date.now() + 30_000;
  while (!server.exit && Date.now() < stopBy) await sleep(50);

  const last = samp.samples.at(-1) ?? {};
  const first = samp.samples[0] ?? {};
  const compaction = Object.fromEntries(Object.entries(last).filter(([k]) => /compact|dead/i.test(k)));
  const rss = {
    baseline_mb: +(baselineKb / 1024).toFixed(1),
    final_mb: +(finalKb / 1024).toFixed(1),
    max_after_warmup_mb: +(maxKb / 1024).toFixed(1),
    final_over_baseline: +(finalKb / baselineKb).toFixed(3),
    max_over_baseline: +(maxKb / baselineKb).toFixed(3),
    // RssAnon (heaps, buffers) and RssFile (mapped store files) medians over the same windows.
    baseline_anon_file_mb: [baselineParts.anon, baselineParts.file].map((k) => +(k / 1024).toFixed(1)),
    final_anon_file_mb: [finalParts.anon, finalParts.file].map((k) => +(k / 1024).toFixed(1)),
  };
  const criteria = {
    rss_final_within_tolerance: finalKb <= baselineKb * (1 + cfg.rssTolerance),
    no_acked_write_missing: check.missing === 0 && check.acked > 0,
    no_acked_delete_undone: check.resurrected_deletes === 0,
  };
  const result = {
    bench: 'soak',
    date: new Date().toISOString(),
    machine: { cpus: cpus().length, model: cpus()[0]?.model, node: process.version },
    minutes: cfg.minutes,
    config: { ...cfg, flood },
    requests: {
      writes_acked: wr.stats.acked,
      writes_failed_before_kill: failedBeforeKill,
      writes_rate_limited: wr.stats.rate_limited,
      ballast: cfg.ballast,
      churn_cycles: ch.stats.cycles,
      churn_stores: ch.stats.stores,
      churn_deleted: ch.stats.deletes,
      churn_failures: ch.stats.failures,
      flood_sent: fl.stats.requests_sent,
      flood_replies: fl.stats.replies,
      flood_success: fl.stats.success,
      never_reader_sent: nr.stats.requests_sent,
      stats_requests: samp.st.stats_requests,
      stats_failures: samp.st.stats_failures,
    },
    rate_limited: fl.stats.rate_limited + wr.stats.rate_limited,
    flooder: { connections: fl.stats.connections, bursts: fl.stats.bursts, rate_limited: fl.stats.rate_limited, other_errors: fl.stats.other_errors, closes_by_code: fl.stats.closes },
    never_reader: {
      connections: nr.stats.connections,
      upgrade_failures: nr.stats.upgrade_failures,
      closed_by_server: nr.stats.closed_by_server,
      not_closed_within_120s: nr.stats.not_closed,
      open_ms_median: nr.stats.open_ms.length ? median(nr.stats.open_ms) : null,
    },
    rss,
    server_cpu_cores_avg: last.cpu_s !== undefined ? +((last.cpu_s - first.cpu_s) / (last.t_s - first.t_s)).toFixed(2) : null,
    fds: { first: first.fds, last: last.fds, max: Math.max(...samp.samples.map((s) => s.fds)) },
    store: { total_memories_last: last.total_memories, storage_bytes_first: first.storage_bytes, storage_bytes_last: last.storage_bytes, compaction: Object.keys(compaction).length ? compaction : 'not reported by stats' },
    kill: killed,
    verify: check,
    criteria,
    pass: Object.values(criteria).every(Boolean),
    samples: samp.samples,
  };
  mkdirSync(RESULTS_DIR, { recursive: true });
  writeFileSync(join(RESULTS_DIR, 'soak.json'), JSON.stringify(result, null, 2) + '\n');
  const { samples: _s, ...shown } = result;
  console.log(JSON.stringify(shown, null, 2));
  console.log(
    `\nsoak ${result.pass ? 'PASSED' : 'FAILED'}: RSS baseline ${rss.baseline_mb} MB, final ${rss.final_mb} MB (${rss.final_over_baseline}×), max ${rss.max_after_warmup_mb} MB (${rss.max_over_baseline}×); ` +
      `acked ${check.acked}, missing ${check.missing}, deletes undone ${check.resurrected_deletes}; ` +
      `flooder ${fl.stats.rate_limited} rate_limited, closes ${JSON.stringify(fl.stats.closes)}; never-reader closed ${nr.stats.closed_by_server ?? '(off)'}, not closed ${nr.stats.not_closed ?? '(off)'}`,
  );
  if (process.env.SOAK_KEEP) console.log(`work dir kept: ${work}`);
  else removeDir(work);
  process.exit(result.pass ? 0 : 1);
}

main().catch((err) => {
  console.error(`soak: ${err.stack ?? err}\nwork dir kept: ${work}`);
  process.exit(1);
});
