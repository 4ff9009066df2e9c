/**
 * Control center dashboard (bundled by scripts/build-dashboard.mjs with uPlot; no CDN).
 * Status over ws://<host>/ws; start/stop/restart over REST; a playground that talks to
 * the memory and inference servers directly (ports from the status message).
 */
import uPlot from 'uplot';
import { $, el, tid } from './dom.js';
import { xWindow } from './time-window.js';
import { initBrowser, onMemoryUrl } from './browser.js';
import { renderCluster } from './cluster-view.js';
import { CSRF_HEADER, CSRF_META, type ComponentActionReply, type ComponentStatus, type MetricKey, type StatusMessage, type StatusMetrics } from '../protocol/control.js';

const params = new URLSearchParams(location.search);
const token = params.get('token');
/** This control-center start's CSRF token, embedded in the page: our POSTs carry it (ts/control/guard.ts). */
const csrfToken = document.querySelector<HTMLMetaElement>(`meta[name="${CSRF_META}"]`)?.content ?? '';
const RECONNECT_BASE_MS = Number(params.get('reconnect_ms')) || 3_000;
const RECONNECT_MAX_MS = 60_000;
const RECONNECT_ATTEMPTS = 10;
const CHART_POINTS = 150;

function toast(message: string): void {
  const t = $(tid('toast'));
  t.textContent = message;
  t.hidden = false;
  setTimeout(() => (t.hidden = true), 5_000);
}

// ------------------------------------------------------------------ formatting

function fmtUptime(s: number | null): string {
  if (s === null) return '—';
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = Math.floor(s % 60);
  if (d) return `${d}d ${h}h`;
  if (h) return `${h}h ${m}m`;
  if (m) return `${m}m ${sec}s`;
  return `${sec}s`;
}
const fmt = (v: number | null | undefined, unit = '', digits = 1): string =>
  v === null || v === undefined ? '—' : `${Number(v).toFixed(digits)}${unit}`;

// ------------------------------------------------------------------ components

const FIELDS: Array<[keyof ComponentStatus, string, (c: ComponentStatus) => string]> = [
  ['state', 'State', (c) => c.state],
  ['pid', 'PID', (c) => (c.pid === null ? '—' : String(c.pid))],
  ['uptime', 'Uptime', (c) => fmtUptime(c.uptime)],
  ['cpu_percent', 'CPU', (c) => fmt(c.cpu_percent, ' %')],
  ['memory_mb', 'Memory', (c) => fmt(c.memory_mb, ' MB')],
  ['port', 'Port', (c) => (c.port === null ? '—' : String(c.port))],
  ['connections', 'Connections', (c) => (c.connections === null ? '—' : String(c.connections))],
  ['restarts', 'Restarts', (c) => String(c.restarts)],
  ['reembed', 'Re-embedding', (c) => (c.reembed ? `${c.reembed.state} ${c.reembed.done} / ${c.reembed.total}${c.reembed.error ? `: ${c.reembed.error}` : ''}` : '—')],
];

const cards = new Map<string, HTMLElement>();
const busy = new Set<string>();
let lastStatus: StatusMessage | null = null;

function cardFor(key: string): HTMLElement {
  let card = cards.get(key);
  if (card) return card;
  card = el('article', { class: 'card component', 'data-testid': `component-${key}` });
  const head = el('div', { class: 'comp-head' });
  head.append(el('span', { class: 'dot', 'data-testid': `dot-${key}`, 'data-state': 'stopped' }), el('h2', {}, key));
  head.append(el('span', { class: 'state', 'data-testid': `state-${key}` }, ''));
  const dl = el('dl', { class: 'fields' });
  for (const [field, label] of FIELDS) {
    const row = el('div');
    row.append(el('dt', {}, label), el('dd', { 'data-testid': `${key}-${field}` }, '—'));
    dl.append(row);
  }
  const err = el('p', { class: 'error', 'data-testid': `${key}-error` });
  const actions = el('div', { class: 'actions' });
  for (const action of ['start', 'stop', 'restart'] as const) {
    const b = el('button', { type: 'button', 'data-testid': `${action}-${key}`, 'data-action': action }, action[0]!.toUpperCase() + action.slice(1));
    b.addEventListener('click', () => void control(key, action));
    actions.append(b);
  }
  card.append(head, dl, err, actions);
  $(tid('components')).append(card);
  cards.set(key, card);
  return card;
}

