/**
 * The message envelope (docs/protocol.md "Envelope"). Every server → client message is either a
 * SuccessReply (also used for pushed events) or an ErrorReply.
 */
import type { ErrorCode } from './errors.js';

export type RequestId = string | number;

export interface Request<D = Record<string, unknown>> {
  type: string;
  id?: RequestId;
  /** ISO-8601, informational. */
  timestamp?: string;
  data?: D;
  /** Other top-level fields, when a client sent any (a control-center `subscribe` may put its lists there instead of in `data`). */
  extra?: Record<string, unknown>;
}

export interface SuccessReply<D = unknown> {
  status: 'success';
  /** The request type, or the event name for pushed events. */
  type: string;
  id?: RequestId;
  timestamp: string;
  data: D;
}

export interface ErrorReply {
  status: 'error';
  type?: string;
  id?: RequestId;
  timestamp: string;
  code: ErrorCode;
  /** Human text; `error` carries the same text (clients read either field). */
  message: string;
  error: string;
  data?: Record<string, unknown>;
}

export type Reply<D = unknown> = SuccessReply<D> | ErrorReply;

// ISO timestamps are formatted at most once per millisecond (every reply carries one).
let lastMs = 0;
let lastIso = '';
const now = (): string => {
  const ms = Date.now();
  if (ms !== lastMs) {
    lastMs = ms;
    lastIso = new Date(ms).toISOString();
  }
  return lastIso;
};

/** A success reply; `id` is omitted when undefined. */
export function success<D>(type: string, id: RequestId | undefined, data: D): SuccessReply<D> {
  return id === undefined
    ? { status: 'success', type, timestamp: now(), data }
    : { status: 'success', type, id, timestamp: now(), data };
}

/** A pushed event (a success message without id). */
export function event<D>(name: string, data: D): SuccessReply<D> {
  return { status: 'success', type: name, timestamp: now(), data };
}

export interface ErrorReplyOptions {
  type?: string;
  id?: RequestId;
  data?: Record<string, unknown>;
}

export function errorReply(code: ErrorCode, message: string, options: ErrorReplyOptions = {}): ErrorReply {
  // Key order: status, type, id, timestamp, code, message, error, data.
  const reply = { status: 'error' } as ErrorReply;
  if (options.type !== undefined) reply.type = options.type;
  if (options.id !== undefined) reply.id = options.id;
  reply.timestamp = now();
  reply.code = code;
  reply.message = message;
  reply.error = message;
  if (options.data !== undefined) reply.data = options.data;
  return reply;
}

export function isErrorReply(msg: unknown): msg is ErrorReply {
  return typeof msg === 'object' && msg !== null && (msg as { status?: unknown }).status === 'error';
}

export function isSuccessReply(msg: unknown): msg is SuccessReply {
  return typeof msg === 'object' && msg !== null && (msg as { status?: unknown }).status === 'success';
}

export function isRequestId(value: unknown): value is RequestId {
  return typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value));
}
