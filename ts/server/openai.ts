/**
 * The OpenAI-compatible routes of the inference server (docs/embeddings.md "OpenAI-compatible
 * HTTP API"): `POST /v1/embeddings`, `GET /v1/models` and `GET /v1/models/{id}`, so OpenAI's
 * own clients work with `base_url` pointed here.
 *
 * An adapter, not a second implementation: the request is checked for OpenAI's envelope,
 * then handed to the `embeddings` command (`runEmbeddings`: the same validation, batcher
 * and reply as a WebSocket frame), under the same auth (the router: Bearer token or JWT),
 * rate limits (the WebSocket buckets, per client address) and metrics (counted as
 * `embeddings`). Errors use OpenAI's shape `{ error: { message, type, param, code } }`.
 */
import { ERROR_MESSAGES, ProtocolError, decodeValue, parseData } from '../protocol/index.js';
import type { EmbeddingsReply } from '../protocol/inference.js';
import { httpStatusOf } from '../protocol/http.js';
import {
  isTokenIdInput,
  openAiEmbeddingsSchema,
  openAiError,
  openAiErrorType,
  type OpenAiEmbeddingsReply,
  type OpenAiEncodingFormat,
  type OpenAiModel,
} from '../protocol/openai.js';
import type { Embedder } from '../embedder.js';
import { httpLimiterOf, type HttpRateLimiter } from './http/caller.js';
import type { HttpReply, HttpRequestInfo, HttpRouteOptions } from './http/router.js';
import type { WsServer } from './ws-server.js';

/** What the routes need from the inference server. */
export interface OpenAiHost {
  readonly ws: WsServer;
  readonly embedder: Embedder;
  runEmbeddings(data: unknown, cancelled: () => boolean): Promise<EmbeddingsReply>;
}

/** The type the requests are counted under in the server's metrics (as the WebSocket command). */
const METRICS_TYPE = 'embeddings';
const OWNED_BY = 'memory-server';
const MODELS_PREFIX = '/v1/models/';

/** The server's error code for a status the router answers itself, when its body names none. */
const ROUTER_CODES: Record<number, string> = { 401: 'unauthorized', 403: 'forbidden', 404: 'not_found', 405: 'method_not_allowed', 413: 'payload_too_large', 415: 'unsupported_media_type', 500: 'internal' };

/**
 * Any error reply on these routes in OpenAI's shape: ours already are; the router's own
 * (auth, origin, body size, a bug's 500) are rebuilt from their message, code and field.
 */
function routeErrorBody(status: number, body: unknown): object {
  const b = (typeof body === 'object' && body !== null ? body : {}) as {
    error?: unknown;
    message?: unknown;
    code?: unknown;
    data?: { field?: unknown };
  };
  if (typeof b.error === 'object' && b.error !== null) return b; // already OpenAI's shape
  const message = typeof b.message === 'string' ? b.message : typeof b.error === 'string' ? b.error : `HTTP ${status}`;
  const code = typeof b.code === 'string' ? b.code : (ROUTER_CODES[status] ?? (status >= 500 ? 'internal' : 'invalid_request'));
  const field = typeof b.data?.field === 'string' ? b.data.field : null;
  return openAiError(message, openAiErrorType(status), code, field);
}

const ROUTE_OPTIONS: HttpRouteOptions = { errorBody: routeErrorBody };

/**
 * The embeddings command names its fields `data.text` / `data.texts[i]`; here they are
 * parts of `input`.
 */
function inputField(field: string): string {
  return field.replace(/^data\.texts?/, 'input').replace(/^data\./, '');
}

function errorReply(err: ProtocolError): HttpReply {
  const status = httpStatusOf(err.code);
  const type = openAiErrorType(status);
  const field = typeof err.data?.field === 'string' ? err.data.field : null;
  const param = field === null ? null : inputField(field);
  const message = field === null ? err.message : err.message.replace(field, param!);
  const headers: Record<string, string> = {};
  const retryMs = err.data?.retry_after_ms;
  if (typeof retryMs === 'number') headers['Retry-After'] = String(Math.max(1, Math.ceil(retryMs / 1000)));
  else if (err.code === 'overloaded') headers['Retry-After'] = '1';
  return { status, headers, body: openAiError(message, type, err.code, param) };
}

/** Tokens of the texts as the embedder counts them (words for the hash embedder), for `usage`. */
function countTokens(embedder: Embedder, texts: string[]): number {
  let total = 0;
  if (embedder.tokenCounts) {
    const counts = embedder.tokenCounts(texts);
    for (let i = 0; i < counts.length; i++) total += counts[i]!;
    return total;
  }
  for (const t of texts) total += t.match(/\S+/g)?.length ?? 0;
  return total;
}

function encodeVector(v: Float32Array, format: OpenAiEncodingFormat): number[] | string {
  // base64 of the float32 bytes in memory order: little-endian on every supported platform (x64, arm64).
  return format === 'base64' ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64') : Array.from(v);
}

