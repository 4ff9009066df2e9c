/**
 * Browser Origin allow-list and CORS headers. Patterns are exact origins,
 * `scheme://host:*` (any port, or none), or `*` (any origin).
 */
export class OriginPolicy {
  private readonly any: boolean;
  private readonly exact = new Set<string>();
  private readonly anyPort: string[] = [];

  constructor(patterns: readonly string[]) {
    this.any = patterns.includes('*');
    for (const p of patterns) {
      const pattern = p.trim().toLowerCase().replace(/\/+$/, '');
      if (pattern.endsWith(':*')) this.anyPort.push(pattern.slice(0, -2));
      else this.exact.add(pattern);
    }
  }

  /** Requests without Origin (non-browser clients) are allowed. */
  allows(origin: string): boolean {
    if (!origin || this.any) return true;
    const o = origin.toLowerCase();
    if (this.exact.has(o)) return true;
    for (const base of this.anyPort) {
      if (o === base) return true;
      if (o.startsWith(`${base}:`) && /^\d{1,5}$/.test(o.slice(base.length + 1))) return true;
    }
    return false;
  }
}

export const CORS_ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE, OPTIONS';
export const CORS_ALLOW_HEADERS = 'Authorization, Content-Type, X-Namespace';
export const CORS_MAX_AGE = '600';
