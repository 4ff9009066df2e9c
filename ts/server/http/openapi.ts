/**
 * The OpenAPI 3.1 document of the memory server's HTTP API, generated from the route table
 * (memory-api.ts) and the zod schemas the handlers validate with (protocol/memory.ts) and the
 * reply schemas (protocol/http.ts): nothing here restates a field. Served at
 * `GET /openapi.json`.
 */
import type { ZodTypeAny } from 'zod';
import { ignoreOverride, zodToJsonSchema } from 'zod-to-json-schema';
import { NAMESPACE_HEADER, healthReplySchema, httpErrorSchema } from '../../protocol/http.js';
import { filterSchema, vectorSchema } from '../../protocol/memory.js';
import { VERSION } from '../../version.js';
import { MEMORY_API_ROUTES, type ApiRoute } from './memory-api.js';

type JsonSchema = Record<string, unknown>;

/**
 * zod schema → JSON Schema (draft 7 keywords, which OpenAPI 3.1's 2020-12 dialect reads alike). The two
 * `z.custom` schemas (a vector; a plain JSON object) say in JSON Schema what their check does.
 */
export function jsonSchemaOf(schema: ZodTypeAny): JsonSchema {
  const out = zodToJsonSchema(schema, {
    target: 'jsonSchema7',
    $refStrategy: 'none',
    override: (def) => {
      if (def === vectorSchema._def) return { type: 'array', items: { type: 'number' }, minItems: 1 };
      if (def === filterSchema._def) return { type: 'object' };
      return ignoreOverride;
    },
  }) as JsonSchema;
  delete out.$schema;
  return out;
}

const OPENAPI_METHOD: Record<ApiRoute['method'], string> = { get: 'get', post: 'post', patch: 'patch', del: 'delete' };

const ERROR_RESPONSES: Record<number, string> = {
  400: 'Invalid request: a field missing, unknown, of the wrong type or out of range (`code` invalid_request), or a body that is not JSON (invalid_json).',
  401: 'Missing or bad token (only when the server has --token or --jwt-secret).',
  403: 'Origin or Host not allowed.',
  404: 'Unknown memory id (not_found), or no such route (route_not_found).',
  413: 'The body, or a field, over its limit (payload_too_large).',
  415: 'The body is not `Content-Type: application/json`.',
  429: 'Over the rate limit; `Retry-After` says when to retry (rate_limited).',
  500: 'A bug; the message names a correlation id that is in the server log (internal).',
  503: 'Shutting down, storage full (unavailable) or the embedding queue full (overloaded).',
};

function errorResponses(route: ApiRoute): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [status, description] of Object.entries(ERROR_RESPONSES)) {
    if (status === '415' && !route.body) continue;
    const headers =
      status === '429' ? { 'Retry-After': { description: 'Seconds to wait.', schema: { type: 'integer' } } } : undefined;
    out[status] = { description, ...(headers ? { headers } : {}), content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } };
  }
  return out;
}

function parameters(route: ApiRoute): unknown[] {
  const out: unknown[] = [];
  if (route.idParam) out.push({ name: 'id', in: 'path', required: true, description: 'The memory id (percent-encoded).', schema: { type: 'string', minLength: 1 } });
  if (route.command !== 'namespaces') {
    out.push({ name: 'namespace', in: 'query', description: 'The namespace (default `default`); or the X-Namespace header, or `namespace` in the body.', schema: { type: 'string', minLength: 1, maxLength: 256 } });
    out.push({ name: NAMESPACE_HEADER, in: 'header', description: 'The namespace, as the `namespace` query parameter.', schema: { type: 'string', minLength: 1, maxLength: 256 } });
  }
  for (const [name, p] of Object.entries(route.query ?? {})) {
    const schema = jsonSchemaOf(p.schema);
    out.push(
      p.kind === 'json'
        ? { name, in: 'query', description: p.description, content: { 'application/json': { schema } } }
        : { name, in: 'query', description: p.description, schema },
    );
  }
  return out;
}

function operation(route: ApiRoute, secured: boolean): Record<string, unknown> {
  const responses: Record<string, unknown> = {};
  for (const [status, r] of Object.entries(route.responses)) {
    responses[status] = { description: r.description, content: { 'application/json': { schema: jsonSchemaOf(r.schema) } } };
  }
  Object.assign(responses, errorResponses(route));
  return {
    operationId: `${route.command}_${OPENAPI_METHOD[route.method]}${route.idParam ? '_by_id' : ''}`,
    summary: route.summary,
    description: `Runs the \`${route.command}\` command (docs/protocol.md); the reply body is the WebSocket reply's \`data\`.`,
    parameters: parameters(route),
    ...(route.body ? { requestBody: { required: false, content: { 'application/json': { schema: jsonSchemaOf(route.body) } } } } : {}),
    responses,
    ...(secured ? {} : { security: [] }),
  };
}

function healthOperation(summary: string, withChecks: boolean): Record<string, unknown> {
  const body = { content: { 'application/json': { schema: jsonSchemaOf(healthReplySchema) } } };
  return {
    summary,
    security: [],
    responses: withChecks ? { 200: { description: 'Ready.', ...body }, 503: { description: 'Not ready: `checks` says what is missing.', ...body } } : { 200: { description: 'Alive.', ...body } },
  };
}

/** The document (built once per server: it depends only on the code). */
export function memoryOpenApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of MEMORY_API_ROUTES) {
    const p = route.pattern.replace(/:([A-Za-z_]+)/g, '{$1}');
    (paths[p] ??= {})[OPENAPI_METHOD[route.method]] = operation(route, true);
  }
  paths['/healthz'] = { get: healthOperation('Liveness: the server answers.', false) };
  paths['/readyz'] = { get: healthOperation('Readiness: listening, store open, embedder loaded.', true) };
  paths['/metrics'] = {
    get: { summary: 'Prometheus metrics (text format).', responses: { 200: { description: 'Metrics.', content: { 'text/plain': { schema: { type: 'string' } } } } } },
  };
  paths['/openapi.json'] = {
    get: { summary: 'This document.', security: [], responses: { 200: { description: 'OpenAPI 3.1.', content: { 'application/json': { schema: { type: 'object' } } } } } },
  };
  return {
    openapi: '3.1.0',
    info: {
      title: 'memory-server HTTP API',
      version: VERSION,
      description: 'The memory commands over HTTP: the same handlers, validation, auth, rate limits and metrics as the WebSocket protocol (docs/http.md).',
    },
    paths,
    components: {
      schemas: { Error: jsonSchemaOf(httpErrorSchema) },
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'The --token secret or an HS256 JWT (also accepted as ?token=).' } },
    },
    // Applies only when the server has --token or --jwt-secret; otherwise every route is open.
    security: [{ bearer: [] }, {}],
  };
}
