/**
 * The only import of uWebSockets.js. uWebSockets.js is not on npm under its own name; two
 * republished builds are dependencies, and the newest one whose binary loads is used:
 *  1. `@btc-vision/uwebsockets.js` 20.57: Node 20/22/24/25 (ABI 115/127/137/141) on Linux
 *     x64/arm64, macOS and Windows; its Linux binaries need glibc ≥ 2.38.
 *  2. `@trufflesuite/uws-js-unofficial` 20.30 (aliased `uWebSockets.js`): Node 16/18/20 on
 *     Linux x64/arm64/arm, macOS and Windows; loads on glibc 2.36.
 * The trufflesuite package silently falls back to a slow pure-JS imitation when its binary
 * fails to load, so its binary is required directly, never its entry point. When no build
 * loads, start-up fails with one `UwsUnavailableError` naming Node, the platform, glibc and
 * what to install. `MEMORY_SERVER_UWS=btc-vision|trufflesuite` pins one build (tests).
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import type uWSTypes from 'uWebSockets.js';
import { glibcVersion } from '../platform.js';

export type UwsModule = typeof uWSTypes;

const require = createRequire(import.meta.url);

/** True when `mod` is the native uWebSockets.js addon, not the JS fallback. */
export function isNativeUws(mod: unknown): boolean {
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

/** No uWebSockets.js build loads on this Node/platform: a start-up error, never a fallback. */
export class UwsUnavailableError extends Error {
  readonly code = 'uws_unavailable';
  constructor(message: string) {
    super(message);
    this.name = 'UwsUnavailableError';
  }
}

export function assertNativeUws(mod: unknown): void {
  if (!isNativeUws(mod)) {
    throw new UwsUnavailableError(
      'uWebSockets.js native binary is not loaded (the module given is its slow JavaScript imitation); refusing to start.',
    );
  }
}

export { glibcVersion };

interface UwsBuild {
  readonly name: string;
  readonly description: string;
  /** Loads the native binary for this process, or throws. */
  load(binaryName: string): unknown;
}

const BUILDS: readonly UwsBuild[] = [
  {
    name: 'btc-vision',
    description: '@btc-vision/uwebsockets.js 20.57 (Node 20/22/24/25, glibc ≥ 2.38 on Linux)',
    // Its package exports only '.', and its entry point throws (never falls back) when
    // the binary does not load; the binary beside it is required directly all the same.
    load: (binaryName) => require(path.join(path.dirname(require.resolve('@btc-vision/uwebsockets.js')), binaryName)),
  },
  {
    name: 'trufflesuite',
    description: '@trufflesuite/uws-js-unofficial 20.30 (Node 16/18/20, glibc ≥ 2.36 on Linux)',
    load: (binaryName) =>
      require(path.join(path.dirname(require.resolve('uWebSockets.js')), '..', 'binaries', binaryName)),
  },
];

export interface LoadedUws {
  readonly module: UwsModule;
  /** Which build loaded ('btc-vision' or 'trufflesuite'). */
  readonly build: string;
}

/** Tries each build, newest first; throws one `UwsUnavailableError` naming every reason. */
export function loadUws(only = process.env.MEMORY_SERVER_UWS): LoadedUws {
  const binaryName = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`;
  const tried: string[] = [];
  const builds = only ? BUILDS.filter((b) => b.name === only) : BUILDS;
  if (builds.length === 0) {
    throw new UwsUnavailableError(`MEMORY_SERVER_UWS=${only} names no uWebSockets.js build (btc-vision, trufflesuite)`);
  }
  for (const build of builds) {
    try {
      const mod = build.load(binaryName);
      if (isNativeUws(mod)) return { module: mod as UwsModule, build: build.name };
      tried.push(`${build.description}: ${binaryName} is not a native uWebSockets.js addon`);
    } catch (e) {
      const why = e instanceof Error ? e.message.split('\n').find((l) => l.trim() !== '') ?? e.message : String(e);
      tried.push(`${build.description}: ${why}`);
    }
  }
  const glibc = glibcVersion();
  const where = `Node ${process.version} (ABI ${process.versions.modules}) on ${process.platform}-${process.arch}${
    process.platform === 'linux' ? (glibc ? ` with glibc ${glibc}` : ' without glibc (musl?)') : ''
  }`;
  throw new UwsUnavailableError(
    `no uWebSockets.js build loads on ${where}. Supported: Node 20, 22 or 24 on Linux with glibc ≥ 2.38, ` +
      'macOS or Windows; Node 20 on Linux with glibc 2.36–2.37. ' +
      `Install Node 20 (glibc ${glibc ?? '?'} here) or run on a system with glibc ≥ 2.38. Tried: ${tried.join('; ')}`,
  );
}

const loaded = loadUws();

export const uWS: UwsModule = loaded.module;
/** Which uWebSockets.js build this process runs on. */
export const uwsBuild: string = loaded.build;
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
