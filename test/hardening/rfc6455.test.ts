/**
 * #23 item 15 (framing half): RFC 6455 violations by the client. These are decided inside
 * the uWebSockets.js binary, before any JavaScript runs, and no option of its `ws()` behaviour
 * changes them; JS never sees the frames (or sees them as ordinary messages), so the server
 * cannot fix them from JS. See docs/connection.md "RFC 6455 conformance" for the code paths.
 *
 * What uWS does reject is tested; what it does not is kept as skipped tests of the
 * behaviour the RFC requires, to be enabled if a uWS build starts to enforce it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { WsServer } from '../../ts/server/index.js';
import { startTestServer } from '../helpers/echo-server.js';
import { frame, rawConnect, type RawClient } from './raw-ws.js';

let server: WsServer;
let port: number;
beforeAll(async () => {
  ({ server, port } = await startTestServer());
});
afterAll(() => server.close());

const request = JSON.stringify({ type: 'echo', id: 1, data: { a: 1 } });

/** Resolves once the server has ended the socket; fails if it answered anything first. */
async function expectFailed(c: RawClient): Promise<void> {
  await c.ended;
  expect(c.frames.filter((f) => f.opcode === 1 || f.opcode === 2)).toEqual([]);
}

describe('RFC 6455 framing', () => {
  it('a text frame inside a fragmented message fails the connection (uWS closes the socket, no reply)', async () => {
    const c = await rawConnect(port);
    c.write(frame(1, request.slice(0, 10), { fin: false }));
    c.write(frame(1, request));
    c.write(frame(0, request.slice(10)));
    await expectFailed(c);
  });

  it('a continuation frame with no message to continue fails the connection', async () => {
    const c = await rawConnect(port);
    c.write(frame(0, request));
    await expectFailed(c);
  });

  it('control frames inside a fragmented message are legal and answered', async () => {
    const c = await rawConnect(port);
    c.write(frame(1, request.slice(0, 10), { fin: false }));
    c.write(frame(9, 'ping'));
    c.write(frame(0, request.slice(10)));
    const pong = await c.waitFrame((f) => f.opcode === 10);
    expect(pong.payload.toString()).toBe('ping');
    const reply = JSON.parse((await c.waitFrame((f) => f.opcode === 1)).payload.toString()) as { status: string; id: number };
    expect(reply).toMatchObject({ status: 'success', id: 1 });
    c.socket.destroy();
  });

  // uWS (every 20.x, up to uNetworking/uWebSockets master of 2026-08) never reads the MASK
  // bit: WebSocketProtocol<isServer=true>::consume() takes every client header as 6/8/14
  // bytes with a 4-byte key, so an unmasked frame's first 4 payload bytes are read as the key
  // and the stream desyncs (the connection hangs, or is cut with 1006 when the garbage reaches
  // a header check). Upstream closed the report as invalid (uNetworking/uWebSockets#691).
  it.skip('an unmasked client frame closes the connection (RFC 6455 §5.1) — not enforced by uWS, see the comment', async () => {
    const c = await rawConnect(port);
    c.write(frame(1, request, { mask: false }));
    await expectFailed(c);
  });

  // consumeMessage() refuses a new data frame inside a fragmented message only when its
  // opcode is < 2 (text): `!lastFin && getOpCode(src) < 2`. A binary frame is pushed on the
  // opcode stack and delivered as its own message (measured: the server answers it), and the
  // fragmented text message then completes (RFC 6455 §5.4 forbids the interleaving, §7.1.7
  // requires failing the connection).
  it.skip('a binary frame inside a fragmented text message fails the connection (RFC 6455 §5.4) — not enforced by uWS, see the comment', async () => {
    const c = await rawConnect(port);
    c.write(frame(1, request.slice(0, 10), { fin: false }));
    c.write(frame(2, Buffer.from([0x80])));
    c.write(frame(0, request.slice(10)));
    await expectFailed(c);
  });
});
