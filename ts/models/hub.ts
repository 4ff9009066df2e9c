/**
 * A client for a Hugging Face–compatible hub, speaking the protocol huggingface_hub uses:
 *
 * - `GET {endpoint}/api/models/{repo}/revision/{revision}?blobs=true` → the commit (`sha`)
 *   and the files (`siblings`: `rfilename`, `size`, `blobId` = git blob sha1, `lfs.sha256`).
 * - `HEAD {endpoint}/{repo}/resolve/{commit}/{path}`, redirects not followed → `X-Linked-Etag`
 *   (the sha256 of an LFS file) or `ETag`, `X-Linked-Size` or `Content-Length`, and for LFS
 *   files a 302 to the CDN (`Location`). Relative redirects (a renamed repo) are followed.
 * - `GET` of that location with `Range: bytes=N-` to resume a partial download.
 *
 * Node's built-in fetch does the HTTP; redirects are followed here by hand so the token
 * (`Authorization: Bearer $HF_TOKEN`) goes only to the hub's own origin, never to a CDN.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, statSync, truncateSync, unlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { z } from 'zod';

export type HubErrorCode = 'not_found' | 'unauthorized' | 'network' | 'integrity' | 'protocol' | 'offline';

export class HubError extends Error {
  constructor(
    readonly code: HubErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'HubError';
  }
}

export interface RemoteFile {
  path: string;
  size?: number;
  /** sha256 of an LFS file. */
  sha256?: string;
  /** git blob sha1 of a regular file. */
  blobId?: string;
}

export interface RepoInfo {
  commit: string;
  files: Map<string, RemoteFile>;
}

export interface FileMetadata {
  /** The blob name: X-Linked-Etag or ETag without quotes or `W/`. */
  etag: string;
  commit: string | null;
  size: number;
  /** Where the bytes are (the CDN for LFS files). */
  url: string;
}

export interface HubClientOptions {
  /** Default HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default HF_TOKEN. */
  token?: string;
  /** Per request: headers (and the API's body) must arrive within it (ms). Default 10 s. */
  timeoutMs?: number;
  /** The longest pause inside a download before it is cut and resumed (ms). Default timeoutMs. */
  stallMs?: number;
  /** Attempts of one download before giving up (each resumes where the last stopped). Default 5. */
  attempts?: number;
}

const repoInfoSchema = z.object({
  sha: z.string().regex(/^[0-9a-f]{40}$/, 'not a commit id'),
  siblings: z
    .array(
      z.object({
        rfilename: z.string(),
        size: z.number().int().nonnegative().optional(),
        blobId: z.string().optional(),
        lfs: z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/), size: z.number().int().nonnegative() }).optional(),
      }),
    )
    .default([]),
});

const MAX_REDIRECTS = 5;

