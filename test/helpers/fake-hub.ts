/**
 * A loopback Hugging Face–compatible hub for tests: the model API
 * (`/api/models/{repo}/revision/{rev}?blobs=true`), `resolve/{rev}/{path}` with the hub's
 * headers (X-Repo-Commit, ETag = git blob sha1, and for LFS files a 302 to a CDN on a
 * second origin with X-Linked-Etag = sha256 and X-Linked-Size), Range requests on the CDN,
 * error codes (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo), and injected
 * faults: a transfer cut halfway, corrupted bytes.
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FakeRevision {
  commit: string;
  files: Record<string, Buffer>;
}

export interface FakeRepo {
  /** revision name (branch or tag) → files at a commit. */
  revisions: Record<string, FakeRevision>;
  /** Only with `Authorization: Bearer <token>`. */
  gatedToken?: string;
  /** A renamed repository: every request is redirected (307, relative) to this id. */
  renamedTo?: string;
}

export interface SeenRequest {
  server: 'hub' | 'cdn';
  method: string;
  url: string;
  range?: string;
  authorization?: string;
}

export interface FakeHub {
  endpoint: string;
  repos: Map<string, FakeRepo>;
  requests: SeenRequest[];
  /** sha256s whose next CDN transfer is cut after half the bytes (each entry used once). */
  truncateOnce: Set<string>;
  /** sha256s whose next CDN transfer sends half the bytes and then nothing, holding the connection open. */
  stallOnce: Set<string>;
  /** sha256s the CDN serves with one byte flipped. */
  corrupt: Set<string>;
  close(): Promise<void>;
}

export const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
export const gitBlobId = (b: Buffer): string => createHash('sha1').update(`blob ${b.length}\0`).update(b).digest('hex');
export const commitId = (seed: string): string => createHash('sha1').update(seed).digest('hex');
/** Files the fake hub stores in LFS (as the real hub does for model weights). */
const isLfs = (path: string): boolean => path.endsWith('.onnx') || path.endsWith('.onnx_data');

function listen(server: http.Server): Promise<string> {
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)));
}

export async function startFakeHub(repos: Record<string, FakeRepo>): Promise<FakeHub> {
  const hub: Omit<FakeHub, 'endpoint' | 'close'> = { repos: new Map(Object.entries(repos)), requests: [], truncateOnce: new Set(), stallOnce: new Set(), corrupt: new Set() };
  const blobs = new Map<string, Buffer>();
  const refresh = (): void => {
    for (const repo of hub.repos.values()) for (const rev of Object.values(repo.revisions)) for (const b of Object.values(rev.files)) blobs.set(sha256(b), b);
  };
  refresh();
  const record = (server: 'hub' | 'cdn', req: http.IncomingMessage): void => {
    hub.requests.push({
      server,
      method: req.method!,
      url: req.url!,
      ...(req.headers.range ? { range: req.headers.range } : {}),
      ...(req.headers.authorization ? { authorization: req.headers.authorization } : {}),
    });
  };

  const cdn = http.createServer((req, res) => {
    record('cdn', req);
    const sha = /^\/blobs\/([0-9a-f]{64})$/.exec(req.url!)?.[1];
    const body = sha ? blobs.get(sha) : undefined;
    if (!body) return void res.writeHead(404).end();
    let data = body;
    if (hub.corrupt.has(sha!)) {
      data = Buffer.from(body);
      data[data.length >> 1] ^= 0xff;
    }
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const from = m ? Number(m[1]) : 0;
    if (from >= data.length) return void res.writeHead(416, { 'Content-Range': `bytes */${data.length}` }).end();
    const part = data.subarray(from);
    res.writeHead(m ? 206 : 200, { 'Content-Length': String(part.length), ...(m ? { 'Content-Range': `bytes ${from}-${data.length - 1}/${data.length}` } : {}) });
    if (req.method === 'HEAD') return void res.end();
    if (hub.stallOnce.delete(sha!)) return void res.write(part.subarray(0, part.length >> 1));
    if (hub.truncateOnce.delete(sha!)) {
      res.write(part.subarray(0, part.length >> 1), () => res.destroy());
      return;
    }
    res.end(part);
  });
  const cdnBase = await listen(cdn);

  const server = http.createServer((req, res) => {
    record('hub', req);
    refresh();
    const url = new URL(req.url!, 'http://x');
    const api = /^\/api\/models\/(.+)\/revision\/([^/]+)$/.exec(url.pathname);
    const resolve = /^\/(.+?)\/resolve\/([^/]+)\/(.+)$/.exec(url.pathname);
    const repoId = api?.[1] ?? resolve?.[1];
    const repo = repoId ? hub.repos.get(repoId) : undefined;
    const fail = (status: number, code: string): void => void res.writeHead(status, { 'X-Error-Code': code, 'Content-Type': 'application/json' }).end(JSON.stringify({ error: code }));
    if (!repo) return fail(404, 'RepoNotFound');
    if (repo.renamedTo) return void res.writeHead(307, { Location: req.url!.replace(`/${repoId}/`, `/${repo.renamedTo}/`) }).end();
    if (repo.gatedToken && req.headers.authorization !== `Bearer ${repo.gatedToken}`) return fail(401, 'GatedRepo');
    const revName = decodeURIComponent((api ?? resolve)![2]!);
    const rev = repo.revisions[revName] ?? Object.values(repo.revisions).find((r) => r.commit === revName);
    if (!rev) return fail(404, 'RevisionNotFound');
    if (api) {
      const siblings = Object.entries(rev.files).map(([rfilename, b]) => ({
        rfilename,
        size: b.length,
        blobId: gitBlobId(b),
        ...(isLfs(rfilename) ? { lfs: { sha256: sha256(b), size: b.length, pointerSize: 134 } } : {}),
      }));
      return void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ id: repoId, sha: rev.commit, siblings }));
    }
    const file = decodeURIComponent(resolve![3]!);
    const body = rev.files[file];
    if (!body) return fail(404, 'EntryNotFound');
    if (isLfs(file)) {
      return void res
        .writeHead(302, { Location: `${cdnBase}/blobs/${sha256(body)}`, 'X-Repo-Commit': rev.commit, 'X-Linked-Etag': `"${sha256(body)}"`, 'X-Linked-Size': String(body.length), ETag: `"${gitBlobId(body)}"` })
        .end();
    }
    res.writeHead(200, { 'X-Repo-Commit': rev.commit, ETag: `"${gitBlobId(body)}"`, 'Content-Length': String(body.length) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const endpoint = await listen(server);
  const close = (s: http.Server) => new Promise<void>((r) => s.close(() => r()));
  return {
    ...hub,
    endpoint,
    close: async () => {
      server.closeAllConnections();
      cdn.closeAllConnections();
      await Promise.all([close(server), close(cdn)]);
    },
  };
}
