#!/usr/bin/env node
// Writes a BERT-architecture ONNX encoder with random (seeded, deterministic)
// weights plus a matching HuggingFace `tokenizers` tokenizer.json, using only
// Node built-ins: the protobuf is encoded by hand below (onnx.proto field
// numbers), tensors are stored as little-endian raw_data.
//
// It exists so tests and benches can exercise the onnx embedder end to end
// (tokenizer -> ONNX Runtime -> pooling) without downloading a model: the
// `tiny` preset is the committed fixture test/fixtures/tiny-bert/, the `minilm`
// preset has the shapes (and so the compute) of all-MiniLM-L6-v2 and is
// generated at run time into a cache directory (never committed, ~90 MB).
//
// CLI:
//   node scripts/make-bert-onnx.mjs --out DIR --preset tiny|minilm [--seed N]
// writes DIR/model.onnx, DIR/tokenizer.json and DIR/config.json.
//
// Exports: makeBertModel(opts) -> Buffer, makeVocab(size) -> string[],
// makeTokenizerJson(vocab, { maxLength }) -> object, serializeTokenizerJson(obj)
// -> string, writeModelDir(dir, preset, { seed }), PRESETS.
//
// The graph (ir_version 8, opset ai.onnx 17, float32; all ops are standard
// ai.onnx ops, no contrib ops), as a sentence-transformers/HF BertModel export:
//   inputs  input_ids, attention_mask, token_type_ids: int64 [batch, sequence]
//   output  last_hidden_state: float [batch, sequence, hidden]
//   embeddings:
//     position_ids = Range(0, Gather(Shape(input_ids), 1), 1)          [sequence]
//     e = Gather(word_emb, input_ids) + Gather(type_emb, token_type_ids)
//         + Gather(pos_emb, position_ids)                             [b, s, h]
//     x = LayerNormalization(e, gamma, beta, axis -1, epsilon 1e-12)
//   extended mask:
//     mask = Unsqueeze((1 - Cast<float>(attention_mask)) * FLT_MIN_NEG, [1, 2])  [b,1,1,s]
//   each layer (HF names: encoder.layer.N.*; weights stored [in, out] for MatMul):
//     Q,V = Transpose(Reshape(MatMul(x, W) + b, [0, 0, heads, head_dim]), [0, 2, 1, 3])
//     K   = Transpose(Reshape(MatMul(x, Wk) + bk, [0, 0, heads, head_dim]), [0, 2, 3, 1])
//     P   = Softmax(MatMul(Q, K) / sqrt(head_dim) + mask, axis -1)
//     C   = Reshape(Transpose(MatMul(P, V), [0, 2, 1, 3]), [0, 0, hidden])
//     x   = LayerNormalization(MatMul(C, Wo) + bo + x)
//     f   = MatMul(x, Wi) + bi;  g = f * (Erf(f / sqrt 2) + 1) * 0.5   (exact GELU)
//     x   = LayerNormalization(MatMul(g, Wout) + bout + x)
//   the last LayerNormalization's output is last_hidden_state (no pooler).
// Weights: mulberry32 + Box-Muller normals, std 0.02 for embeddings and
// matrices; biases 0; LayerNorm gamma 1, beta 0.
//
// Vocabulary (uncased WordPiece): [PAD]=0 [UNK]=1 [CLS]=2 [SEP]=3 [MASK]=4, every
// printable ASCII char except A-Z and its ##form (so any ASCII text tokenizes
// without [UNK]), a built-in list of common English words, then generated
// letter n-grams (##bigrams, bigrams, ##trigrams, trigrams, ...) up to `size`.
import { mkdirSync, writeFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const PRESETS = {
  tiny: { layers: 2, hidden: 64, heads: 4, ffn: 128, vocabSize: 2000, maxPositions: 512, typeVocab: 2 },
  minilm: { layers: 6, hidden: 384, heads: 12, ffn: 1536, vocabSize: 30522, maxPositions: 512, typeVocab: 2 },
};
export const DEFAULT_SEED = 42;

// ---------------------------------------------------------------------------
// Minimal protobuf encoder. A message is a "rope": an array of Buffers that is
// concatenated once at the end, so big tensors are copied only once.

const BIG_ENDIAN = endianness() === 'BE';

function varint(v) {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v < 2 ** 31) {
    const out = [];
    while (v >= 0x80) {
      out.push((v & 0x7f) | 0x80);
      v >>>= 7;
    }
    out.push(v);
    return Buffer.from(out);
  }
  // int64 (negative values are 10-byte two's complement varints).
  let b = BigInt.asUintN(64, BigInt(v));
  const out = [];
  while (b >= 0x80n) {
    out.push(Number(b & 0x7fn) | 0x80);
    b >>= 7n;
  }
  out.push(Number(b));
  return Buffer.from(out);
}

