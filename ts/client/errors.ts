/**
 * The one error class the client rejects with. `code` is stable (switch on it);
 * server error replies keep the server's code, message and `data`.
 */
import type { ErrorCode } from '../protocol/errors.js';

/** Client-side failure codes (the server's codes pass through unchanged). */
export type ClientFailureCode =
  /** No reply within the request timeout. */
  | 'timeout'
  /** The connection ended (client closed, close 1000/1008, reconnect exhausted) before a reply. */
  | 'disconnected'
  /** The send queue was full while disconnected; the oldest queued request is rejected. */
  | 'queue_full'
  /** Neither the `WebSocket` option nor `globalThis.WebSocket` is available. */
  | 'no_websocket'
  /** The WebSocket reported an error (connection refused, TLS, …). */
  | 'socket_error'
  /** No `fetch` for the REST helpers (pass the `fetch` option). */
  | 'no_fetch'
  /** A REST helper got a non-2xx answer. */
  | 'http_error';

export type ClientErrorCode = ClientFailureCode | ErrorCode;

export class ClientError extends Error {
  readonly code: ClientErrorCode;
  /** The error reply's `data` (e.g. `{ retry_after_ms }`), or details of a client failure. */
  readonly data?: Record<string, unknown>;
  /** The request type this error answers, when known. */
  readonly type?: string;

  constructor(code: ClientErrorCode, message: string, options: { data?: Record<string, unknown>; type?: string } = {}) {
    super(message);
    this.name = 'ClientError';
    this.code = code;
    if (options.data !== undefined) this.data = options.data;
    if (options.type !== undefined) this.type = options.type;
  }
}

export function isClientError(err: unknown): err is ClientError {
  return err instanceof ClientError;
}