/** `"abc"`, `W/"abc"` → `abc`. */
export function normalizeEtag(etag: string | null): string | null {
  if (!etag) return null;
  return etag.replace(/^W\//, '').replace(/^"|"$/g, '');
}

/** git's blob id: sha1 of `blob <size>\0<bytes>` — the hub's `blobId` and ETag of a regular file. */
async function gitBlobSha1(file: string): Promise<string> {
  const h = createHash('sha1');
  h.update(`blob ${statSync(file).size}\0`);
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

export class HubClient {
  readonly endpoint: string;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  private readonly stallMs: number;
  private readonly attempts: number;

  constructor(options: HubClientOptions = {}, env: NodeJS.ProcessEnv = process.env) {
    this.endpoint = (options.endpoint ?? env.HF_ENDPOINT ?? 'https://huggingface.co').replace(/\/+$/, '');
    this.token = options.token ?? (env.HF_TOKEN || env.HUGGING_FACE_HUB_TOKEN || undefined);
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.stallMs = options.stallMs ?? this.timeoutMs;
    this.attempts = options.attempts ?? 5;
  }

  /** The commit a revision names and the repository's files at it. */
  async repoInfo(repo: string, revision: string): Promise<RepoInfo> {
    const url = `${this.endpoint}/api/models/${repo}/revision/${encodeURIComponent(revision)}?blobs=true`;
    const res = await this.followRedirects(url, {}, true); // a renamed repository redirects to its new name
    if (!res.ok) throw this.httpError(res, repo, revision, null);
    let body: unknown;
    try {
      body = await res.json();
    } catch (e) {
      throw new HubError('protocol', `${url}: the hub's answer is not JSON (${(e as Error).message})`, { cause: e });
    }
    const parsed = repoInfoSchema.safeParse(body);
    if (!parsed.success) {
      const i = parsed.error.issues[0]!;
      throw new HubError('protocol', `${url}: unexpected answer (${i.path.join('.') || 'body'}: ${i.message})`);
    }
    const files = new Map<string, RemoteFile>();
    for (const s of parsed.data.siblings) {
      files.set(s.rfilename, {
        path: s.rfilename,
        ...(s.lfs ? { size: s.lfs.size, sha256: s.lfs.sha256 } : s.size !== undefined ? { size: s.size } : {}),
        ...(s.blobId ? { blobId: s.blobId } : {}),
      });
    }
    return { commit: parsed.data.sha, files };
  }

  /** HEAD of a file at a commit: its blob name, size and where to get it. */
  async fileMetadata(repo: string, commit: string, file: string): Promise<FileMetadata> {
    let url = `${this.endpoint}/${repo}/resolve/${encodeURIComponent(commit)}/${file.split('/').map(encodeURIComponent).join('/')}`;
    for (let hop = 0; ; hop++) {
      const res = await this.request(url, 'HEAD', { 'Accept-Encoding': 'identity' }, false);
      const location = res.headers.get('location');
      const relative = location !== null && !/^[a-z][a-z0-9+.-]*:/i.test(location);
      if (res.status >= 300 && res.status < 400 && relative && hop < MAX_REDIRECTS) {
        url = new URL(location, url).toString(); // a renamed repository: same hub, follow
        continue;
      }
      if (res.status >= 400) throw this.httpError(res, repo, commit, file);
      const etag = normalizeEtag(res.headers.get('x-linked-etag') ?? res.headers.get('etag'));
      const size = Number(res.headers.get('x-linked-size') ?? res.headers.get('content-length'));
      if (!etag) throw new HubError('protocol', `${url}: the hub sent no ETag`);
      if (!Number.isSafeInteger(size) || size < 0) throw new HubError('protocol', `${url}: the hub sent no file size`);
      return { etag, commit: res.headers.get('x-repo-commit'), size, url: location ? new URL(location, url).toString() : url };
    }
  }

  /**
   * Downloads `meta.url` into `dest` (a `.incomplete` file), resuming from its current
   * length with a Range request after a cut connection, then checks the size and the hash
   * the hub's metadata gives (sha256 for LFS files, the git blob sha1 otherwise). A file
   * that fails the check is deleted; a cut one is kept for the next run to resume.
   */
  async download(meta: FileMetadata, remote: RemoteFile | undefined, dest: string, onBytes?: (done: number, total: number) => void): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      let have = existsSync(dest) ? statSync(dest).size : 0;
      if (have > meta.size) {
        truncateSync(dest, 0);
        have = 0;
      }
      if (have === meta.size) break;
      try {
        await this.fetchInto(meta.url, dest, have, meta.size, onBytes);
        break;
      } catch (e) {
        if (e instanceof HubError && e.code !== 'network') throw e;
        if (attempt >= this.attempts) {
          const got = existsSync(dest) ? statSync(dest).size : 0;
          throw new HubError('network', `${meta.url}: download interrupted at ${got} of ${meta.size} bytes after ${attempt} attempts (${(e as Error).message}); the partial file is kept and the next fetch resumes it`, { cause: e });
        }
      }
    }
    await verify(dest, meta, remote);
  }

  private async fetchInto(url: string, dest: string, from: number, total: number, onBytes?: (done: number, total: number) => void): Promise<void> {
    const headers: Record<string, string> = { 'Accept-Encoding': 'identity', ...(from > 0 ? { Range: `bytes=${from}-` } : {}) };
    const res = await this.followRedirects(url, headers);
    if (res.status !== 200 && res.status !== 206) throw new HubError(res.status >= 500 ? 'network' : 'protocol', `${url}: HTTP ${res.status} while downloading`);
    // 200 to a Range request: the server sends the whole file, so start over.
    const append = from > 0 && res.status === 206;
    if (append && !(res.headers.get('content-range') ?? '').startsWith(`bytes ${from}-`)) {
      throw new HubError('protocol', `${url}: asked for bytes ${from}- and got ${res.headers.get('content-range') ?? 'no Content-Range'}`);
    }
    let done = append ? from : 0;
    // Each chunk is on disk before the next is read: when the connection breaks, every byte
    // received is kept for the resume (a stream pipeline drops the chunks still buffered in
    // its file stream when the source fails).
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    let stalled = false;
    const onStall = (): void => {
      stalled = true;
      void reader.cancel().catch(() => undefined);
    };
    let stall = setTimeout(onStall, this.stallMs);
    const file = await open(dest, append ? 'a' : 'w');
    try {
      for (;;) {
        const { done: end, value } = await reader.read();
        if (end) break;
        clearTimeout(stall);
        stall = setTimeout(onStall, this.stallMs);
        if (done + value.length > total) throw new HubError('integrity', `${url}: the hub sent more than the ${total} bytes it announced`);
        await file.write(value);
        done += value.length;
        onBytes?.(done, total);
      }
    } catch (e) {
      if (e instanceof HubError) throw e;
      throw new HubError('network', (e as Error).message, { cause: e });
    } finally {
      clearTimeout(stall);
      await file.close();
    }
    if (stalled && done !== total) throw new HubError('network', `no data for ${this.stallMs} ms`);
    if (done !== total) throw new HubError('network', `connection closed at ${done} of ${total} bytes`);
  }

  /** GET, following redirects by hand: the token only ever goes to the hub's origin. */
  private async followRedirects(url: string, headers: Record<string, string>, totalTimeout = false): Promise<Response> {
    for (let hop = 0; hop <= MAX_REDIRECTS; hop++) {
      const res = await this.request(url, 'GET', headers, totalTimeout);
      const location = res.headers.get('location');
      if (res.status < 300 || res.status >= 400 || !location) return res;
      await res.body?.cancel();
      url = new URL(location, url).toString();
    }
    throw new HubError('protocol', `${url}: more than ${MAX_REDIRECTS} redirects`);
  }

  /** One request; connection failures and timeouts become `network` errors. */
  private async request(url: string, method: 'GET' | 'HEAD', headers: Record<string, string>, bodyTimeout: boolean): Promise<Response> {
    const h: Record<string, string> = { 'User-Agent': 'memory-server', ...headers };
    if (this.token && new URL(url).origin === new URL(this.endpoint).origin) h.Authorization = `Bearer ${this.token}`;
    // Every request must answer (headers) within the timeout; the API's body must arrive in it
    // too, while a download's body is timed by its stalls (fetchInto), not its total time.
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new DOMException(`no answer in ${this.timeoutMs} ms`, 'TimeoutError')), this.timeoutMs);
    timer.unref();
    try {
      const res = await fetch(url, { method, headers: h, redirect: 'manual', signal: ctl.signal });
      if (!bodyTimeout) clearTimeout(timer);
      return res;
    } catch (e) {
      clearTimeout(timer);
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      const why = (e as Error).name === 'TimeoutError' ? `no answer in ${this.timeoutMs} ms` : (cause?.code ?? cause?.message ?? (e as Error).message);
      throw new HubError('network', `cannot reach ${new URL(url).origin} (${why})`, { cause: e });
    }
  }

  private httpError(res: Response, repo: string, revision: string, file: string | null): HubError {
    const code = res.headers.get('x-error-code');
    const what = file ? `${repo}: ${file} at ${revision}` : `${repo} (revision ${revision})`;
    if (res.status === 401 || res.status === 403 || code === 'GatedRepo') {
      const hint = this.token ? 'HF_TOKEN is set but was refused; accept the model\'s terms on the hub or check the token' : 'a gated or private model needs HF_TOKEN';
      return new HubError('unauthorized', `${what}: access denied by ${this.endpoint} (HTTP ${res.status}): ${hint}`);
    }
    if (res.status === 404) {
      const why = code === 'RevisionNotFound' ? `no revision ${revision}` : code === 'EntryNotFound' ? 'no such file' : file ? 'not found' : 'no such model or revision';
      return new HubError('not_found', `${what}: ${why} on ${this.endpoint} (HTTP 404)`);
    }
    return new HubError(res.status >= 500 ? 'network' : 'protocol', `${what}: HTTP ${res.status} from ${this.endpoint}`);
  }
}