const WIRE_VARINT = 0;
const WIRE_LEN = 2;
const WIRE_FIXED32 = 5;
const key = (field, wire) => varint(field * 8 + wire);
function ropeLength(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}
const pVarint = (field, v) => [key(field, WIRE_VARINT), varint(v)];
function pFloat(field, f) {
  const b = Buffer.alloc(4);
  b.writeFloatLE(f);
  return [key(field, WIRE_FIXED32), b];
}
const pBytes = (field, data) => [key(field, WIRE_LEN), varint(data.length), data];
const pString = (field, s) => pBytes(field, Buffer.from(s, 'utf8'));
function pMsg(field, parts) {
  const out = [key(field, WIRE_LEN), varint(ropeLength(parts))];
  for (const p of parts) out.push(p);
  return out;
}
function rope(...fields) {
  const out = [];
  for (const f of fields) for (const p of f) out.push(p);
  return out;
}

// onnx.proto enums
const DT_FLOAT = 1;
const DT_INT64 = 7;
const ATTR_FLOAT = 1;
const ATTR_INT = 2;
const ATTR_TENSOR = 4;
const ATTR_INTS = 7;

function rawBytes(typed) {
  const buf = Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
  if (!BIG_ENDIAN) return buf;
  const copy = Buffer.from(buf);
  return typed.BYTES_PER_ELEMENT === 8 ? copy.swap64() : copy.swap32();
}

// TensorProto: dims=1 (repeated int64), data_type=2, name=8, raw_data=9
function tensorProto(name, dims, data) {
  const dataType = data instanceof Float32Array ? DT_FLOAT : data instanceof BigInt64Array ? DT_INT64 : 0;
  if (!dataType) throw new Error(`tensor ${name}: unsupported array type`);
  const count = dims.reduce((a, b) => a * b, 1);
  if (count !== data.length) throw new Error(`tensor ${name}: dims ${dims} vs ${data.length} values`);
  const parts = [];
  for (const d of dims) parts.push(...pVarint(1, d));
  return rope(parts, pVarint(2, dataType), pString(8, name), pBytes(9, rawBytes(data)));
}

// AttributeProto: name=1, f=2, i=3, t=5, ints=8, type=20
function attribute(name, value) {
  const parts = pString(1, name);
  if (value && typeof value === 'object' && value.kind === 'float') return rope(parts, pFloat(2, value.value), pVarint(20, ATTR_FLOAT));
  if (value && typeof value === 'object' && value.kind === 'tensor') return rope(parts, pMsg(5, value.value), pVarint(20, ATTR_TENSOR));
  if (Array.isArray(value)) {
    const ints = [];
    for (const v of value) ints.push(...pVarint(8, v));
    return rope(parts, ints, pVarint(20, ATTR_INTS));
  }
  if (Number.isInteger(value)) return rope(parts, pVarint(3, value), pVarint(20, ATTR_INT));
  throw new Error(`attribute ${name}: unsupported value`);
}
const float = (value) => ({ kind: 'float', value });

