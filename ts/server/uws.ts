/**
 * The only import of uWebSockets.js. The npm build we use silently falls back
 * to a slow pure-JS imitation (with only a console warning) when its native
 * binary fails to load; we refuse to run on it.
 */
import uWSModule from 'uWebSockets.js';

export type UwsModule = typeof uWSModule;

/** True when `mod` is the native uWebSockets.js addon, not the JS fallback. */
export function isNativeUws(mod: unknown = uWSModule): boolean {
  if (typeof mod !== 'object' || mod === null) return false;
  const m = mod as Record<string, unknown>;
  return (
    typeof m.App === 'function' &&
    typeof m.SSLApp === 'function' &&
    typeof m.us_socket_local_port === 'function' &&
    typeof m.LIBUS_LISTEN_EXCLUSIVE_PORT === 'number' &&
    typeof m.SHARED_COMPRESSOR === 'number' &&
    /\[native code\]/.test(Function.prototype.toString.call(m.App))
  );
}

export function assertNativeUws(mod: unknown = uWSModule): void {
  if (!isNativeUws(mod)) {
    throw new Error(
      'uWebSockets.js native binary is not loaded (the package fell back to its slow JavaScript imitation, ' +
        `or UWS_USE_FALLBACK is set). Node ${process.version} (ABI ${process.versions.modules}) on ` +
        `${process.platform}-${process.arch} needs a matching uws_*.node binary; refusing to start.`,
    );
  }
}

assertNativeUws();

export const uWS: UwsModule = uWSModule;
/** LIBUS_LISTEN_EXCLUSIVE_PORT: listen without SO_REUSEPORT. */
export const LISTEN_EXCLUSIVE = 1;
export type {
  TemplatedApp,
  WebSocket as UwsWebSocket,
  HttpRequest as UwsHttpRequest,
  HttpResponse as UwsHttpResponse,
  us_listen_socket,
  us_socket_context_t,
} from 'uWebSockets.js';
