// Prints the README performance table from bench/results/*.json (run after `pnpm bench`).
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { RESULTS_DIR } from './common.js';

const load = (name) => {
  const f = join(RESULTS_DIR, `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : null;
};
const n = (x, d = 1) => (typeof x === 'number' ? x.toFixed(d) : '—');
const rows = [];
const row = (figure, measured, baseline, target, met) => rows.push(`| ${figure} | ${measured} | ${baseline} | ${target} | ${met ? 'yes' : 'no'} |`);

const s = load('search');
if (s) {
  const size = `${(s.store.memories / 1e6).toFixed(s.store.memories >= 1e6 ? 0 : 1)}M × ${s.store.dims}`;
  const f32 = s.single_query_f32_scan_ms ?? s.single_query_top10_ms;
  row(`exact top-10, 1 query, ${size}, f32 scan`, `${n(f32)} ms = ${n(s.single_query_effective_GBps)} GB/s`, `read bandwidth ${n(s.baseline_read_bandwidth_GBps)} GB/s (same run)`, '≥ 85% of bandwidth', s.single_query_fraction_of_bandwidth >= 0.85);
  const path = s.single_query_path && s.single_query_path !== 'f32 scan' ? ` (${s.single_query_path})` : '';
  row(`… default path vs usearch exact search`, `${n(s.single_query_top10_ms)} ms${path}; f32 scan ${n(f32)} ms`, `usearch ${n(s.usearch_exact_single_query_ms)} ms`, '≥ 1× usearch', s.speed_vs_usearch_single >= 1);
  const how = s.kernel?.int8 ? 'exact int8 pre-pass + f32 rescoring' : `${n(s.batch64_GFLOPs)} GFLOP/s f32`;
  row(`64 queries in one pass, ${size}`, `${n(s.batch64_ms)} ms = ${n(s.batch64_speedup_over_single)}× single (${how})`, `64 × single query; usearch ${n(s.usearch_exact_batch64_ms, 0)} ms`, '≥ 8× single-query throughput', s.batch64_speedup_over_single >= 8);
  row(`selective filter (1%), equality / range`, `${n(s.filter_eq_1pct_ms)} / ${n(s.filter_range_1pct_ms)} ms`, `unfiltered f32 scan ${n(f32)} ms`, 'faster than unfiltered', s.filter_eq_speedup_vs_unfiltered > 1 && s.filter_range_speedup_vs_unfiltered > 1);
  row(`retrieve without query (ordered index), ${size}`, `${n(s.retrieve_without_query_top10_ms, 3)} ms`, '—', '—', true);
  const mapped = s.reopen_rows_mapped_from_vectors_file ? ` (vectors of ${n(s.reopen_rows_mapped_from_vectors_file[0] / 1e3, 0)}k rows mapped from the vectors file)` : '';
  row(`reopen ${size} store (warm cache)`, `${s.reopen_warm_s.map((x) => n(x, 2)).join(' / ')} s${mapped}`, '—', '≤ 3 s', Math.max(...s.reopen_warm_s) <= 3);
  if (s.reopen_cold_s != null) row(`reopen ${size} store (cold cache, after drop_caches)`, `${n(s.reopen_cold_s, 2)} s`, '—', '(reported)', true);
}
const g = load('ingest');
if (g) {
  const b = g.baseline_one_fsync_per_put_64_writers ?? g.one_fsync_per_put;
  const m = g.group_commit_64_writers ?? g.concurrent_64;
  row('durable ingest, 64 writers, fsync always', `${n(m.puts_per_s, 0)} puts/s (${n(m.memories_per_fsync)} per fsync)`, `one fsync per put: ${n(b.puts_per_s, 0)}/s`, '≥ 10×', (g.speedup_vs_one_fsync_per_put ?? g.speedup) >= 10);
}
// The transport rows come from bench-transport.js (native open-loop load generator); the
// closed-loop `stats` CPU figure of bench-server-cpu.js, bounded by its Node load generator,
// is no longer in the table (its JSON is still kept).
const tr = load('transport');
for (const [cmd, x] of Object.entries(tr?.results ?? {})) {
  const k = (v) => `${n(v / 1e3, 1)}k`;
  // A server that never failed, or was not busy for a whole core when it first did (held back
  // by the load generator or the machine): its figure is a lower bound.
  const sat = (s) => `${s.bound !== 'server' ? '≥ ' : ''}${k(s.sustained_per_s)}/s (closed loop ${k(s.closed_loop_max_per_s)})`;
  const what = cmd === 'stats' ? '`stats`' : `\`retrieve\` (embedding, top 10, ${x.store_memories} memories)`;
  const floor = x.saturation.uws_floor ? `; uWS.js with no handler: ${sat(x.saturation.uws_floor)}` : '';
  row(`${what} saturation, ${tr.workload.connections} conn, native open-loop load`, sat(x.saturation.ours), `ws: ${sat(x.saturation.ws)}${floor}`, '≥ 3× ws', x.meets_saturation_target);
  const pct = Object.keys(x.rates_per_s);
  const at = (srv, f) => pct.map((p) => f(x.at[srv][p])).join(' / ');
  const cpu = (srv) => `${at(srv, (a) => n(a.server_cpu_us_per_reply, cmd === 'stats' ? 1 : 0))} µs, p99 ${at(srv, (a) => n(a.p99_ms, 1))} ms`;
  const over = (srv) => (pct.some((p) => x.at[srv][p].overloaded) ? ` (overloaded at ${pct.filter((p) => x.at[srv][p].overloaded).join(', ')})` : '');
  const rates = pct.map((p) => k(x.rates_per_s[p])).join(' / ');
  const base = `ws: ${cpu('ws')}${over('ws')}${x.at.uws_floor ? `; uWS.js with no handler: ${cpu('uws_floor')}` : ''}`;
  if (x.cpu_ratio_ours_over_uws_floor) {
    row(`… server CPU per \`stats\` and p99 at ${pct.join(' / ')} of ours (${rates}/s)`, cpu('ours'), base, '≤ 1.3× no handler at each rate', x.meets_cpu_target);
  } else {
    row(`… server CPU per \`retrieve\` and p99 at ${pct.join(' / ')} of ours (${rates}/s)`, cpu('ours'), base, '(reported)', true);
  }
}
const im = load('idle-memory');
if (im) row('memory per idle connection (10,000)', `${n(im.ours.rss_bytes_per_connection ?? (im.ours.rss_after_bytes - im.ours.rss_before_bytes) / im.ours.connections, 0)} B`, `ws: ${n(im.baseline.rss_bytes_per_connection ?? (im.baseline.rss_after_bytes - im.baseline.rss_before_bytes) / im.baseline.connections, 0)} B`, '≤ 1/3 of ws', im.rss_per_connection_ratio_ours_over_baseline <= 1 / 3);
const r = load('retrieve');
if (r) row(`retrieve (embedding, top 10), ${r.workload.store_memories} memories, 16 conn`, `${n(r.ours.queries_per_s)} q/s`, `JS scan: ${n(r.baseline.queries_per_s)} q/s`, '≥ 30×', r.speedup_ours_over_baseline >= 30);
const h = load('http');
if (h) {
  row(
    `\`POST /v1/memories/search\` (embedding, top 10), ${h.workload.store_memories} memories, ${h.workload.connections} keep-alive conn`,
    `${n(h.ours.queries_per_s)} q/s = ${n(h.http_over_ws * 100, 1)}%`,
    `WebSocket \`retrieve\`, same concurrency: ${n(h.baseline.queries_per_s)} q/s (${h.websocket_pipelined.in_flight_per_connection} in flight per conn: ${n(h.websocket_pipelined.queries_per_s)} q/s)`,
    '≥ 80%',
    h.meets_target,
  );
}
const st = load('store');
if (st) {
  for (const [k, v] of Object.entries(st)) {
    if (!v || typeof v !== 'object' || !('ours' in v) || !('baseline' in v)) continue;
    const what = k.startsWith('a_') ? 'into an empty store' : `into ${v.store_memories} memories`;
    row(`durable store, 16 conn, ${what} (${n(v.ours.memories_per_fsync, 1)} per fsync)`, `${n(v.ours.stores_per_s, 0)} stores/s`, `${k.startsWith('a_') ? 'JS store, one fdatasync per store' : 'plain-JS store (JS scan, fdatasync per store)'}: ${n(v.baseline.stores_per_s, 0)}/s`, '≥ 20×', v.speedup_ours_over_baseline >= 20);
  }
}
const b = load('broadcast');
if (b) {
  const other = Object.entries(b.modes ?? {}).filter(([k]) => k !== b.figure_mode);
  const mode = (m) => `p50 ${n(m.publish_to_last_receipt_ms.p50_ms, 0)} ms, max ${n(m.publish_to_last_receipt_ms.max_ms, 0)} ms`;
  const clients = b.figure_mode === 'coalesced' ? ` (native clients polling every ${b.modes.coalesced.client_poll_us} µs${other.length ? `; ${other.map(([k, m]) => `${k}: ${mode(m)}`).join('; ')}` : ''})` : '';
  row('2 KB broadcast to 10,000 clients', `${mode(b)} to the last client${clients}`, '—', '≤ 100 ms', b.meets_target);
}
const cc = load('control');
if (cc) {
  row('status broadcast to 10,000 dashboards (control process)', `${n(cc.broadcast.with10kClientsPercentOfOneCore)}% of one core`, `no clients: ${n(cc.broadcast.baselineNoClientsPercentOfOneCore)}%`, '≤ 5% of one core', cc.broadcast.with10kClientsPercentOfOneCore <= 5);
  const runs = cc.crash?.runs ?? [];
  const worst = Math.max(...runs.map((x) => x.dashboardClientMs));
  if (runs.length) row('component crash visible on the dashboard', `≤ ${n(worst, 0)} ms (${runs.length} runs)`, '—', '≤ 2.5 s', worst <= 2500);
}
const ox = load('onnx');
if (ox) {
  const d = ox.dynamic;
  const one = ox.one_request_per_run_64;
  row('ONNX MiniLM-L6 shape, 64 concurrent single-text requests', `${n(d['64'].texts_per_s, 0)} texts/s (avg batch ${n(d['64'].avg_batch, 1)})`, `one request per run: ${n(one.texts_per_s, 0)}/s (onnxruntime's own batch-32 / batch-1 ceiling here: ${n(ox.ort_ceiling_batch32_over_batch1, 2)}×)`, '≥ 3×', ox.batched_speedup_vs_one_per_run_64 >= 3);
  row('… vs onnxruntime alone, ideal full batches of 32', `${n(d['64'].texts_per_s, 0)} texts/s = ${n(100 * ox.fraction_of_ideal_64, 0)}%`, `${n(ox.ideal_full_batches_32.texts_per_s, 0)} texts/s`, '≥ 85%', ox.fraction_of_ideal_64 >= 0.85);
  row('… time outside onnxruntime (tokenize, pool, framing, gaps), 64 concurrent', `${n(100 * ox.outside_ort_fraction_64, 1)}%`, '—', '≤ 10%', ox.outside_ort_fraction_64 <= 0.1);
  row('… latency p50 / p99 at 1, 16, 64, 256 concurrent', ['1', '16', '64', '256'].map((c) => `${n(d[c].p50_ms, 0)}/${n(d[c].p99_ms, 0)}`).join(', ') + ' ms', '—', '(reported)', true);
}
const oa = load('openai');
if (oa) {
  const us = (v) => `${n(v.server_cpu_us_per_request, 1)} µs`;
  row(
    '`POST /v1/embeddings` (OpenAI-compatible, float), hash embedder, 16 conn: server CPU per request',
    `${us(oa.http_float)} = ${n(oa.ratio_http_float_to_ws, 2)}× (base64: ${us(oa.http_base64)})`,
    `WebSocket \`embeddings\`: ${us(oa.ws)}`,
    '≤ 1.5×',
    oa.met,
  );
}
const bt = load('batching');
if (bt) {
  const at = (c) => bt.server[c];
  const base = bt.ort_arrival_order_32;
  row('ONNX mixed lengths (5–250 tokens), 256 concurrent single-text requests', `${n(at('256').texts_per_s, 0)} texts/s (padded/real ${n(at('256').padding_ratio, 2)})`, `onnxruntime alone, batches of 32 in arrival order: ${n(base.texts_per_s, 0)}/s (padded/real ${n(base.padding_ratio, 2)})`, '≥ 2×', bt.speedup_256_vs_arrival_order >= 2);
  row('… 64 concurrent', `${n(at('64').texts_per_s, 0)} texts/s = ${n(bt.speedup_64_vs_arrival_order, 2)}× (padded/real ${n(at('64').padding_ratio, 2)})`, `sorted batches of 32: ${n(bt.ort_sorted_32.texts_per_s, 0)}/s`, '(reported)', true);
}
const re = load('reembed');
if (re?.finished && re.embedder_alone?.texts_per_s) {
  const bg = re.embedder_alone_background;
  const ofBg = bg ? ` (${n(100 * re.fraction_of_background_embedder, 0)}% of its background instance alone, ${n(bg.texts_per_s, 0)}/s)` : '';
  row(
    `re-embedding ${re.rows} memories (\`--reembed\`, MiniLM-L6 shape) under ${re.query_load.qps} \`retrieve\`/s`,
    `${n(re.reembed.texts_per_s, 0)} texts/s = ${n(100 * re.fraction_of_embedder, 0)}% of the model alone${ofBg}; query p99 ${n(re.queries_during.p99_ms, 1)} ms = ${n(re.p99_during_over_idle, 2)}× idle`,
    `the model alone: ${n(re.embedder_alone.texts_per_s, 0)} texts/s; the same queries idle: p99 ${n(re.queries_idle.p99_ms, 1)} ms`,
    '≥ 90%, p99 ≤ 2× idle',
    re.fraction_of_embedder >= 0.9 && re.p99_during_over_idle <= 2,
  );
}

console.log('| figure | measured | baseline (same run) | target | met |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