// NodeProto: input=1, output=2, name=3, op_type=4, attribute=5
function nodeProto(opType, inputs, outputs, name, attrs = {}) {
  const parts = [];
  for (const i of inputs) parts.push(...pString(1, i));
  for (const o of outputs) parts.push(...pString(2, o));
  parts.push(...pString(3, name), ...pString(4, opType));
  for (const [k, v] of Object.entries(attrs)) parts.push(...pMsg(5, attribute(k, v)));
  return parts;
}

// ValueInfoProto{name=1, type=2} -> TypeProto{tensor_type=1} -> Tensor{elem_type=1, shape=2}
// -> TensorShapeProto{dim=1} -> Dimension{dim_value=1 | dim_param=2}
function valueInfo(name, elemType, shape) {
  const dims = [];
  for (const d of shape) dims.push(...pMsg(1, typeof d === 'string' ? pString(2, d) : pVarint(1, d)));
  const tensorType = rope(pVarint(1, elemType), pMsg(2, dims));
  return rope(pString(1, name), pMsg(2, pMsg(1, tensorType)));
}

// ---------------------------------------------------------------------------
// Deterministic weights.

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

function normal(count, std, rng) {
  const arr = new Float32Array(count);
  const twoPi = 2 * Math.PI;
  for (let i = 0; i < count; i += 2) {
    const u1 = (rng() + 1) / 4294967297; // (0, 1]
    const u2 = rng() / 4294967296; // [0, 1)
    const r = std * Math.sqrt(-2 * Math.log(u1));
    const th = twoPi * u2;
    arr[i] = r * Math.cos(th);
    if (i + 1 < count) arr[i + 1] = r * Math.sin(th);
  }
  return arr;
}

// ---------------------------------------------------------------------------
// The model.

/**
 * Serialized ModelProto of a BERT encoder with random weights (see the header).
 * @returns {Buffer}
 */
