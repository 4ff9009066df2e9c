/**
 * Control center entry points.
 *
 * - `startControlCenter(options)`: what the CLI runs — forks the memory and
 *   inference servers as supervised children and serves the control center.
 * - `createControlCenter({ components })`: the control center over any
 *   ComponentHandles (forked `ChildComponent`s or `InProcessComponent`s).
 */
import type { EmbedderOptions } from '../embedder.js';
import path from 'node:path';
import type { MemoryServerOptions } from '../server/memory.js';
import type { InferenceServerOptions } from '../server/inference.js';
import { DEFAULTS } from '../protocol/index.js';
import { createControlCenter, type ControlCenter, type ControlServerOptions } from './center.js';
import { ChildComponent, type ChildComponentOptions } from './supervisor.js';
import { InProcessComponent } from './in-process.js';
import type { Servers } from '../servers.js';
import { ENDPOINT_OPTIONS, type SharedServerOptions } from '../server/options.js';
import type { ComponentHandle } from './types.js';

export * from './types.js';
export { createControlCenter, type ControlCenter, type ControlCenterOptions, type ControlServerOptions } from './center.js';
export { ChildComponent, type ChildComponentOptions, DEFAULT_CHILD_PATH } from './supervisor.js';
export { InProcessComponent, type InProcessComponentOptions } from './in-process.js';
export {
  parseFilter,
  filterKey,
  applyFilter,
  METRIC_KEYS,
  type StatusMessage,
  type StatusMetrics,
  type StatusFilter,
  type MetricKey,
  type ComponentActionReply,
  type ComponentsReply,
  type HealthReply,
  type StatusSubscribeData,
  type StatusSubscribeReply,
} from '../protocol/control.js';

/** Server options that can travel to a child over IPC (no logger, no embedder object). */
type Cloneable<T> = Omit<T, 'logger' | 'embedder' | 'commands' | 'onMessage' | 'onOpen' | 'onClose' | 'beforeClose' | 'serviceInfo'>;
export type ChildMemoryOptions = Cloneable<MemoryServerOptions>;
export type ChildInferenceOptions = Cloneable<InferenceServerOptions>;

/** Options shared by both children unless overridden per server. */
export type ChildSharedOptions = Cloneable<SharedServerOptions>;

export interface StartControlCenterOptions extends ControlServerOptions {
  /** Control center port. Default 9000. */
  port?: number;
  /** Memory data directory (passed to the memory child; its size is storage_size_mb). Default ./memory-data. */
  dataDir?: string;
  /** Options for both children; host, origins, token, jwtSecret, TLS, compression and logLevel default to the control center's. */
  servers?: ChildSharedOptions;
  /** Memory server options (port default 5000), or false to not supervise it. */
  memory?: ChildMemoryOptions | false;
  /** Inference server options (port 5005…5014 by default), or false. */
  inference?: ChildInferenceOptions | false;
  /** Embedder each child creates. Default hash. */
  embedder?: Omit<EmbedderOptions, 'log'>;
  /** Status broadcast period. Default 2,000 ms. */
  statusIntervalMs?: number;
  /** Supervisor tuning (backoff, kill timeout, child path…; `forwardOutput` defaults to true here). */
  supervisor?: Omit<ChildComponentOptions, 'name' | 'serverOptions' | 'embedder' | 'logLevel'>;
  dashboardDir?: string;
}

export interface RunningControlCenter {
  controlCenter: ControlCenter;
  components: Record<string, ChildComponent>;
  host: string;
  port: number;
  url: string;
  /** Closes the control center, then stops the children (SIGTERM, SIGKILL after the kill timeout). */
  close(): Promise<void>;
}

/** The control center's options that its children take too, unless `servers` or their own options say otherwise. */
const INHERITED_BY_CHILDREN = [
  ...ENDPOINT_OPTIONS,
  'logLevel',
] as const satisfies ReadonlyArray<keyof ChildSharedOptions>;

