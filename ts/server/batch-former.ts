/**
 * Padding-aware batch forming for the dynamic batcher (inference-batcher.ts).
 *
 * A model run pads every text of a batch to the batch's longest, and its cost grows with
 * the padded tokens (texts × longest) plus a fixed cost per run. Texts of mixed lengths in
 * arrival order waste most of a run on padding (one 250-token text among 31 short ones
 * makes all 32 cost 250). So the waiting texts are sorted by length and cut into the runs
 * that cost least in total — a run of n texts whose longest has L tokens costs
 * `runOverheadTokens + n × L` — and the next run is the one holding the oldest waiting
 * text, so every text goes at the latest when it is the oldest (nothing starves).
 *
 * Written by hand: it is the core of the batcher's throughput (a dynamic programme over at
 * most a few thousand sorted lengths, microseconds per batch), not a solved problem with a
 * library.
 */

export interface BatchFormOptions {
  /** Texts per run. */
  maxBatch: number;
  /** Padded tokens per run (texts × longest); a single text longer than this runs alone. */
  maxBatchTokens: number;
  /** The fixed cost of one run, in padded tokens: higher favours fewer, fuller runs. */
  runOverheadTokens: number;
}

/**
 * The cheapest partition of the texts into runs: lists of indices into `tokens`, each
 * shortest first, the runs in order of length. A run holds at most `maxBatch` texts and
 * `maxBatchTokens` padded tokens (a single longer text runs alone). Sorted runs are
 * enough: some cheapest partition always cuts the length-sorted texts into contiguous runs.
 */
export function planRuns(tokens: ArrayLike<number>, o: BatchFormOptions): number[][] {
  const m = tokens.length;
  const order = Array.from({ length: m }, (_, i) => i).sort((a, b) => tokens[a]! - tokens[b]! || a - b);
  // best[i]: cheapest cost of running the i shortest texts; from[i]: where the last run starts.
  const best = new Float64Array(m + 1);
  const from = new Int32Array(m + 1);
  for (let i = 1; i <= m; i++) {
    const longest = tokens[order[i - 1]!]!; // sorted: the run's last text is its longest
    best[i] = Infinity;
    for (let j = i - 1; j >= Math.max(0, i - o.maxBatch); j--) {
      const n = i - j;
      if (n > 1 && n * longest > o.maxBatchTokens) break;
      const cost = best[j]! + o.runOverheadTokens + n * longest;
      if (cost <= best[i]!) {
        // `<=`: on a tie the longer run (fewer runs) wins
        best[i] = cost;
        from[i] = j;
      }
    }
  }
  const runs: number[][] = [];
  for (let end = m; end > 0; end = from[end]!) runs.push(order.slice(from[end]!, end));
  return runs.reverse();
}

/**
 * Indices (into `tokens`, whose index 0 is the oldest waiting text) of the texts to run
 * next: the run of `planRuns` that holds index 0.
 */
export function nextBatch(tokens: ArrayLike<number>, o: BatchFormOptions): number[] {
  if (tokens.length === 0) return [];
  const run = planRuns(tokens, o).find((r) => r.includes(0));
  if (!run) throw new Error('nextBatch: the oldest text is in no run'); // unreachable: the runs cover every text
  return run;
}

/** What running `runs` (each a list of token counts) costs under the model of planRuns. */
export function runsCost(runs: ReadonlyArray<ArrayLike<number>>, runOverheadTokens: number): number {
  let cost = 0;
  for (const r of runs) {
    let longest = 0;
    for (let i = 0; i < r.length; i++) longest = Math.max(longest, r[i]!);
    cost += runOverheadTokens + longest * r.length;
  }
  return cost;
}

/** Padded tokens over real tokens of running `groups` (each a list of token counts) as given. */
export function paddingRatio(groups: ReadonlyArray<ArrayLike<number>>): number {
  let padded = 0;
  let real = 0;
  for (const g of groups) {
    let longest = 0;
    for (let i = 0; i < g.length; i++) {
      longest = Math.max(longest, g[i]!);
      real += g[i]!;
    }
    padded += longest * g.length;
  }
  return real === 0 ? 1 : padded / real;
}