export function makeBertModel({ layers, hidden, heads, ffn, vocabSize, maxPositions, typeVocab = 2, seed = DEFAULT_SEED }) {
  for (const [k, v] of Object.entries({ layers, hidden, heads, ffn, vocabSize, maxPositions, typeVocab })) {
    if (!Number.isInteger(v) || v <= 0) throw new Error(`makeBertModel: ${k} must be a positive integer (got ${v})`);
  }
  if (hidden % heads !== 0) throw new Error(`makeBertModel: hidden ${hidden} is not a multiple of heads ${heads}`);
  const headDim = hidden / heads;
  const rng = mulberry32(seed);
  const STD = 0.02;

  const nodes = [];
  const inits = [];
  let nodeCount = 0;
  const node = (op, inputs, outputs, attrs) => {
    nodes.push(nodeProto(op, inputs, typeof outputs === 'string' ? [outputs] : outputs, `${op}_${nodeCount++}`, attrs));
    return outputs;
  };
  const init = (name, dims, data) => {
    inits.push(tensorProto(name, dims, data));
    return name;
  };
  const ones = (n) => new Float32Array(n).fill(1);
  const zeros = (n) => new Float32Array(n);
  const layerNorm = (prefix, input, output) =>
    node('LayerNormalization', [input, init(`${prefix}.weight`, [hidden], ones(hidden)), init(`${prefix}.bias`, [hidden], zeros(hidden))], output, {
      axis: -1,
      epsilon: float(1e-12),
    });
  // MatMul + bias; the weight is [in, out] (the transpose of torch's nn.Linear.weight).
  const linear = (prefix, input, inDim, outDim, output) => {
    const w = init(`${prefix}.weight`, [inDim, outDim], normal(inDim * outDim, STD, rng));
    const b = init(`${prefix}.bias`, [outDim], zeros(outDim));
    const mm = node('MatMul', [input, w], `${prefix}/MatMul_output`);
    return node('Add', [mm, b], output ?? `${prefix}/Add_output`);
  };

  // Constants.
  const I64_ZERO = init('const.int64_0', [], new BigInt64Array([0n]));
  const I64_ONE = init('const.int64_1', [], new BigInt64Array([1n]));
  const F_ONE = init('const.float_1', [], new Float32Array([1]));
  const F_HALF = init('const.float_0_5', [], new Float32Array([0.5]));
  const F_SQRT2 = init('const.float_sqrt2', [], new Float32Array([Math.SQRT2]));
  const F_MASK = init('const.float_mask_min', [], new Float32Array([-3.4028234663852886e38]));
  const F_SCALE = init('const.float_sqrt_head_dim', [], new Float32Array([Math.sqrt(headDim)]));
  const UNSQ_AXES = init('const.mask_unsqueeze_axes', [2], new BigInt64Array([1n, 2n]));
  const HEADS_SHAPE = init('const.heads_shape', [4], new BigInt64Array([0n, 0n, BigInt(heads), BigInt(headDim)]));
  const MERGE_SHAPE = init('const.merge_shape', [3], new BigInt64Array([0n, 0n, BigInt(hidden)]));

  // Embeddings.
  const wordEmb = init('embeddings.word_embeddings.weight', [vocabSize, hidden], normal(vocabSize * hidden, STD, rng));
  const posEmb = init('embeddings.position_embeddings.weight', [maxPositions, hidden], normal(maxPositions * hidden, STD, rng));
  const typeEmb = init('embeddings.token_type_embeddings.weight', [typeVocab, hidden], normal(typeVocab * hidden, STD, rng));
  node('Shape', ['input_ids'], 'embeddings/input_shape');
  node('Gather', ['embeddings/input_shape', I64_ONE], 'embeddings/seq_len', { axis: 0 });
  node('Range', [I64_ZERO, 'embeddings/seq_len', I64_ONE], 'embeddings/position_ids');
  node('Gather', [wordEmb, 'input_ids'], 'embeddings/words', { axis: 0 });
  node('Gather', [typeEmb, 'token_type_ids'], 'embeddings/types', { axis: 0 });
  node('Gather', [posEmb, 'embeddings/position_ids'], 'embeddings/positions', { axis: 0 });
  node('Add', ['embeddings/words', 'embeddings/types'], 'embeddings/sum0');
  node('Add', ['embeddings/sum0', 'embeddings/positions'], 'embeddings/sum');
  let x = layerNorm('embeddings.LayerNorm', 'embeddings/sum', 'embeddings/output');

  // Extended attention mask [batch, 1, 1, sequence]: 0 where attended, float min where padded.
  node('Cast', ['attention_mask'], 'mask/float', { to: DT_FLOAT });
  node('Sub', [F_ONE, 'mask/float'], 'mask/inverted');
  node('Mul', ['mask/inverted', F_MASK], 'mask/additive');
  node('Unsqueeze', ['mask/additive', UNSQ_AXES], 'mask/extended');

  for (let l = 0; l < layers; l++) {
    const p = `encoder.layer.${l}`;
    const a = `${p}.attention`;
    const heads4 = (name, input, perm) => {
      node('Reshape', [input, HEADS_SHAPE], `${a}.self.${name}/Reshape_output`);
      return node('Transpose', [`${a}.self.${name}/Reshape_output`], `${a}.self.${name}/heads`, { perm });
    };
    const q = heads4('query', linear(`${a}.self.query`, x, hidden, hidden), [0, 2, 1, 3]);
    const k = heads4('key', linear(`${a}.self.key`, x, hidden, hidden), [0, 2, 3, 1]);
    const v = heads4('value', linear(`${a}.self.value`, x, hidden, hidden), [0, 2, 1, 3]);
    node('MatMul', [q, k], `${a}.self/scores_raw`);
    node('Div', [`${a}.self/scores_raw`, F_SCALE], `${a}.self/scores_scaled`);
    node('Add', [`${a}.self/scores_scaled`, 'mask/extended'], `${a}.self/scores`);
    node('Softmax', [`${a}.self/scores`], `${a}.self/probs`, { axis: -1 });
    node('MatMul', [`${a}.self/probs`, v], `${a}.self/context_heads`);
    node('Transpose', [`${a}.self/context_heads`], `${a}.self/context_t`, { perm: [0, 2, 1, 3] });
    node('Reshape', [`${a}.self/context_t`, MERGE_SHAPE], `${a}.self/context`);
    const attnOut = linear(`${a}.output.dense`, `${a}.self/context`, hidden, hidden);
    node('Add', [attnOut, x], `${a}.output/residual`);
    x = layerNorm(`${a}.output.LayerNorm`, `${a}.output/residual`, `${a}.output/output`);

    const f = linear(`${p}.intermediate.dense`, x, hidden, ffn);
    node('Div', [f, F_SQRT2], `${p}.intermediate/gelu_div`);
    node('Erf', [`${p}.intermediate/gelu_div`], `${p}.intermediate/gelu_erf`);
    node('Add', [`${p}.intermediate/gelu_erf`, F_ONE], `${p}.intermediate/gelu_add`);
    node('Mul', [f, `${p}.intermediate/gelu_add`], `${p}.intermediate/gelu_mul`);
    node('Mul', [`${p}.intermediate/gelu_mul`, F_HALF], `${p}.intermediate/output`);
    const out = linear(`${p}.output.dense`, `${p}.intermediate/output`, ffn, hidden);
    node('Add', [out, x], `${p}.output/residual`);
    x = layerNorm(`${p}.output.LayerNorm`, `${p}.output/residual`, l === layers - 1 ? 'last_hidden_state' : `${p}.output/output`);
  }

  // GraphProto: node=1, name=2, initializer=5, input=11, output=12
  const graph = [];
  for (const n of nodes) graph.push(...pMsg(1, n));
  graph.push(...pString(2, 'bert'));
  for (const t of inits) graph.push(...pMsg(5, t));
  for (const name of ['input_ids', 'attention_mask', 'token_type_ids']) graph.push(...pMsg(11, valueInfo(name, DT_INT64, ['batch', 'sequence'])));
  graph.push(...pMsg(12, valueInfo('last_hidden_state', DT_FLOAT, ['batch', 'sequence', hidden])));

  // ModelProto: ir_version=1, producer_name=2, producer_version=3, graph=7, opset_import=8
  // OperatorSetIdProto: domain=1, version=2 (domain "" = ai.onnx)
  const model = rope(
    pVarint(1, 8),
    pString(2, 'memory-server'),
    pString(3, '1'),
    pMsg(7, graph),
    pMsg(8, rope(pString(1, ''), pVarint(2, 17))),
  );
  return Buffer.concat(model, ropeLength(model));
}

