/**
 * A WebSocket client on a bare net.Socket, for tests that need what a well-behaved library
 * will not do: stop reading, send unmasked or mis-fragmented frames. The handshake is done
 * by hand; frames are written with `frame()` and read (when reading) with a small parser.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

export interface RawFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** One client frame: masked unless `mask: false`, FIN unless `fin: false`. */
export function frame(opcode: number, payload: Buffer | string, opts: { mask?: boolean; fin?: boolean } = {}): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
  const mask = opts.mask ?? true;
  const head: number[] = [((opts.fin ?? true) ? 0x80 : 0) | opcode];
  const m = mask ? 0x80 : 0;
  if (body.length < 126) head.push(m | body.length);
  else if (body.length < 65536) head.push(m | 126, body.length >> 8, body.length & 255);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    head.push((body.length >>> 24) & 255, (body.length >>> 16) & 255, (body.length >>> 8) & 255, body.length & 255);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), body]);
  const key = randomBytes(4);
  const out = Buffer.from(body);
  for (let i = 0; i < out.length; i++) out[i]! ^= key[i % 4]!;
  return Buffer.concat([Buffer.from(head), key, out]);
}

export interface RawClient {
  socket: net.Socket;
  /** Frames parsed so far (only while the socket is read). */
  frames: RawFrame[];
  /** Resolves when the server ends or resets the socket. */
  ended: Promise<void>;
  write(buf: Buffer): void;
  /** Resolves with the first frame (received so far or later) matching `pred`. */
  waitFrame(pred: (f: RawFrame) => boolean, timeoutMs?: number): Promise<RawFrame>;
}

/** Opens a socket and upgrades it by hand; the socket keeps reading unless `read: false` (then it is paused after the 101). */
export function rawConnect(port: number, opts: { read?: boolean; path?: string } = {}): Promise<RawClient> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const frames: RawFrame[] = [];
    const waiters: Array<{ pred: (f: RawFrame) => boolean; resolve: (f: RawFrame) => void }> = [];
    let buf = Buffer.alloc(0);
    let upgraded = false;
    let endedResolve!: () => void;
    const ended = new Promise<void>((r) => (endedResolve = r));
    socket.on('close', () => endedResolve());
    socket.on('error', () => endedResolve());
    const parse = (): void => {
      for (;;) {
        if (buf.length < 2) return;
        const b0 = buf[0]!;
        let len = buf[1]! & 127;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const f: RawFrame = { fin: (b0 & 0x80) !== 0, opcode: b0 & 15, payload: buf.subarray(off, off + len) };
        buf = buf.subarray(off + len);
        frames.push(f);
        for (let i = 0; i < waiters.length; i++) {
          if (waiters[i]!.pred(f)) {
            waiters.splice(i, 1)[0]!.resolve(f);
            i--;
          }
        }
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (!head.startsWith('HTTP/1.1 101')) {
          reject(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
          socket.destroy();
          return;
        }
        upgraded = true;
        if (opts.read === false) socket.pause();
        resolve(client);
      }
      parse();
    });
    socket.once('error', reject);
    const client: RawClient = {
      socket,
      frames,
      ended,
      write: (b) => {
        socket.write(b);
      },
      waitFrame(pred, timeoutMs = 10_000) {
        const found = frames.find(pred);
        if (found) return Promise.resolve(found);
        return new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('timed out waiting for a frame')), timeoutMs);
          waiters.push({ pred, resolve: (f) => (clearTimeout(t), res(f)) });
        });
      },
    };
    socket.on('connect', () => {
      socket.write(
        `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${randomBytes(16).toString('base64')}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      );
    });
  });
}

/** The close code of a close frame (0 when it has none). */
export function closeCode(f: RawFrame): number {
  return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : 0;
}
