// Control center benchmark (SPEC §5):
//  (a) status broadcast to 10,000 dashboard WebSocket clients (in 3 client processes of
//      their own) at the default 2 s interval: CPU time of the control process over ~20 s,
//      as % of one core, against a baseline measured in the same run with no clients;
//  (b) a component crash (kill -9 of the memory child) is visible to dashboard clients:
//      time from the kill to the status message showing `error` (first and last of all clients).
//
// Roles (this file forks itself): main (coordinates), control (hosts the control center and
// its two supervised children), clients (WebSocket clients, < 5,000 per process).
//   node bench/bench-control.js [--clients 10000] [--procs 3] [--seconds 20] [--crashes 5]
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import net from 'node:net';
import { saveResult, tempDir, removeDir, median } from './common.js';

const SELF = fileURLToPath(import.meta.url);
const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
};
const role = arg('role', 'main');
const wallMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ control process
async function runControl() {
  const { startControlCenter } = await import('../dist/control/index.js');
  const port = Number(arg('port'));
  const dataDir = arg('data');
  const cc = await startControlCenter({
    host: '127.0.0.1',
    port,
    dataDir,
    memory: { port: 0, printListening: false },
    inference: { port: 0, portRange: 0, printListening: false },
    logLevel: 'warn',
    printListening: false,
    maxConnections: 20_000,
    maxConnectionsPerIp: 20_000,
    statusIntervalMs: Number(arg('interval', 2000)),
  });
  process.on('message', async (m) => {
    if (m.type === 'cpu') {
      const cpu = process.cpuUsage();
      process.send({ type: 'cpu', id: m.id, us: cpu.user + cpu.system, user: cpu.user, system: cpu.system, at: performance.now(), connections: cc.controlCenter.server.connectionCount() });
    } else if (m.type === 'stop') {
      await cc.close();
      process.exit(0);
    }
  });
  process.send({ type: 'ready', port: cc.port });
}

// ------------------------------------------------------------------ client process
async function runClients() {
  const { default: WebSocket } = await import('ws');
  const url = arg('url');
  const n = Number(arg('n'));
  let received = 0;
  let connected = 0;
  let failed = 0;
  const sockets = [];
  const open = (i) =>
    new Promise((resolve) => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      ws.on('open', () => {
        connected++;
        resolve();
      });
      ws.on('message', (data) => {
        received++;
        if (!armed) return;
        const s = data.toString();
        if (s.includes('"state":"error"')) {
          const msg = JSON.parse(s);
          if (msg.components?.memory?.state === 'error') {
            const t = wallMs();
            if (!lastSeen[i] || lastSeen[i] < armedAt) lastSeen[i] = t;
          }
        }
      });
      ws.on('error', () => {
        failed++;
        resolve();
      });
      sockets.push(ws);
    });
  let armed = false;
  let armedAt = 0;
  const lastSeen = new Array(n).fill(0);
  // Open in batches so the listen backlog is not overrun.
  for (let i = 0; i < n; i += 200) {
    await Promise.all(Array.from({ length: Math.min(200, n - i) }, (_, k) => open(i + k)));
  }
  process.on('message', (m) => {
    if (m.type === 'count') process.send({ type: 'count', id: m.id, received, connected, failed });
    else if (m.type === 'arm') {
      armed = true;
      armedAt = m.at;
      process.send({ type: 'armed', id: m.id });
    } else if (m.type === 'crash-result') {
      // every client's first receipt of the error state after the kill
      const times = lastSeen.filter((t) => t >= m.killedAt);
      process.send({ type: 'crash-result', id: m.id, seen: times.length, first: Math.min(...times), last: Math.max(...times) });
      lastSeen.fill(0);
      armed = false;
    } else if (m.type === 'stop') {
      for (const ws of sockets) ws.terminate();
      process.exit(0);
    }
  });
  process.send({ type: 'ready', connected, failed });
}

