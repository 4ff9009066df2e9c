/**
 * Helpers for the request-decoding hardening tests (#23): a memory or inference server on
 * 127.0.0.1 port 0 in a temp data directory, whose log lines (JSON, level ≥ info) are kept
 * so a test can assert that bad input logs no error; raw frames for a TestClient.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { Packr } from 'msgpackr';
import { MemoryServer, type MemoryServerOptions } from '../../ts/server/memory.js';
import { InferenceServer, type InferenceServerOptions } from '../../ts/server/inference.js';
import type { TestClient } from '../helpers/ws-client.js';

export interface Started<S> {
  server: S;
  url: string;
  /** Parsed log lines written since start. */
  logs: Array<{ level: number; msg: string }>;
  /** Closes the server and removes its data directory. */
  stop(): Promise<void>;
}

function capturingLogger(logs: Array<{ level: number; msg: string }>) {
  return pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line) as { level: number; msg: string }) });
}

export async function startMemory(options: MemoryServerOptions = {}): Promise<Started<MemoryServer>> {
  const dir = mkdtempSync(path.join(tmpdir(), 'memsrv-hard-'));
  const logs: Array<{ level: number; msg: string }> = [];
  const server = new MemoryServer({
    dataDir: dir,
    host: '127.0.0.1',
    port: 0,
    logger: capturingLogger(logs),
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const info = await server.listen();
  return {
    server,
    url: `ws://127.0.0.1:${info.port}`,
    logs,
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export async function startInference(options: InferenceServerOptions = {}): Promise<Started<InferenceServer>> {
  const logs: Array<{ level: number; msg: string }> = [];
  const server = new InferenceServer({
    host: '127.0.0.1',
    port: 0,
    portRange: 0,
    logger: capturingLogger(logs),
    printListening: false,
    closeTimeoutMs: 2_000,
    ...options,
  });
  const info = await server.listen();
  return { server, url: `ws://127.0.0.1:${info.port}`, logs, stop: () => server.close() };
}

let seq = 0;

/** Sends a JSON text frame written by hand (`"id":"ID"` is replaced) and resolves with its reply. */
export function rawJson<T = any>(c: TestClient, text: string): Promise<T> {
  const id = `raw${++seq}`;
  const p = c.waitFor<T>((m) => m && m.id === id);
  c.ws.send(text.replace('"ID"', JSON.stringify(id)));
  return p;
}

/** A plain MessagePack packer, independent of the codec under test. */
export const plainPackr = new Packr({ useRecords: false, mapsAsObjects: true });

/** Sends MessagePack bytes as a binary frame (the request's `id` must be `id`) and resolves with its reply. */
export function rawBinary<T = any>(c: TestClient, bytes: Uint8Array, id: string): Promise<T> {
  const p = c.waitFor<T>((m) => m && m.id === id);
  c.ws.send(bytes, { binary: true });
  return p;
}

/** MessagePack of `message` with the UTF-8 bytes of `marker` (one occurrence) replaced by `bytes` of the same length. */
export function packWithRawBytes(message: unknown, marker: string, bytes: number[]): Uint8Array {
  const buf = Buffer.from(plainPackr.pack(message));
  const at = buf.indexOf(marker);
  if (at < 0 || Buffer.byteLength(marker) !== bytes.length) throw new Error('marker not found or length differs');
  Buffer.from(bytes).copy(buf, at);
  return new Uint8Array(buf);
}
