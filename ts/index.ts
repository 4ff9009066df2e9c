export { VERSION } from './version.js';
export { createServers, type CreateServersOptions, type Servers, type ServersFor, type SharedServerOptions } from './servers.js';
export { MemoryServer, createMemoryServer, toWireMemory, type MemoryServerOptions, type FsyncPolicy } from './server/memory.js';
export { InferenceServer, createInferenceServer, type InferenceServerOptions } from './server/inference.js';
export { EmbeddingBatcher, type BatcherOptions } from './server/inference-batcher.js';
export { WsServer, Connection, type WsServerOptions, type ListenInfo } from './server/ws-server.js';
export { uwsBuild } from './server/uws.js';
export { HashEmbedder, createEmbedder, type Embedder, type EmbedderOptions } from './embedder.js';
export { resolveModel, type ModelSpec, type ResolvedModel } from './models/resolve.js';
export { hubCacheDir, listCachedModels, removeCachedModel, type CachedModel } from './models/cache.js';
export { MemoryStore, NativeError, NativeLoadError, kernelInfo, hashEmbed, wordWindows, HASH_DIMS, HASH_EMBEDDER_NAME } from './native.js';
export * from './protocol/index.js';
export * as memoryProtocol from './protocol/memory.js';
export * as inferenceProtocol from './protocol/inference.js';
export * as controlProtocol from './protocol/control.js';
export {
  startControlCenter,
  createControlCenter,
  inProcessComponents,
  ChildComponent,
  InProcessComponent,
  type StartControlCenterOptions,
  type RunningControlCenter,
  type ControlCenter,
} from './control/index.js';
