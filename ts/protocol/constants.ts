/**
 * Every tunable of the connection layer, with its named default, in one place
 * (used by servers, client and tests alike). Browser-safe: no Node imports.
 */

export const PROTOCOL_VERSION = 1;

/** WebSocket close codes used by the servers (docs/connection.md "Close codes"). */
export const CLOSE_CODES = {
  /** Normal closure. */
  NORMAL: 1000,
  /** Server shutting down (graceful). */
  GOING_AWAY: 1001,
  /** Policy violation: auth or abuse (sustained rate-limit excess). */
  POLICY_VIOLATION: 1008,
  /** Frame larger than maxFrameBytes. */
  MESSAGE_TOO_BIG: 1009,
  /** Internal error. */
  INTERNAL_ERROR: 1011,
  /** Try again later: connection limit, send buffer full. */
  TRY_AGAIN_LATER: 1013,
} as const;

/**
 * Objects and arrays a request frame may nest, counting the envelope object as level 1
 * (so `data.metadata` of a single store is level 3). Deeper frames are `invalid_request`
 * before anything recursive (msgpackr's decoder, JSON.stringify, the store) sees them.
 */
export const MAX_NESTING_DEPTH = 32;

export type CloseCode = (typeof CLOSE_CODES)[keyof typeof CLOSE_CODES];

const KiB = 1024;
const MiB = 1024 * KiB;

export const DEFAULTS = {
  /** Bind address; `localhost` binds 127.0.0.1. */
  host: 'localhost',
  ports: {
    memory: 5000,
    inference: 5005,
    /** The inference server tries 5005…5014 (port + 9). */
    inferencePortRange: 9,
    control: 9000,
  },
  /** Upgrade paths of the memory and inference servers (query string ignored). */
  wsPaths: ['/', '/ws'] as readonly string[],
  /** Browser origins allowed by default; `*` allows any. Requests without Origin are allowed. */
  origins: [
    'http://localhost:*',
    'http://127.0.0.1:*',
    'https://localhost:*',
    'https://127.0.0.1:*',
  ] as readonly string[],
  /** Server pings every this many ms… */
  pingIntervalMs: 20_000,
  /** …and drops a client that has not answered (pong or any frame) within this. */
  pongTimeoutMs: 20_000,
  /** Graceful-close budget: how long shutdown waits for in-flight replies before closing anyway. */
  closeTimeoutMs: 10_000,
  /**
   * Largest accepted frame; larger frames are closed with 1009 (docs/connection.md "Limits").
   * Fits the inference server's largest `embeddings` request (256 texts at the 64 KiB text
   * limit: 16 MiB of text, plus its JSON) and a full store batch (1,000 items) with 384-d
   * embeddings as JSON numbers even at the longest float32 notation (23 characters each, as
   * `-1.2345678901234567e-12`: 9.5 MB with ~200-character texts and metadata, measured in
   * test/batch-ingest.test.ts), or ~1.8 MB as MessagePack float32 bins.
   */
  maxFrameBytes: 17 * MiB,
  /** Per-connection send buffer bound: events are dropped above it; a reply that cannot be queued closes with 1013. */
  maxBufferedBytes: 4 * MiB,
  /** Byte budget of one `list` / `retrieve` reply's memories (a page stops there; at least one memory is sent). */
  maxReplyBytes: 1 * MiB,
  /** Requests queued (received, not yet answered) per connection before the connection is closed with 1013. */
  maxQueuedRequests: 4096,
  maxConnections: 20_000,
  maxConnectionsPerIp: 1_000,
  rateLimit: {
    messagesPerSecond: 2_000,
    messagesBurst: 4_000,
    bytesPerSecond: 64 * MiB,
    bytesBurst: 128 * MiB,
    /** Close with 1008 after more than this many rate-limited frames within `rejectWindowMs`. */
    closeAfterRejected: 1_000,
    rejectWindowMs: 10_000,
  },
  /** permessage-deflate (SHARED_COMPRESSOR) off by default. */
  compression: false,
  logLevel: 'info',
  /** Control center status broadcast interval (docs/control-center.md). */
  statusIntervalMs: 2_000,
  /** Client reconnect policy (docs/client.md "Connection states and reconnect"). */
  client: {
    requestTimeoutMs: 30_000,
    reconnectIntervalMs: 5_000,
    reconnectAttempts: 5,
    controlReconnectInitialMs: 3_000,
    controlReconnectMaxMs: 60_000,
    controlReconnectAttempts: 10,
    maxQueuedWhileDisconnected: 1_000,
  },
} as const;