// ------------------------------------------------------------------ main
function rpc(child) {
  let seq = 0;
  const waiters = new Map();
  child.on('message', (m) => {
    const w = m.id !== undefined && waiters.get(m.id);
    if (w) {
      waiters.delete(m.id);
      w(m);
    }
  });
  return (msg) =>
    new Promise((resolve) => {
      const id = ++seq;
      waiters.set(id, resolve);
      child.send({ ...msg, id });
    });
}
const once = (child, type) => new Promise((resolve) => child.on('message', (m) => m.type === type && resolve(m)));

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function main() {
  const total = Number(arg('clients', 10_000));
  const procs = Number(arg('procs', 3));
  const seconds = Number(arg('seconds', 20));
  const crashes = Number(arg('crashes', 5));
  const statusIntervalMs = Number(arg('interval', 2000));
  const perProc = Math.ceil(total / procs);
  if (perProc >= 5_000) throw new Error('keep each client process under 5,000 sockets (raise --procs)');
  const dataDir = tempDir('bench-control-');
  const port = await freePort();
  const control = fork(SELF, ['--role', 'control', '--port', String(port), '--data', dataDir, '--interval', String(statusIntervalMs)]);
  const callControl = rpc(control);
  await once(control, 'ready');
  const cpuOver = async (ms) => {
    const a = await callControl({ type: 'cpu' });
    await sleep(ms);
    const b = await callControl({ type: 'cpu' });
    const pct = (x) => (x / 1000 / (b.at - a.at)) * 100;
    return {
      percentOfOneCore: pct(b.us - a.us),
      userPercent: pct(b.user - a.user),
      systemPercent: pct(b.system - a.system),
      connections: b.connections,
      windowMs: b.at - a.at,
    };
  };
  await sleep(3_000); // children settle
  console.error(`baseline: control process with no dashboard clients, ${seconds} s…`);
  const baseline = await cpuOver(seconds * 1000);

  console.error(`connecting ${total} clients in ${procs} processes…`);
  const url = `ws://127.0.0.1:${port}/ws`;
  const clients = [];
  const t0 = performance.now();
  for (let p = 0; p < procs; p++) {
    const n = Math.min(perProc, total - p * perProc);
    const child = fork(SELF, ['--role', 'clients', '--url', url, '--n', String(n)]);
    clients.push({ child, call: rpc(child), ready: once(child, 'ready') });
  }
  const readies = await Promise.all(clients.map((c) => c.ready));
  const connectMs = performance.now() - t0;
  const connected = readies.reduce((s, r) => s + r.connected, 0);
  console.error(`${connected} connected in ${(connectMs / 1000).toFixed(1)} s; measuring ${seconds} s…`);
  await sleep(4_000); // let the connect burst and its first status messages pass
  const counts0 = await Promise.all(clients.map((c) => c.call({ type: 'count' })));
  const loaded = await cpuOver(seconds * 1000);
  const counts1 = await Promise.all(clients.map((c) => c.call({ type: 'count' })));
  const delivered = counts1.reduce((s, c) => s + c.received, 0) - counts0.reduce((s, c) => s + c.received, 0);

  // (b) crash visibility
  const { default: WebSocket } = await import('ws');
  const dash = new WebSocket(url);
  let latest = null;
  const errorWaiters = [];
  dash.on('message', (d) => {
    const t = wallMs();
    latest = JSON.parse(d.toString());
    if (latest.components?.memory?.state === 'error') for (const w of errorWaiters.splice(0)) w(t);
  });
  await new Promise((r) => dash.once('open', r));
  await sleep(500);
  const crashRuns = [];
  for (let i = 0; i < crashes; i++) {
    const deadline = Date.now() + 60_000;
    while (latest?.components?.memory?.state !== 'running' && Date.now() < deadline) await sleep(100);
    const pid = latest.components.memory.pid;
    await Promise.all(clients.map((c) => c.call({ type: 'arm', at: wallMs() })));
    const seen = new Promise((r) => errorWaiters.push(r));
    const killedAt = wallMs();
    process.kill(pid, 'SIGKILL');
    const seenAt = await seen;
    await sleep(1_000);
    const per = await Promise.all(clients.map((c) => c.call({ type: 'crash-result', killedAt })));
    crashRuns.push({
      pid,
      dashboardClientMs: seenAt - killedAt,
      clientsSeen: per.reduce((s, r) => s + r.seen, 0),
      firstOfAllClientsMs: Math.min(...per.map((r) => r.first)) - killedAt,
      lastOfAllClientsMs: Math.max(...per.map((r) => r.last)) - killedAt,
      reason: latest.components.memory.error,
    });
    console.error(`crash ${i + 1}: visible after ${(seenAt - killedAt).toFixed(1)} ms (last of ${crashRuns.at(-1).clientsSeen} clients ${crashRuns.at(-1).lastOfAllClientsMs.toFixed(1)} ms)`);
  }
  dash.close();
  for (const c of clients) c.child.send({ type: 'stop' });
  control.send({ type: 'stop' });
  await new Promise((r) => control.once('exit', r));
  removeDir(dataDir);

  const result = saveResult(statusIntervalMs === 2000 ? 'control' : `control-interval-${statusIntervalMs}`, {
    description: 'Control center: status broadcast CPU cost with 10k dashboard clients; crash visibility latency',
    statusIntervalMs,
    clients: { requested: total, connected, processes: procs, connectSeconds: connectMs / 1000 },
    broadcast: {
      windowSeconds: loaded.windowMs / 1000,
      baselineNoClientsPercentOfOneCore: round(baseline.percentOfOneCore),
      with10kClientsPercentOfOneCore: round(loaded.percentOfOneCore),
      with10kClientsUserPercent: round(loaded.userPercent),
      with10kClientsKernelPercent: round(loaded.systemPercent),
      addedByClientsPercentOfOneCore: round(loaded.percentOfOneCore - baseline.percentOfOneCore),
      ratioVsBaseline: round(loaded.percentOfOneCore / Math.max(baseline.percentOfOneCore, 1e-9)),
      controlConnections: loaded.connections,
      statusMessagesDelivered: delivered,
      expectedMessages: Math.round((connected * loaded.windowMs) / statusIntervalMs),
      target: '≤ 5 % of one core',
      pass: loaded.percentOfOneCore <= 5,
    },
    crash: {
      runs: crashRuns,
      medianMs: round(median(crashRuns.map((r) => r.dashboardClientMs))),
      maxMs: round(Math.max(...crashRuns.map((r) => r.dashboardClientMs))),
      maxLastOfAllClientsMs: round(Math.max(...crashRuns.map((r) => r.lastOfAllClientsMs))),
      target: '≤ 2,500 ms',
      pass: Math.max(...crashRuns.map((r) => r.lastOfAllClientsMs)) <= 2500,
    },
  });
  return result;
}
const round = (x) => Math.round(x * 1000) / 1000;

if (role === 'control') await runControl();
else if (role === 'clients') await runClients();
else await main();
