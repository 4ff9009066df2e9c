/**
 * How many tokens a model can take: its position-embedding table. A text longer than that
 * makes onnxruntime fail (the position ids run past the table), so `--max-length` is capped
 * to it. Read from `config.json` (`max_position_embeddings`, less the two padding positions
 * of RoBERTa-family models) and from the ONNX graph itself (the first dimension of the
 * `…position_embeddings…` initializer); when both are there, the smaller wins.
 */
import { existsSync, readFileSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';

export interface PositionLimit {
  tokens: number;
  /** Where it was read, for the warning. */
  source: string;
}

/** RoBERTa-style models number positions from padding_idx + 1 = 2: two rows are never used. */
const POSITION_OFFSET_MODELS = new Set(['roberta', 'xlm-roberta', 'camembert', 'longformer', 'mpnet']);

export function readJson(path: string): Record<string, unknown> | null {
  if (!existsSync(path)) return null;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  } catch (e) {
    throw new Error(`${path}: not valid JSON (${(e as Error).message})`, { cause: e });
  }
}

/** config.json's position limit, or null. */
function configLimit(dir: string): PositionLimit | null {
  const cfg = readJson(join(dir, 'config.json'));
  const max = cfg?.max_position_embeddings;
  if (typeof max !== 'number' || !Number.isInteger(max) || max <= 0) return null;
  const offset = typeof cfg?.model_type === 'string' && POSITION_OFFSET_MODELS.has(cfg.model_type) ? 2 : 0;
  return { tokens: max - offset, source: `config.json max_position_embeddings${offset ? ` (${max}, less ${offset} for ${String(cfg?.model_type)})` : ''}` };
}

/** The model's position limit from config.json and the graph (the smaller of the two), or null when neither says. */
export async function positionLimit(dir: string, modelPath: string): Promise<PositionLimit | null> {
  const fromConfig = configLimit(dir);
  let fromGraph: PositionLimit | null = null;
  const rows = await positionTableRows(modelPath).catch(() => null); // an unreadable graph: onnxruntime reports it at load
  if (rows !== null) fromGraph = { tokens: rows, source: 'the position-embedding table of model.onnx' };
  if (fromConfig && fromGraph) return fromGraph.tokens < fromConfig.tokens ? fromGraph : fromConfig;
  return fromConfig ?? fromGraph;
}

// ---------------------------------------------------------------- ONNX graph

/*
 * Only the shape of one initializer is needed, so the protobuf is walked by hand with
 * positioned reads of the field headers, skipping every payload: a model of hundreds of MB
 * costs a few hundred small reads, where a protobuf library would read and decode the whole
 * file into memory. ModelProto.graph = 7; GraphProto.initializer = 5; TensorProto.dims = 1,
 * name = 8 (onnx.proto).
 */

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

class Reader {
  private readonly buf = Buffer.alloc(16);
  constructor(private readonly fh: FileHandle) {}

  /** A varint at `pos`: its value and the position after it. */
  async varint(pos: number): Promise<[number, number]> {
    const { bytesRead } = await this.fh.read(this.buf, 0, 10, pos);
    let v = 0;
    let mul = 1;
    for (let i = 0; i < bytesRead; i++) {
      const b = this.buf[i]!;
      v += (b & 0x7f) * mul;
      mul *= 128;
      if ((b & 0x80) === 0) return [v, pos + i + 1];
    }
    throw new Error('truncated varint');
  }

  async bytes(pos: number, len: number): Promise<Buffer> {
    const out = Buffer.alloc(len);
    await this.fh.read(out, 0, len, pos);
    return out;
  }

  /** Calls `visit(field, wireType, valuePos, end)` for each field in [pos, end). */
  async fields(pos: number, end: number, visit: (field: number, wire: number, at: number, next: number) => Promise<boolean | void>): Promise<void> {
    while (pos < end) {
      const [tag, at] = await this.varint(pos);
      const field = Math.floor(tag / 8);
      const wire = tag & 7;
      let next: number;
      let valueAt = at;
      if (wire === WIRE_VARINT) next = (await this.varint(at))[1];
      else if (wire === WIRE_I64) next = at + 8;
      else if (wire === WIRE_I32) next = at + 4;
      else if (wire === WIRE_LEN) {
        const [len, p] = await this.varint(at);
        valueAt = p;
        next = p + len;
      } else throw new Error(`unsupported wire type ${wire}`);
      if ((await visit(field, wire, valueAt, next)) === true) return;
      pos = next;
    }
  }
}

/** Rows of the graph's position-embedding initializer, or null when it has none. */
export async function positionTableRows(modelPath: string): Promise<number | null> {
  const fh = await open(modelPath, 'r');
  try {
    const size = (await fh.stat()).size;
    const r = new Reader(fh);
    let rows: number | null = null;
    await r.fields(0, size, async (field, wire, at, next) => {
      if (field !== 7 || wire !== WIRE_LEN) return;
      await r.fields(at, next, async (gField, gWire, gAt, gNext) => {
        if (gField !== 5 || gWire !== WIRE_LEN) return;
        const t = await tensorHeader(r, gAt, gNext);
        if (/position_embeddings?/.test(t.name) && t.dims.length === 2) {
          rows = t.dims[0]!;
          return true;
        }
      });
      return true;
    });
    return rows;
  } finally {
    await fh.close();
  }
}

async function tensorHeader(r: Reader, pos: number, end: number): Promise<{ name: string; dims: number[] }> {
  const dims: number[] = [];
  let name = '';
  await r.fields(pos, end, async (field, wire, at, next) => {
    if (field === 1 && wire === WIRE_VARINT) dims.push((await r.varint(at))[0]);
    else if (field === 1 && wire === WIRE_LEN) {
      for (let p = at; p < next; ) {
        const [v, q] = await r.varint(p);
        dims.push(v);
        p = q;
      }
    } else if (field === 8 && wire === WIRE_LEN && next - at <= 1024) name = (await r.bytes(at, next - at)).toString('utf8');
  });
  return { name, dims };
}
