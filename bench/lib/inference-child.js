// An inference server (hash embedder) in its own process for bench-openai.js: reports
// { event: 'ready', port, pid } and serves IPC `cpu` (process.cpuUsage of this process) and `exit`.
// The rate limit stays on (buckets checked on every request, as in production) with limits
// no benchmark reaches.
import { InferenceServer } from '../../dist/server/inference.js';
import { serveParent } from './procs.js';

const server = new InferenceServer({
  host: '127.0.0.1',
  port: 0,
  portRange: 0,
  printListening: false,
  logLevel: 'warn',
  rateLimit: { messagesPerSecond: 1e7, messagesBurst: 1e7, bytesPerSecond: 1e12, bytesBurst: 1e12 },
});
const { port } = await server.listen();

serveParent({
  cpu() {
    const u = process.cpuUsage();
    return { user: u.user, system: u.system, wall: performance.now() };
  },
  async exit() {
    setTimeout(() => process.exit(0), 3000).unref();
    await server.close();
    process.exit(0);
  },
});

process.send({ event: 'ready', port, pid: process.pid });