// ---------------------------------------------------------------------------
// Vocabulary and tokenizer.

export const SPECIAL_TOKENS = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];

// Common English words (lowercase). Duplicates are dropped when the vocab is built.
const WORDS = `
the of and to in is it you that he was for on are with as his they be at one have this from or had by hot
word but what some we can out other were all there when up use your how said an each she which do their time
if will way about many then them write would like so these her long make thing see him two has look more day
could go come did number sound no most people my over know water than call first who may down side been now
find any new work part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line differ turn cause
much mean before move right boy old too same tell does set three want air well also play small end put home
read hand port large spell add even land here must big high such follow act why ask men change went light
kind off need house picture try us again animal point mother world near build self earth father head stand
own page should country found answer school grow study still learn plant cover food sun four between state
keep eye never last let thought city tree cross farm hard start might story saw far sea draw left late run
while press close night real life few north open seem together next white children begin got walk example
ease paper group always music those both mark often letter until mile river car feet care second book carry
took science eat room friend began idea fish mountain stop once base hear horse cut sure watch color face wood
main enough plain girl usual young ready above ever red list though feel talk bird soon body dog family direct
pose leave song measure door product black short numeral class wind question happen complete ship area half
rock order fire south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen six table travel
less morning ten simple several vowel toward war lay against pattern slow center love person money serve
appear road map rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark
machine note wait plan figure star box noun field rest correct able pound done beauty drive stood contain
front teach week final gave green oh quick develop ocean warm free minute strong special mind behind clear
tail produce fact street inch multiply nothing course stay wheel full force blue object decide surface deep
moon island foot system busy test record boat common gold possible plane stead dry wonder laugh thousand ago
ran check game shape equate miss brought heat snow tire bring yes distant fill east paint language among
grand ball yet wave drop heart am present heavy dance engine position arm wide sail material size vary settle
speak weight general ice matter circle pair include divide syllable felt perhaps pick sudden count square
reason length represent art subject region energy hunt probable bed brother egg ride cell believe fraction
forest sit race window store summer train sleep prove lone leg exercise wall catch mount wish sky board joy
winter sat written wild instrument kept glass grass cow job edge sign visit past soft fun bright gas weather
month million bear finish happy hope flower clothe strange gone jump baby eight village meet root buy raise
solve metal whether push seven paragraph third shall held hair describe cook floor either result burn hill
safe cat century consider type law bit coast copy phrase silent tall sand soil roll temperature finger
industry value fight lie beat excite natural view sense ear else quite broke case middle kill son lake moment
scale loud spring observe child straight consonant nation dictionary milk speed method organ pay age section
dress cloud surprise quiet stone tiny climb cool design poor lot experiment bottom key iron single stick flat
twenty skin smile crease hole trade melody trip office receive row mouth exact symbol die least trouble shout
except wrote seed tone join suggest clean break lady yard rise bad blow oil blood touch grew cent mix team
wire cost lost brown wear garden equal sent choose fell fit flow fair bank collect save control decimal
gentle woman captain practice separate difficult doctor please protect noon whose locate ring character
insect caught period indicate radio spoke atom human history effect electric expect crop modern element hit
student corner party supply bone rail imagine provide agree thus capital chair danger fruit rich thick
soldier process operate guess necessary sharp wing create neighbor wash bat rather crowd corn compare poem
string bell depend meat rub tube famous dollar stream fear sight thin triangle planet hurry chief colony
clock mine tie enter major fresh search send yellow gun allow print dead spot desert suit current lift rose
continue block chart hat sell success company subtract event particular deal swim term opposite wife shoe
shoulder spread arrange camp invent cotton born determine quart nine truck noise level chance gather shop
stretch throw shine property column molecule select wrong gray repeat require broad prepare salt nose plural
anger claim continent oxygen sugar death pretty skill women season solution magnet silver thank branch match
suffix especially fig afraid huge sister steel discuss forward similar guide experience score apple bought
led pitch coat mass card band rope slip win dream evening condition feed tool total basic smell valley nor
double seat arrive master track parent shore division sheet substance favor connect post spend chord fat
glad original share station dad bread charge proper bar offer segment slave duck instant market degree
populate chick dear enemy reply drink occur support speech nature range steam motion path liquid log meant
quotient teeth shell neck
hello goodbye thanks yesterday today tomorrow tonight someone something everything anything everyone nobody
because however without within another around across behind beyond already almost although maybe really
actually probably usually finally simply quickly slowly lazy jumps jumped jumping runs running walked walking
using used uses makes making called calling looking looked working worked works says saying knows wants
wanted needs needed gets getting goes going gone comes coming takes taking gives given thinks seems seemed
being having doing done shows shown told tells asked asks tried tries found finds kept keeps left leaves
memory server client data database search query index vector embedding model text token document file files
user users code program computer software hardware network internet email message messages phone video
image images page web site online service services system systems business company government public
private information research important different possible available local global value values version
update delete create insert select table record result results error errors request response status
language model models learning machine neural training test tests testing build release feature features
project projects team teams meeting week weeks month months hour hours minute minutes second seconds
price cost market sales customer customers product products support issue issues question questions answer
answers problem problems example examples note notes idea ideas plan plans policy report reports
health medical patient doctor hospital school student teacher class course university college science
history city country state national international world family friend friends children child parents
water food coffee tea dinner lunch breakfast house home room office car cars street road train plane
good bad better best worse worst new old big small large long short high low early late easy hard fast
slow open close first last next previous free full empty true false right wrong left up down
`;

