/**
 * Where the MCP tools send their commands: the memory server's own command handlers
 * (`memory-server mcp` with a data directory, and `/mcp` on the memory server), or a running
 * memory server through MemoryClient (`memory-server mcp --url`). Either way the command runs
 * in the one implementation every interface shares, with its validation, scopes and limits.
 */
import type { Logger } from 'pino';
import { ERROR_MESSAGES, ProtocolError, type Request } from '../protocol/index.js';
import type { AuthClaims } from '../server/auth.js';
import { HttpCaller } from '../server/http/caller.js';
import type { CommandHandler } from '../server/ws-server.js';
import { correlationId } from '../server/ws/dispatch.js';
import { ClientError } from '../client/errors.js';
import { randomId } from '../client/ids.js';
import type { MemoryClient } from '../client/memory.js';
import type { ToolCommand } from './tools.js';

/** A failed command as the tools report it: the protocol's code, message and data. */
export interface CommandFailure {
  code: string;
  message: string;
  data?: Record<string, unknown>;
}

export interface MemoryBackend {
  /** Runs a memory command with `data`; rejects with a CommandError. */
  call(command: ToolCommand, data: Record<string, unknown> | undefined): Promise<unknown>;
}

export class CommandError extends Error {
  constructor(readonly failure: CommandFailure) {
    super(failure.message);
    this.name = 'CommandError';
  }
}

/** Where a served command is counted (the server's metrics: `/mcp` counts as the WebSocket does). */
export interface ReplyMetrics {
  recordReply(command: string, latencyMs: number, isError: boolean): void;
}

/** Calls the command table of a memory server (MemoryServer.commands) as a caller with `auth`. */
export function commandBackend(
  commands: Readonly<Record<string, CommandHandler>>,
  auth: AuthClaims,
  logger: Logger,
  metrics?: ReplyMetrics,
): MemoryBackend {
  // One caller per backend: a backend lives for one HTTP request, or for one stdio session.
  // (MCP has no socket to push events to, hence no subscribe tool.)
  const caller = new HttpCaller('', '', auth, '/mcp', () => false, 'mcp').asConnection();
  let requestId = 0;
  return {
    async call(command, data) {
      const handler = commands[command];
      if (!handler) throw new CommandError({ code: 'unknown_type', message: ERROR_MESSAGES.unknownType(command) });
      const request: Request = data === undefined ? { type: command, id: ++requestId } : { type: command, id: ++requestId, data };
      const started = performance.now();
      let failed = true;
      try {
        const out = await handler(caller, request);
        failed = false;
        return out;
      } catch (err) {
        if (err instanceof ProtocolError) throw new CommandError(failureOf(err));
        const cid = correlationId();
        logger.error({ err, correlationId: cid, command }, 'mcp tool failed');
        throw new CommandError({ code: 'internal', message: ERROR_MESSAGES.internal(cid) });
      } finally {
        metrics?.recordReply(command, performance.now() - started, failed);
      }
    },
  };
}

/** Calls a running memory server through `client`; the server's error codes pass through. */
export function clientBackend(client: MemoryClient): MemoryBackend {
  return {
    async call(command, data) {
      // A store replayed after a reconnect must not store twice: give it an id first, as
      // MemoryClient.store does.
      const sent = command === 'store' && data !== undefined && data.id === undefined && data.items === undefined ? { ...data, id: randomId() } : data;
      try {
        return await client.request(command, sent, { retriable: command !== 'delete' });
      } catch (err) {
        if (err instanceof ClientError) throw new CommandError(failureOf(err));
        throw err;
      }
    },
  };
}

function failureOf(err: ProtocolError | ClientError): CommandFailure {
  return err.data === undefined ? { code: err.code, message: err.message } : { code: err.code, message: err.message, data: err.data };
}
