/**
 * Machine-readable error codes of the wire protocol (docs/protocol.md "Error codes") and the error
 * class command handlers throw to answer with one of them.
 */

export const ERROR_CODES = [
  'invalid_json',
  'unknown_type',
  'invalid_request',
  'payload_too_large',
  'rate_limited',
  'not_found',
  'overloaded',
  'unavailable',
  'internal',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Texts clients match on: fixed, word for word. */
export const ERROR_MESSAGES = {
  invalidJson: 'Invalid JSON format',
  unknownType: (type: unknown): string => `Unknown command type: ${String(type)}`,
  rateLimited: 'Rate limit exceeded',
  shuttingDown: 'Server is shutting down',
  internal: (correlationId: string): string =>
    `Internal server error (correlation id: ${correlationId})`,
} as const;

/**
 * Thrown by handlers (and by the codec) to produce an error reply with a
 * stable `code`. `data` is copied into the reply's `data` field
 * (e.g. `{ retry_after_ms }` for `rate_limited`, `{ reason: 'storage_full' }`).
 */
export class ProtocolError extends Error {
  readonly code: ErrorCode;
  readonly data?: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, data?: Record<string, unknown>) {
    super(message);
    this.name = 'ProtocolError';
    this.code = code;
    if (data !== undefined) this.data = data;
  }
}

export function isProtocolError(err: unknown): err is ProtocolError {
  return err instanceof ProtocolError;
}

export const invalidJson = (): ProtocolError => new ProtocolError('invalid_json', ERROR_MESSAGES.invalidJson);
export const unknownType = (type: unknown): ProtocolError =>
  new ProtocolError('unknown_type', ERROR_MESSAGES.unknownType(type));
export const invalidRequest = (message: string): ProtocolError => new ProtocolError('invalid_request', message);
export const notFound = (message: string): ProtocolError => new ProtocolError('not_found', message);