function renderComponent(key: string, c: ComponentStatus): void {
  const card = cardFor(key);
  $(tid(`dot-${key}`), card).setAttribute('data-state', c.state);
  $(tid(`state-${key}`), card).textContent = c.state;
  $('h2', card).textContent = c.name;
  card.setAttribute('data-state', c.state);
  for (const [field, , show] of FIELDS) $(tid(`${key}-${field}`), card).textContent = show(c);
  $(tid(`${key}-error`), card).textContent = c.error ?? '';
  renderCluster(card, key, c.cluster);
  const disabled = busy.has(key);
  const transitional = c.state === 'starting' || c.state === 'stopping';
  ($(tid(`start-${key}`), card) as HTMLButtonElement).disabled = disabled || transitional || c.state === 'running' || c.state === 'unresponsive';
  ($(tid(`stop-${key}`), card) as HTMLButtonElement).disabled = disabled || transitional || c.state === 'stopped';
  ($(tid(`restart-${key}`), card) as HTMLButtonElement).disabled = disabled || transitional;
}

function authHeaders(): Record<string, string> {
  const headers: Record<string, string> = { [CSRF_HEADER]: csrfToken };
  if (token) headers.Authorization = `Bearer ${token}`;
  return headers;
}

async function control(key: string, action: 'start' | 'stop' | 'restart'): Promise<void> {
  busy.add(key);
  if (lastStatus?.components[key]) renderComponent(key, lastStatus.components[key]!);
  try {
    const res = await fetch(`/api/components/${encodeURIComponent(key)}/${action}`, { method: 'POST', headers: authHeaders() });
    const body = (await res.json()) as ComponentActionReply;
    if (!body.success) toast(`${action} ${key}: ${body.error ?? res.statusText}`);
    if (body.component && lastStatus) {
      lastStatus.components[key] = body.component;
    }
  } catch (err) {
    toast(`${action} ${key}: ${(err as Error).message}`);
  } finally {
    busy.delete(key);
    if (lastStatus?.components[key]) renderComponent(key, lastStatus.components[key]!);
  }
}

// ------------------------------------------------------------------ metric cards

const METRIC_CARDS: Array<[MetricKey, string, (v: number) => string]> = [
  ['total_concepts', 'Memories', (v) => v.toLocaleString()],
  ['total_associations', 'Associations', (v) => v.toLocaleString()],
  ['storage_size_mb', 'Storage', (v) => (v >= 1 ? `${v.toFixed(1)} MB` : `${(v * 1024).toFixed(1)} KB`)],
  ['queries_per_second', 'Queries / s', (v) => v.toFixed(1)],
  ['avg_latency_ms', 'Avg latency', (v) => `${v.toFixed(2)} ms`],
  ['cpu_percent', 'Host CPU', (v) => `${v.toFixed(1)} %`],
  ['memory_percent', 'Host memory', (v) => `${v.toFixed(1)} %`],
];

function renderMetrics(m: Partial<StatusMetrics>): void {
  const root = $(tid('metrics'));
  for (const [key, label, show] of METRIC_CARDS) {
    let card = root.querySelector<HTMLElement>(tid(`metric-${key}`));
    if (!card) {
      card = el('div', { class: 'card metric', 'data-testid': `metric-${key}` });
      card.append(el('div', { class: 'label' }, label), el('div', { class: 'value' }, '—'));
      root.append(card);
    }
    const v = m[key];
    $('.value', card).textContent = typeof v === 'number' ? show(v) : '—';
  }
}

// ------------------------------------------------------------------ charts

interface Chart {
  root: HTMLElement;
  plot: uPlot;
  data: [number[], number[]];
}
const charts: Record<string, Chart> = {};

function makeChart(testid: string, color: string): Chart {
  const root = $(tid(testid));
  const box = $('.plot', root);
  const data: [number[], number[]] = [[], []];
  const plot = new uPlot(
    {
      width: Math.max(200, box.clientWidth),
      height: 180,
      legend: { show: false },
      cursor: { show: false },
      scales: { x: { time: true, range: xWindow }, y: { range: (_u, min, max) => [0, Math.max(1, max * 1.1, min)] } },
      axes: [
        { stroke: '#8b98a5', grid: { stroke: '#2a3440' }, ticks: { stroke: '#2a3440' } },
        { stroke: '#8b98a5', grid: { stroke: '#2a3440' }, ticks: { stroke: '#2a3440' }, size: 50 },
      ],
      series: [{}, { stroke: color, width: 2, fill: `${color}22` }],
    },
    data,
    box,
  );
  return { root, plot, data };
}

function pushPoint(chart: Chart, t: number, v: number): void {
  const [xs, ys] = chart.data;
  if (xs.length && t <= xs[xs.length - 1]!) return;
  xs.push(t);
  ys.push(v);
  if (xs.length > CHART_POINTS) {
    xs.shift();
    ys.shift();
  }
  chart.plot.setData(chart.data);
  chart.root.setAttribute('data-points', String(xs.length));
  chart.root.setAttribute('data-last', String(v));
}