/** The OpenAI request → the `embeddings` command's data, or ProtocolError naming the OpenAI field. */
function commandData(body: unknown, embedder: Embedder): { data: { text: string } | { texts: string[] }; format: OpenAiEncodingFormat } {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new ProtocolError('invalid_request', 'request body must be a JSON object', { field: 'body' });
  }
  const input = (body as { input?: unknown }).input;
  // Before the schema: its union error would hide these two behind "must be a string or an array of strings".
  if (input === undefined) throw new ProtocolError('invalid_request', 'input: is required', { field: 'input' });
  if (isTokenIdInput(input)) {
    throw new ProtocolError('invalid_request', 'input: token ids are not supported; send the text', { field: 'input' });
  }
  const r = parseData(openAiEmbeddingsSchema, body);
  if (r.model !== embedder.name) {
    throw new ProtocolError('not_found', `model: "${r.model}" is not served here; this server embeds with "${embedder.name}" (GET /v1/models)`, {
      field: 'model',
    });
  }
  if (r.dimensions !== undefined && r.dimensions !== embedder.dims) {
    throw new ProtocolError(
      'invalid_request',
      `dimensions: ${r.dimensions} is not available; "${embedder.name}" embeddings have ${embedder.dims} dimensions (omit dimensions or give ${embedder.dims})`,
      { field: 'dimensions' },
    );
  }
  return { data: typeof r.input === 'string' ? { text: r.input } : { texts: r.input }, format: r.encoding_format };
}

async function embed(host: OpenAiHost, limiter: HttpRateLimiter | null, req: HttpRequestInfo): Promise<HttpReply> {
  const metrics = host.ws.metrics;
  const received = performance.now();
  metrics.messages++;
  metrics.bytesIn += req.body.length;
  if (host.ws.state !== 'running') {
    metrics.recordReply(METRICS_TYPE, performance.now() - received, true);
    return errorReply(new ProtocolError('unavailable', ERROR_MESSAGES.shuttingDown, { reason: 'shutting_down' }));
  }
  if (limiter) {
    const retryAfter = limiter.take(req.ip, req.body.length, received);
    if (retryAfter > 0) {
      metrics.rateLimited++;
      metrics.recordReply(METRICS_TYPE, performance.now() - received, true);
      const retry_after_ms = Number.isFinite(retryAfter) ? retryAfter : 60_000;
      return errorReply(new ProtocolError('rate_limited', ERROR_MESSAGES.rateLimited, { retry_after_ms }));
    }
  }
  let reply: HttpReply;
  // Counted in flight: a graceful shutdown waits for this answer.
  const done = host.ws.beginRequest();
  try {
    // decodeValue, not req.json(): invalid UTF-8 is refused, as in a WebSocket text frame, never read as U+FFFD.
    const { data, format } = commandData(decodeValue(req.body, false), host.embedder);
    const out = await host.runEmbeddings(data, req.aborted);
    const texts = 'texts' in data ? data.texts : [data.text];
    const vectors = out.embeddings ?? [out.embedding!];
    const tokens = countTokens(host.embedder, texts);
    const body: OpenAiEmbeddingsReply = {
      object: 'list',
      data: vectors.map((v, index) => ({ object: 'embedding', index, embedding: encodeVector(v, format) })),
      model: out.model,
      usage: { prompt_tokens: tokens, total_tokens: tokens },
    };
    reply = { body };
  } catch (err) {
    if (!(err instanceof ProtocolError)) {
      // The router's boundary answers 500 with a correlation id and logs the cause.
      metrics.internalErrors++;
      metrics.recordReply(METRICS_TYPE, performance.now() - received, true);
      throw err;
    }
    reply = errorReply(err);
  } finally {
    done();
  }
  metrics.recordReply(METRICS_TYPE, performance.now() - received, (reply.status ?? 200) >= 400);
  return reply;
}

function models(host: OpenAiHost, created: number): OpenAiModel[] {
  return [{ id: host.embedder.name, object: 'model', created, owned_by: OWNED_BY }];
}

/** Registers the OpenAI-compatible routes on the inference server (before it listens). */
export function addOpenAiRoutes(host: OpenAiHost): void {
  const created = Math.floor(Date.now() / 1000);
  const limiter = httpLimiterOf(host.ws);
  host.ws.http('post', '/v1/embeddings', (req) => embed(host, limiter, req), ROUTE_OPTIONS);
  host.ws.http('get', '/v1/models', () => ({ body: { object: 'list', data: models(host, created) } }), ROUTE_OPTIONS);
  // `*`, not `:id`: model ids may hold slashes (hub ids such as `sentence-transformers/all-MiniLM-L6-v2`).
  host.ws.http(
    'get',
    `${MODELS_PREFIX}*`,
    (req) => {
      let id: string;
      try {
        id = decodeURIComponent(req.path.slice(MODELS_PREFIX.length));
      } catch {
        id = req.path.slice(MODELS_PREFIX.length);
      }
      const model = models(host, created).find((m) => m.id === id);
      if (model) return { body: model };
      return errorReply(new ProtocolError('not_found', `model: "${id}" is not served here; this server embeds with "${host.embedder.name}"`, { field: 'model' }));
    },
    ROUTE_OPTIONS,
  );
}
