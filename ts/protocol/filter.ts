/**
 * The shape of the metadata filter language (docs/protocol.md "Filter language"): its
 * operators and how deep filters may nest. The Rust core compiles and checks every filter in
 * full (crates/memory-core/src/filter.rs); this checks the structure early, with the same
 * messages, so a client sees `data.filter.$or[1].a: unknown operator $regex` whichever side
 * finds it. test/constants.test.ts checks these lists against the core's. Browser-safe.
 */

/** Operators that combine filters (keys of a filter object). */
export const LOGICAL_OPERATORS = ['$and', '$or', '$not'] as const;

/** Operators on one metadata path (keys of a condition object). */
export const FIELD_OPERATORS = ['$in', '$nin', '$gt', '$gte', '$lt', '$lte', '$ne', '$exists', '$contains', '$all'] as const;

/**
 * Filter objects a filter may nest through `$and` / `$or` / `$not`, the outermost being
 * level 1. Eight keeps the deepest filter inside MAX_NESTING_DEPTH (32): the filter is
 * level 3 of a request frame and each `$or` level adds two (an array and an object).
 */
export const MAX_FILTER_DEPTH = 8;

/** A problem in a filter: where (relative to the filter) and what. */
export interface FilterProblem {
  path: (string | number)[];
  message: string;
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v) && !ArrayBuffer.isView(v);
const FIELD = new Set<string>(FIELD_OPERATORS);

/**
 * The first structural problem of a filter object: an unknown logical or field operator, a
 * malformed `$and` / `$or` / `$not`, or nesting deeper than MAX_FILTER_DEPTH. Operands and
 * paths are left to the core, which reports them under `data.filter` too.
 */
export function filterProblem(filter: Json): FilterProblem | null {
  return objectProblem(filter, [], 1);
}

function objectProblem(f: Json, at: (string | number)[], depth: number): FilterProblem | null {
  for (const [key, spec] of Object.entries(f)) {
    const problem = key.startsWith('$') ? logicalProblem(key, spec, at, depth) : conditionProblem(spec, [...at, key]);
    if (problem) return problem;
  }
  return null;
}

function logicalProblem(op: string, arg: unknown, at: (string | number)[], depth: number): FilterProblem | null {
  if (op === '$and' || op === '$or') {
    if (!Array.isArray(arg) || arg.length === 0) return { path: [...at, op], message: 'must be a non-empty array of filters' };
    for (let i = 0; i < arg.length; i++) {
      const problem = subFilterProblem(arg[i], [...at, op, i], depth);
      if (problem) return problem;
    }
    return null;
  }
  if (op === '$not') return subFilterProblem(arg, [...at, op], depth);
  return { path: at, message: `unknown operator ${op}` };
}

function subFilterProblem(v: unknown, at: (string | number)[], depth: number): FilterProblem | null {
  if (depth >= MAX_FILTER_DEPTH) return { path: at, message: `filters nest deeper than ${MAX_FILTER_DEPTH} levels` };
  if (!isObject(v)) return { path: at, message: 'must be an object' };
  return objectProblem(v, at, depth + 1);
}

function conditionProblem(spec: unknown, at: (string | number)[]): FilterProblem | null {
  if (!isObject(spec)) return null;
  const keys = Object.keys(spec);
  // Operators mixed with plain keys: the core names both.
  if (!keys.some((k) => k.startsWith('$')) || !keys.every((k) => k.startsWith('$'))) return null;
  const unknown = keys.find((k) => !FIELD.has(k));
  return unknown === undefined ? null : { path: at, message: `unknown operator ${unknown}` };
}

/**
 * Whether a (valid) filter names a metadata field anywhere. One that does not — `{}`,
 * `{"$and": [{}]}`, `{"$not": {"$or": [{}]}}` — matches every memory or none, whatever they
 * hold: delete-by-filter refuses it without `all: true`, as it refuses `{}`.
 */
export function namesAField(filter: unknown): boolean {
  if (typeof filter !== 'object' || filter === null || Array.isArray(filter)) return false;
  for (const [key, value] of Object.entries(filter)) {
    if (key === '$and' || key === '$or') {
      if (Array.isArray(value) && value.some((f) => namesAField(f))) return true;
    } else if (key === '$not') {
      if (namesAField(value)) return true;
    } else {
      return true;
    }
  }
  return false;
}