/** The given keys of `o` that are set. */
function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Pick<T, K> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Pick<T, K>;
}

/**
 * Starts the control center (default http://localhost:9000) and, as supervised
 * child processes, the memory and inference servers. Resolves once the control
 * center listens and each component's first start has settled (a component that
 * failed shows `error` and is retried with backoff; it does not fail this call).
 */
export async function startControlCenter(options: StartControlCenterOptions = {}): Promise<RunningControlCenter> {
  const {
    dataDir = './memory-data',
    servers = {},
    memory = {},
    inference = {},
    embedder,
    statusIntervalMs,
    supervisor = {},
    dashboardDir,
    ...controlOptions
  } = options;
  const inherited: ChildSharedOptions = pick(controlOptions, INHERITED_BY_CHILDREN);
  const components: Record<string, ChildComponent> = {};
  const common = (name: 'memory' | 'inference', serverOptions: Record<string, unknown>): ChildComponentOptions => {
    // The children's stdout/stderr (listening lines, logs) reach ours unless told otherwise.
    const o: ChildComponentOptions = { forwardOutput: true, ...supervisor, name, serverOptions };
    if (embedder) o.embedder = embedder;
    const level = (serverOptions.logLevel as string | undefined) ?? controlOptions.logLevel;
    if (level) o.logLevel = level;
    return o;
  };
  if (memory !== false) {
    const opts = { ...inherited, ...servers, port: DEFAULTS.ports.memory, ...memory, dataDir: path.resolve(memory.dataDir ?? dataDir) };
    components.memory = new ChildComponent(common('memory', opts));
  }
  if (inference !== false) {
    const opts = {
      ...inherited,
      ...servers,
      port: DEFAULTS.ports.inference,
      portRange: inference.port === 0 ? 0 : DEFAULTS.ports.inferencePortRange,
      ...inference,
    };
    components.inference = new ChildComponent(common('inference', opts));
  }
  const cc = createControlCenter({
    ...controlOptions,
    port: controlOptions.port ?? DEFAULTS.ports.control,
    components,
    dataDir: memory !== false ? path.resolve(memory.dataDir ?? dataDir) : undefined,
    ...(statusIntervalMs !== undefined ? { statusIntervalMs } : {}),
    ...(dashboardDir !== undefined ? { dashboardDir } : {}),
  } as Parameters<typeof createControlCenter>[0]);
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(Object.values(components).map((c) => c.stop()));
  };
  let info;
  try {
    info = await cc.listen();
  } catch (err) {
    await cc.close();
    throw err;
  }
  await Promise.allSettled(Object.values(components).map((c) => c.start()));
  await cc.tick();
  let closing: Promise<void> | null = null;
  return {
    controlCenter: cc,
    components,
    host: info.host,
    port: info.port,
    url: info.url.replace(/^ws/, 'http'),
    close() {
      closing ??= (async () => {
        await cc.close();
        await stopAll();
      })();
      return closing;
    },
  };
}

/** ComponentHandles for servers started by `createServers()` (in-process; start after stop needs `create`). */
export function inProcessComponents(
  servers: Servers,
  factories: { memory?: () => Promise<NonNullable<Servers['memory']>>; inference?: () => Promise<NonNullable<Servers['inference']>> } = {},
): ComponentHandle[] {
  const out: ComponentHandle[] = [];
  if (servers.memory || factories.memory) {
    const o: ConstructorParameters<typeof InProcessComponent<NonNullable<Servers['memory']>>>[0] = { name: 'memory', server: servers.memory };
    if (factories.memory) o.create = factories.memory;
    out.push(new InProcessComponent(o));
  }
  if (servers.inference || factories.inference) {
    const o: ConstructorParameters<typeof InProcessComponent<NonNullable<Servers['inference']>>>[0] = { name: 'inference', server: servers.inference };
    if (factories.inference) o.create = factories.inference;
    out.push(new InProcessComponent(o));
  }
  return out;
}
