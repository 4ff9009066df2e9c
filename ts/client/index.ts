/**
 * `memory-server/client`: clients for the memory server, the inference server and
 * the control center, for browsers and Node (pass `WebSocket` from `ws` in Node).
 */
export { DEFAULTS } from './defaults.js';
export { ClientError, isClientError, type ClientErrorCode, type ClientFailureCode } from './errors.js';
export { TypedEmitter, type EventMap } from './emitter.js';
export { randomId } from './ids.js';
export {
  RequestManager,
  type RequestEntry,
  type RequestManagerOptions,
  type OutgoingMessage,
  type CreateOptions as RequestOptions,
} from './request-manager.js';
export { ReconnectScheduler, reconnectDelay, shouldReconnect, FINAL_CLOSE_CODES, type ReconnectOptions, type ScheduledAttempt } from './reconnect.js';
export { Heartbeat, type HeartbeatOptions, type HeartbeatHooks } from './heartbeat.js';
export {
  BaseClient,
  toClientError,
  type ConnectionEvents,
  type ConnectionOptions,
  type ConnectionState,
  type CloseInfo,
  type WebSocketConstructor,
  type WebSocketLike,
} from './connection.js';
export {
  MemoryClient,
  MEMORY_EVENT_NAMES,
  type MemoryClientOptions,
  type MemoryClientEvents,
  type MemoryEvent,
  type MemoryEventHandler,
  type MemoryEventName,
  type NamespaceOption,
  type StoreOptions,
  type StoreItemInput,
  type StoreManyOptions,
  type RetrieveOptions,
  type ListOptions,
  type UpdateChanges,
  type SubscribeOptions,
  type WireMemory,
} from './memory.js';
export {
  InferenceClient,
  type InferenceClientOptions,
  type InferenceClientEvents,
  type EmbeddingsConfig,
  type ProcessConfig,
  type SingleEmbeddingReply,
  type BatchEmbeddingsReply,
  type EmbeddingsReply,
  type ProcessReply,
  type ProcessChunk,
  type InferenceStatsReply,
} from './inference.js';
export {
  ControlCenterClient,
  type ControlCenterClientOptions,
  type ControlCenterClientEvents,
  type StatusMessage,
  type StatusFilter,
  type ComponentStatus,
  type ComponentState,
  type ComponentName,
  type SystemMetrics,
  type ComponentActionReply,
  type SubscribeStatusReply,
  type MetricKey,
} from './control-center.js';
export type {
  StoreReply,
  StoreBatchReply,
  StoreResult,
  RetrieveReply,
  ListReply,
  DeleteReply,
  NamespacesReply,
  SubscribeReply,
  MemoryEventData,
  MemoryStatsReply,
  Filter,
} from '../protocol/memory.js';
export type { VectorInput } from './vectors.js';
export type { ErrorCode } from '../protocol/errors.js';
export type { RequestId, Reply, SuccessReply, ErrorReply } from '../protocol/envelope.js';