const PRINTABLE = (() => {
  const out = [];
  for (let c = 0x21; c <= 0x7e; c++) if (c < 0x41 || c > 0x5a) out.push(String.fromCharCode(c));
  return out;
})();

function* ngrams(n) {
  const idx = new Array(n).fill(0);
  for (;;) {
    yield idx.map((i) => String.fromCharCode(97 + i)).join('');
    let j = n - 1;
    while (j >= 0 && ++idx[j] === 26) idx[j--] = 0;
    if (j < 0) return;
  }
}

/**
 * Token list (index = id): specials, printable ASCII chars (lowercase) and their
 * ## forms, common words, then generated letter n-grams up to `size`.
 * @returns {string[]}
 */
export function makeVocab(size) {
  const base = SPECIAL_TOKENS.length + 2 * PRINTABLE.length;
  if (!Number.isInteger(size) || size < base) throw new Error(`makeVocab: size must be an integer >= ${base}`);
  const seen = new Set();
  const vocab = [];
  const add = (t) => {
    if (vocab.length < size && !seen.has(t)) {
      seen.add(t);
      vocab.push(t);
    }
  };
  for (const t of SPECIAL_TOKENS) add(t);
  for (const c of PRINTABLE) add(c);
  for (const c of PRINTABLE) add(`##${c}`);
  for (const w of WORDS.split(/\s+/)) if (/^[a-z]+$/.test(w)) add(w);
  for (let n = 2; vocab.length < size; n++) {
    for (const g of ngrams(n)) {
      if (vocab.length >= size) break;
      add(`##${g}`);
    }
    for (const g of ngrams(n)) {
      if (vocab.length >= size) break;
      add(g);
    }
  }
  return vocab;
}

