// Limits and names that TypeScript and Rust both define must agree: the protocol's limits
// and the filter language's operators and depth (ts/protocol) and the `hash` embedder's dims
// and name (ts/native.ts) against the values the native addon exports from the Rust core.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { FIELD_OPERATORS, LOGICAL_OPERATORS, MAX_FILTER_DEPTH, MEMORY_LIMITS } from '../ts/protocol/memory.js';
import { HASH_DIMS, HASH_EMBEDDER_NAME, hashEmbed } from '../ts/native.js';

// The addon itself (not through ts/native.ts, which re-exports none of these).
const addon = createRequire(import.meta.url)('../native/index.cjs') as Record<string, unknown>;

describe('constants shared by TypeScript and Rust', () => {
  it('protocol limits equal the store limits', () => {
    expect({
      maxTextBytes: MEMORY_LIMITS.maxTextBytes,
      maxMetadataBytes: MEMORY_LIMITS.maxMetadataBytes,
      maxIdChars: MEMORY_LIMITS.maxIdChars,
      maxNamespaceChars: MEMORY_LIMITS.maxNamespaceChars,
    }).toEqual({
      maxTextBytes: addon.MAX_TEXT_BYTES,
      maxMetadataBytes: addon.MAX_METADATA_BYTES,
      maxIdChars: addon.MAX_ID_CHARS,
      maxNamespaceChars: addon.MAX_NAMESPACE_CHARS,
    });
  });

  it('the filter language has the same operators and depth limit', () => {
    expect(MAX_FILTER_DEPTH).toBe(addon.MAX_FILTER_DEPTH);
    const core = (addon.filterOperators as () => string[])();
    expect([...LOGICAL_OPERATORS, ...FIELD_OPERATORS]).toEqual(core);
  });

  it('the hash embedder has the dims and name TypeScript records', () => {
    expect(HASH_DIMS).toBe(addon.HASH_DIMS);
    expect(HASH_EMBEDDER_NAME).toBe(addon.HASH_EMBEDDER_NAME);
    // And it really embeds into that many dims by default.
    expect(hashEmbed(['one text'])).toHaveLength(HASH_DIMS);
  });
});