/** Size and hash of a finished download against the hub's metadata; a mismatch deletes it. */
async function verify(dest: string, meta: FileMetadata, remote: RemoteFile | undefined): Promise<void> {
  const fail = (why: string): never => {
    unlinkSync(dest);
    throw new HubError('integrity', `${meta.url}: ${why}; the download was discarded`);
  };
  const size = statSync(dest).size;
  if (size !== meta.size) fail(`${size} bytes received, ${meta.size} announced`);
  if (remote?.size !== undefined && remote.size !== size) fail(`${size} bytes received, the repository lists ${remote.size}`);
  const expectedSha256 = remote?.sha256 ?? (/^[0-9a-f]{64}$/.test(meta.etag) ? meta.etag : undefined);
  if (expectedSha256) {
    if (remote?.sha256 && /^[0-9a-f]{64}$/.test(meta.etag) && meta.etag !== remote.sha256) {
      fail(`the file's ETag ${meta.etag} is not the sha256 ${remote.sha256} the repository lists`);
    }
    const got = await sha256(dest);
    if (got !== expectedSha256) fail(`sha256 mismatch (expected ${expectedSha256}, got ${got})`);
    return;
  }
  const expectedSha1 = remote?.blobId ?? (/^[0-9a-f]{40}$/.test(meta.etag) ? meta.etag : undefined);
  if (expectedSha1) {
    const got = await gitBlobSha1(dest);
    if (got !== expectedSha1) fail(`git blob id mismatch (expected ${expectedSha1}, got ${got})`);
  }
}