function resizeCharts(): void {
  for (const c of Object.values(charts)) {
    const w = $('.plot', c.root).clientWidth;
    if (w > 0) c.plot.setSize({ width: w, height: 180 });
  }
}

// ------------------------------------------------------------------ status socket

let ws: WebSocket | null = null;
let attempts = 0;
let reconnectTimer: ReturnType<typeof setTimeout> | null = null;

function setConn(state: 'connecting' | 'connected' | 'reconnecting' | 'disconnected' | 'failed', text: string): void {
  const c = $(tid('ws-status'));
  c.setAttribute('data-state', state);
  $(tid('ws-status-text')).textContent = text;
}

function statusUrl(): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  return `${proto}//${location.host}/ws${q}`;
}

function onStatus(msg: StatusMessage): void {
  lastStatus = msg;
  for (const [key, c] of Object.entries(msg.components)) renderComponent(key, c);
  renderMetrics(msg.metrics);
  onMemoryUrl(serverBase('memory'));
  const t = Date.parse(msg.metrics.timestamp) / 1000;
  const num = (k: MetricKey): number => msg.metrics[k] ?? 0;
  if (Number.isFinite(t)) {
    pushPoint(charts.qps!, t, num('queries_per_second'));
    pushPoint(charts.latency!, t, num('avg_latency_ms'));
    pushPoint(charts.memories!, t, num('total_concepts'));
  }
}

function connect(): void {
  reconnectTimer = null;
  setConn(attempts === 0 ? 'connecting' : 'reconnecting', attempts === 0 ? 'connecting…' : `reconnecting (attempt ${attempts})…`);
  const sock = new WebSocket(statusUrl());
  ws = sock;
  sock.onopen = () => {
    attempts = 0;
    setConn('connected', 'connected');
  };
  sock.onmessage = (ev) => {
    let msg: unknown;
    try {
      msg = JSON.parse(String(ev.data));
    } catch {
      return;
    }
    if (msg && typeof msg === 'object' && (msg as { type?: string }).type === 'status' && !('status' in msg)) onStatus(msg as StatusMessage);
  };
  sock.onclose = (ev) => {
    if (ws !== sock) return;
    ws = null;
    if (ev.code === 1008) {
      setConn('failed', `disconnected: ${ev.reason || 'policy violation'} (not reconnecting)`);
      return;
    }
    if (attempts >= RECONNECT_ATTEMPTS) {
      setConn('failed', 'disconnected: gave up after 10 attempts — reload the page');
      return;
    }
    const delay = Math.min(RECONNECT_BASE_MS * 2 ** attempts, RECONNECT_MAX_MS);
    attempts++;
    setConn('disconnected', `disconnected — retrying in ${Math.round(delay / 1000)} s`);
    reconnectTimer = setTimeout(connect, delay);
  };
}

// ------------------------------------------------------------------ playground

const EXAMPLES: Record<string, Record<string, object>> = {
  memory: {
    store: { type: 'store', data: { text: 'The quick brown fox jumps over the lazy dog', metadata: { type: 'note' } } },
    retrieve: { type: 'retrieve', data: { query: 'quick brown fox', count: 5 } },
    list: { type: 'list', data: { limit: 10 } },
    stats: { type: 'stats' },
    namespaces: { type: 'namespaces' },
  },
  inference: {
    embeddings: { type: 'embeddings', data: { text: 'hello world' } },
    process: { type: 'process', data: { text: 'A long text to chunk and score.', context: ['earlier text'] } },
    stats: { type: 'stats' },
  },
};

const pgSockets = new Map<string, { url: string; sock: WebSocket; ready: Promise<void> }>();
const pending = new Map<string, (reply: unknown) => void>();
let pgSeq = 0;

/** A server's WebSocket URL from the status (its port on this page's host), without the token. */
function serverBase(target: string): string | null {
  const port = lastStatus?.components[target]?.port;
  if (!port) return null;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  return `${proto}//${location.hostname}:${port}/`;
}

function serverUrl(target: string): string | null {
  const base = serverBase(target);
  if (base === null) return null;
  return token ? `${base}?token=${encodeURIComponent(token)}` : base;
}

