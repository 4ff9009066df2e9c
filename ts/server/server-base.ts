/**
 * What the memory and the inference server share: a WsServer serving their command table,
 * its port, URL and logger, `listen()`, and an idempotent graceful `close()`.
 */
import type { Logger } from 'pino';
import type { ListenInfo } from './lifecycle.js';
import type { WsServer } from './ws-server.js';

export abstract class ServerBase {
  /** The connection layer serving this server's commands. */
  abstract readonly ws: WsServer;
  private info: ListenInfo | null = null;
  private closing: Promise<void> | null = null;

  get port(): number {
    return this.ws.port;
  }
  get url(): string {
    return this.info?.url ?? `ws://${this.ws.options.host}:${this.ws.port}`;
  }
  get logger(): Logger {
    return this.ws.logger;
  }

  async listen(): Promise<ListenInfo> {
    this.info = await this.ws.listen();
    return this.info;
  }

  /** Graceful shutdown: finish in-flight replies, close clients with 1001, then release what the server owns. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      await this.ws.shutdown();
      await this.release();
    })();
    return this.closing;
  }

  /** Frees what the server owns (batcher, store) once its connections are closed. */
  protected abstract release(): void | Promise<void>;
}