/**
 * HuggingFace `tokenizers` JSON (uncased BERT WordPiece) for `vocab`. Truncation
 * and padding are left null (the embedder sets them); pass `truncation: true` to
 * record `maxLength` as a right truncation instead.
 */
export function makeTokenizerJson(vocab, { maxLength = 512, truncation = false } = {}) {
  const ids = new Map(vocab.map((t, i) => [t, i]));
  for (const t of SPECIAL_TOKENS) if (!ids.has(t)) throw new Error(`makeTokenizerJson: vocab lacks ${t}`);
  const vocabMap = {};
  vocab.forEach((t, i) => {
    vocabMap[t] = i;
  });
  const special = (t, typeId) => ({ SpecialToken: { id: t, type_id: typeId } });
  const seq = (id, typeId) => ({ Sequence: { id, type_id: typeId } });
  return {
    version: '1.0',
    truncation: truncation ? { direction: 'Right', max_length: maxLength, strategy: 'LongestFirst', stride: 0 } : null,
    padding: null,
    added_tokens: SPECIAL_TOKENS.map((t) => ({
      id: ids.get(t),
      content: t,
      single_word: false,
      lstrip: false,
      rstrip: false,
      normalized: false,
      special: true,
    })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: {
      type: 'TemplateProcessing',
      single: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0)],
      pair: [special('[CLS]', 0), seq('A', 0), special('[SEP]', 0), seq('B', 1), special('[SEP]', 1)],
      special_tokens: {
        '[CLS]': { id: '[CLS]', ids: [ids.get('[CLS]')], tokens: ['[CLS]'] },
        '[SEP]': { id: '[SEP]', ids: [ids.get('[SEP]')], tokens: ['[SEP]'] },
      },
    },
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: {
      type: 'WordPiece',
      unk_token: '[UNK]',
      continuing_subword_prefix: '##',
      max_input_chars_per_word: 100,
      vocab: vocabMap,
    },
  };
}

/**
 * Pretty JSON for a tokenizer object, with model.vocab written in id order (a JS
 * object would list integer-like keys such as "0".."9" first).
 */