function socketFor(target: string): { sock: WebSocket; ready: Promise<void> } {
  const url = serverUrl(target);
  if (!url) throw new Error(`${target} is not running (no port in the status)`);
  const existing = pgSockets.get(target);
  if (existing && existing.url === url && existing.sock.readyState <= WebSocket.OPEN) return existing;
  existing?.sock.close();
  const sock = new WebSocket(url);
  const ready = new Promise<void>((resolve, reject) => {
    sock.onopen = () => resolve();
    sock.onerror = () => reject(new Error(`cannot connect to ${url}`));
  });
  sock.onmessage = (ev) => {
    let msg: { id?: unknown };
    try {
      msg = JSON.parse(String(ev.data)) as { id?: unknown };
    } catch {
      return;
    }
    const key = `${target}:${String(msg.id)}`;
    const done = pending.get(key);
    if (done) {
      pending.delete(key);
      done(msg);
    }
  };
  sock.onclose = () => {
    if (pgSockets.get(target)?.sock === sock) pgSockets.delete(target);
  };
  const entry = { url, sock, ready };
  pgSockets.set(target, entry);
  return entry;
}

/** Indented JSON with arrays of numbers (embeddings) kept on one line. */
function pretty(value: unknown): string {
  return JSON.stringify(value, null, 2).replace(/\[\s*(?:-?[\d.eE+-]+,\s*)*-?[\d.eE+-]+\s*\]/g, (m) => m.replace(/\s+/g, ' ').replace(/, /g, ','));
}

async function sendPlayground(): Promise<void> {
  const target = ($(tid('pg-target')) as HTMLSelectElement).value;
  const input = ($(tid('pg-input')) as HTMLTextAreaElement).value;
  const out = $(tid('pg-reply'));
  out.setAttribute('data-state', 'pending');
  let cmd: Record<string, unknown>;
  try {
    cmd = JSON.parse(input) as Record<string, unknown>;
    if (!cmd || typeof cmd !== 'object' || Array.isArray(cmd)) throw new Error('the command must be a JSON object');
  } catch (err) {
    out.textContent = `Invalid JSON: ${(err as Error).message}`;
    out.setAttribute('data-state', 'error');
    return;
  }
  if (cmd.id === undefined) cmd.id = `pg-${++pgSeq}`;
  try {
    const { sock, ready } = socketFor(target);
    await ready;
    const reply = await new Promise<unknown>((resolve, reject) => {
      const key = `${target}:${String(cmd.id)}`;
      const timer = setTimeout(() => {
        pending.delete(key);
        reject(new Error('no reply within 30 s'));
      }, 30_000);
      pending.set(key, (r) => {
        clearTimeout(timer);
        resolve(r);
      });
      sock.send(JSON.stringify(cmd));
    });
    out.textContent = pretty(reply);
    out.setAttribute('data-state', (reply as { status?: string }).status === 'success' ? 'success' : 'error');
  } catch (err) {
    out.textContent = (err as Error).message;
    out.setAttribute('data-state', 'error');
  }
}

function fillExamples(): void {
  const target = ($(tid('pg-target')) as HTMLSelectElement).value;
  const sel = $(tid('pg-example')) as HTMLSelectElement;
  sel.replaceChildren(...Object.keys(EXAMPLES[target] ?? {}).map((k) => el('option', { value: k }, k)));
  showExample();
}
function showExample(): void {
  const target = ($(tid('pg-target')) as HTMLSelectElement).value;
  const ex = ($(tid('pg-example')) as HTMLSelectElement).value;
  ($(tid('pg-input')) as HTMLTextAreaElement).value = JSON.stringify(EXAMPLES[target]?.[ex] ?? {}, null, 2);
}

// ------------------------------------------------------------------ boot

charts.qps = makeChart('chart-qps', '#4493f8');
charts.latency = makeChart('chart-latency', '#d29922');
charts.memories = makeChart('chart-memories', '#2ea043');
let resizeQueued = false;
window.addEventListener('resize', () => {
  if (resizeQueued) return;
  resizeQueued = true;
  requestAnimationFrame(() => {
    resizeQueued = false;
    resizeCharts();
  });
});
$(tid('pg-target')).addEventListener('change', fillExamples);
$(tid('pg-example')).addEventListener('change', showExample);
$(tid('pg-send')).addEventListener('click', () => void sendPlayground());
fillExamples();
initBrowser(token);
renderMetrics({});
connect();
// test hook / debugging
(window as unknown as { __controlCenter: object }).__controlCenter = {
  get status() {
    return lastStatus;
  },
  get reconnectTimer() {
    return reconnectTimer;
  },
  /** Each chart's time axis, [min, max] in seconds. */
  chartWindows(): Record<string, [number, number]> {
    return Object.fromEntries(Object.entries(charts).map(([k, c]) => [k, [c.plot.scales.x!.min!, c.plot.scales.x!.max!]]));
  },
};
