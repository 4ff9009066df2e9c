// Retrieval quality of the three retrieve modes (docs/search.md): recall@10 of `vector`,
// `text` and `hybrid` on three query sets over one synthetic corpus, through the functions
// the memory server's retrieve uses (the store's searchBatched and searchText, fuseRrf).
//
// Corpus: BENCH_QUALITY_ROWS (2,000) tickets "Ticket TCK-<5 digits>: <three content words>
// reported by the team", with consecutive ticket numbers (neighbours share most character
// trigrams) and content words drawn from 3,000 invented words of 7–9 random letters (each
// in a few tickets).
// Query sets, 200 queries each:
//  - identifiers: the ticket number alone → its ticket. Exact terms: text should win.
//  - misspelled: the ticket's three content words, each misspelled (a letter dropped or two
//    swapped) → its ticket. No exact term: vector (character trigrams) should win.
//  - mixed: one ticket's number and another ticket's misspelled words → both tickets.
// The vector ranking uses the hash embedder (character trigrams, word unigrams and bigrams).
// Paraphrases proper need a trained model, which this machine cannot fetch; the generated
// MiniLM-shaped model of scripts/make-bert-onnx.mjs has random weights, so its rankings say
// nothing about quality and it is not used here.
import { MemoryStore, hashEmbed } from '../dist/native.js';
import { fuseRrf, HYBRID_DEPTH } from '../dist/server/retrieve-modes.js';
import { removeDir, rng, saveResult, tempDir } from './common.js';

const N = Number(process.env.BENCH_QUALITY_ROWS ?? 2000);
const Q = 200;
const K = 10;
const D = 384;
const r = rng(77);
const LETTERS = 'abcdefghijklmnopqrstuvwxyz';
const invented = () => Array.from({ length: 7 + Math.floor(r() * 3) }, () => LETTERS[Math.floor(r() * 26)]).join('');
const vocab = [...new Set(Array.from({ length: 3100 }, invented))].slice(0, 3000);
const vocabSet = new Set(vocab);
const tickets = Array.from({ length: N }, (_, i) => ({
  id: `t${i}`,
  code: `TCK-${40000 + i}`,
  words: [0, 1, 2].map(() => vocab[Math.floor(r() * vocab.length)]),
}));
const textOf = (t) => `Ticket ${t.code}: ${t.words.join(' ')} reported by the team`;

/** A misspelling that is no word of the vocabulary: a middle letter dropped, or two swapped. */
function misspell(w) {
  for (;;) {
    const i = 1 + Math.floor(r() * (w.length - 2));
    const m = r() < 0.5 ? w.slice(0, i) + w.slice(i + 1) : w.slice(0, i) + w[i + 1] + w[i] + w.slice(i + 2);
    if (m !== w && !vocabSet.has(m)) return m;
  }
}

const pickTicket = () => tickets[Math.floor(r() * N)];
const sets = {
  identifiers: Array.from({ length: Q }, () => {
    const t = pickTicket();
    return { q: t.code, relevant: [t.id] };
  }),
  misspelled: Array.from({ length: Q }, () => {
    const t = pickTicket();
    return { q: t.words.map(misspell).join(' '), relevant: [t.id] };
  }),
  mixed: Array.from({ length: Q }, () => {
    const a = pickTicket();
    let b = pickTicket();
    while (b === a) b = pickTicket();
    return { q: `${a.code} ${b.words.map(misspell).join(' ')}`, relevant: [a.id, b.id] };
  }),
};

const dir = tempDir('ms-quality-');
const store = MemoryStore.open(dir, { dims: D, fsync: 'off' });
const vecs = hashEmbed(tickets.map(textOf), D);
await store.put(tickets.map((t, i) => ({ namespace: 'default', id: t.id, text: textOf(t), embedding: vecs.subarray(i * D, (i + 1) * D) })));

const opts = { namespace: 'default', k: K };
const deep = { namespace: 'default', k: HYBRID_DEPTH };
const results = {};
for (const [name, queries] of Object.entries(sets)) {
  const found = { vector: 0, text: 0, hybrid: 0 };
  let relevant = 0;
  for (const { q, relevant: rel } of queries) {
    const qv = hashEmbed([q], D);
    const vector = (await store.searchBatched(qv, opts)).map((m) => m.id);
    const text = (await store.searchText(q, opts)).map((m) => m.id);
    const [v, t] = await Promise.all([store.searchBatched(qv, deep), store.searchText(q, deep)]);
    const hybrid = fuseRrf(v, t, K).map((x) => x.m.id);
    relevant += rel.length;
    for (const [mode, ids] of Object.entries({ vector, text, hybrid })) found[mode] += rel.filter((id) => ids.includes(id)).length;
  }
  results[name] = Object.fromEntries(Object.entries(found).map(([m, f]) => [m, Number((f / relevant).toFixed(3))]));
  console.log(`${name}: recall@10 ${JSON.stringify(results[name])}`);
}
store.close();
removeDir(dir);
const m = results.mixed;
saveResult('search-quality', {
  corpus: { memories: N, queries_per_set: Q, embedder: 'hash-v1 (384 dims)', hybrid: `RRF, k = 60, each ranking ${HYBRID_DEPTH} deep` },
  recall_at_10: results,
  hybrid_at_least_best_single_on_mixed: m.hybrid >= Math.max(m.vector, m.text),
});
