// HTTP load generator process for bench-http.js: autocannon (keep-alive connections) against
// one route, driven over IPC like load-child.js. Runs in its own process
// so that the server's CPU is the server's alone.
import autocannon from 'autocannon';
import { serveParent } from './procs.js';

function run(opts) {
  return new Promise((resolve, reject) => {
    autocannon(opts, (err, result) => (err ? reject(err) : resolve(result)));
  });
}

serveParent({
  /**
   * { url, connections, pipelining, durationS, warmupS, bodies: string[], headers } → the
   * measured run's autocannon result (the warm-up run's is dropped).
   */
  async load({ url, connections, pipelining, durationS, warmupS, bodies, headers }) {
    const requests = bodies.map((body) => ({ method: 'POST', body, headers }));
    const base = { url, connections, pipelining, requests };
    if (warmupS > 0) await run({ ...base, duration: warmupS });
    process.send({ event: 'mark0' });
    const r = await run({ ...base, duration: durationS });
    process.send({ event: 'mark1' });
    return {
      requests: r.requests.total,
      replies_per_s: r.requests.total / r.duration,
      duration_s: r.duration,
      latency_ms: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
      bytes_per_s: r.throughput.average,
    };
  },
  exit() {
    process.exit(0);
  },
});
process.send({ event: 'ready' });