export function serializeTokenizerJson(tok) {
  const vocab = tok.model.vocab;
  const placeholder = '\u0000VOCAB\u0000';
  const text = JSON.stringify({ ...tok, model: { ...tok.model, vocab: placeholder } }, null, 2);
  const entries = Object.entries(vocab).sort((a, b) => a[1] - b[1]);
  const body = `{\n${entries.map(([t, i]) => `      ${JSON.stringify(t)}: ${i}`).join(',\n')}\n    }`;
  return `${text.replace(JSON.stringify(placeholder), () => body)}\n`;
}

// ---------------------------------------------------------------------------
// Model directory.

/**
 * Writes model.onnx, tokenizer.json and config.json into `dir`.
 * @param {string} dir
 * @param {'tiny'|'minilm'|object} preset a preset name or a shape object
 * @param {{ seed?: number }} [options]
 */
export function writeModelDir(dir, preset = 'tiny', { seed = DEFAULT_SEED } = {}) {
  const name = typeof preset === 'string' ? preset : (preset.name ?? 'custom');
  const shape = typeof preset === 'string' ? PRESETS[preset] : { typeVocab: 2, ...preset };
  if (!shape) throw new Error(`unknown preset ${preset} (expected ${Object.keys(PRESETS).join(' | ')})`);
  mkdirSync(dir, { recursive: true });
  const vocab = makeVocab(shape.vocabSize);
  const model = makeBertModel({ ...shape, seed });
  const tokenizer = makeTokenizerJson(vocab, { maxLength: shape.maxPositions });
  const config = {
    model_type: 'bert',
    architectures: ['BertModel'],
    preset: name,
    seed,
    vocab_size: shape.vocabSize,
    hidden_size: shape.hidden,
    num_hidden_layers: shape.layers,
    num_attention_heads: shape.heads,
    intermediate_size: shape.ffn,
    max_position_embeddings: shape.maxPositions,
    type_vocab_size: shape.typeVocab,
    layer_norm_eps: 1e-12,
    hidden_act: 'gelu',
    max_length: shape.maxPositions,
    inputs: ['input_ids', 'attention_mask', 'token_type_ids'],
    output: 'last_hidden_state',
    opset: 17,
    generator: 'scripts/make-bert-onnx.mjs (random weights)',
  };
  const files = {
    'model.onnx': model,
    'tokenizer.json': serializeTokenizerJson(tokenizer),
    'config.json': `${JSON.stringify(config, null, 2)}\n`,
  };
  const sizes = {};
  for (const [file, data] of Object.entries(files)) {
    writeFileSync(join(dir, file), data);
    sizes[file] = Buffer.byteLength(data);
  }
  return { dir, config, sizes };
}

// ---------------------------------------------------------------------------
// CLI.

function parseArgs(argv) {
  const opts = { out: undefined, preset: 'tiny', seed: DEFAULT_SEED };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const [flag, inline] = a.includes('=') ? a.split(/=(.*)/s) : [a, undefined];
    const value = () => inline ?? argv[++i];
    if (flag === '--out') opts.out = value();
    else if (flag === '--preset') opts.preset = value();
    else if (flag === '--seed') opts.seed = Number(value());
    else if (flag === '--help' || flag === '-h') opts.help = true;
    else throw new Error(`unknown argument ${a}`);
  }
  return opts;
}

const isMain = process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (isMain) {
  const usage = `usage: node ${fileURLToPath(import.meta.url)} --out DIR --preset ${Object.keys(PRESETS).join('|')} [--seed N]`;
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`${e.message}\n${usage}`);
    process.exit(2);
  }
  if (opts.help) {
    console.log(usage);
    process.exit(0);
  }
  if (!opts.out || !PRESETS[opts.preset] || !Number.isInteger(opts.seed)) {
    console.error(usage);
    process.exit(2);
  }
  const t0 = performance.now();
  const { dir, sizes } = writeModelDir(opts.out, opts.preset, { seed: opts.seed });
  const ms = Math.round(performance.now() - t0);
  const list = Object.entries(sizes)
    .map(([f, n]) => `${f} ${n} B`)
    .join(', ');
  console.log(`wrote ${dir} (preset ${opts.preset}, seed ${opts.seed}) in ${ms} ms: ${list}`);
}
