export * from './ws-server.js';
export * from './auth.js';
export { OriginPolicy } from './origin.js';
export { takeBudget, type RateBudget, type RateLimitOptions } from './rate-limit.js';
export { ServerMetrics, type MetricsSnapshot, type TypeMetrics } from './metrics.js';
export { isNativeUws, assertNativeUws, loadUws, uwsBuild, UwsUnavailableError } from './uws.js';
