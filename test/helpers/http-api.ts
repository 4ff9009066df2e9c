/**
 * HTTP API test helpers: a JSON request over node:http, and an OpenAPI checker built from a
 * server's own `GET /openapi.json`: the document is validated with
 * @seriousme/openapi-schema-validator, and each request body / response body is validated with
 * Ajv (JSON Schema 2020-12, OpenAPI 3.1's dialect) against the schema of its operation and status.
 */
import http from 'node:http';
import { Validator } from '@seriousme/openapi-schema-validator';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { expect } from 'vitest';

export interface JsonResult {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any;
}

/** One request; `body` objects are sent as JSON (`Content-Type: application/json` unless headers say otherwise). */
export function request(
  port: number,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<JsonResult> {
  const payload = body === undefined ? undefined : typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const h: Record<string, string> = { ...headers };
  if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) h['Content-Type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path, headers: h, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let parsed: unknown;
        try {
          parsed = text ? JSON.parse(text) : undefined;
        } catch {
          parsed = undefined; // not JSON (e.g. /metrics): read `text`
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: parsed });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(payload);
  });
}

type Doc = {
  paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: object }> }; responses: Record<string, { content?: Record<string, { schema: object }> }> }>>;
  components: { schemas: Record<string, object> };
};

export interface OpenApiChecker {
  doc: Doc;
  /** Asserts that `body` is a valid request body of the operation. */
  checkRequest(method: string, path: string, body: unknown): void;
  /** Asserts that the response is documented for the operation (its status) and its body matches the schema. */
  checkResponse(method: string, path: string, r: JsonResult): void;
}

/** Loads and validates the server's OpenAPI document; returns request/response checks against it. */
export async function openApiChecker(port: number): Promise<OpenApiChecker> {
  const r = await request(port, 'GET', '/openapi.json');
  expect(r.status).toBe(200);
  const validator = new Validator();
  const result = await validator.validate(r.body as Record<string, unknown>);
  expect(result.errors ?? [], JSON.stringify(result.errors)).toEqual([]);
  expect(result.valid).toBe(true);
  const doc = r.body as Doc;
  const ajv = new Ajv2020({ strict: false, allErrors: true });
  ajv.addSchema({ $id: 'openapi.json', components: doc.components }, 'openapi.json');
  const compiled = new Map<object, ReturnType<typeof ajv.compile>>();
  const validate = (schema: object, value: unknown, what: string): void => {
    // `#/components/...` references resolve inside the document.
    const s = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"openapi.json#/components/')) as object;
    let v = compiled.get(schema);
    if (!v) {
      v = ajv.compile(s);
      compiled.set(schema, v);
    }
    const ok = v(value);
    expect(ok, `${what}: ${ajv.errorsText(v.errors)}\n${JSON.stringify(value).slice(0, 500)}`).toBe(true);
  };
  const operation = (method: string, path: string) => {
    const bare = path.split('?')[0]!;
    for (const [template, ops] of Object.entries(doc.paths)) {
      const re = new RegExp(`^${template.replace(/\{[^}]+\}/g, '[^/]+')}$`);
      if (re.test(bare)) {
        const op = ops[method.toLowerCase()];
        if (op) return { template, op };
      }
    }
    throw new Error(`no operation for ${method} ${bare} in the OpenAPI document`);
  };
  return {
    doc,
    checkRequest(method, path, body) {
      const { template, op } = operation(method, path);
      const schema = op.requestBody?.content['application/json']?.schema;
      expect(schema, `${method} ${template} takes no body`).toBeDefined();
      validate(schema!, body, `request ${method} ${template}`);
    },
    checkResponse(method, path, res) {
      const { template, op } = operation(method, path);
      const documented = op.responses[String(res.status)];
      expect(documented, `${method} ${template}: status ${res.status} is not documented`).toBeDefined();
      const schema = documented!.content?.['application/json']?.schema;
      if (schema) validate(schema, res.body, `response ${res.status} of ${method} ${template}`);
    },
  };
}
