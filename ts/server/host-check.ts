/**
 * `Host` header allow-list against DNS rebinding: a page on attacker.example whose name
 * re-resolves to 127.0.0.1 talks to our port *same-origin* (no Origin header on its GETs,
 * so the Origin check does not see it), but its requests still say `Host: attacker.example`.
 * Allowed: the loopback names (localhost, 127.0.0.1, [::1]), the configured bind host, and
 * any extra names given (`allowedHosts`; `*` allows every Host). A request without Host
 * (HTTP/1.0 tools; browsers always send it) passes.
 */

export type HostCheck = 'all' | 'http' | 'off';

const LOOPBACK = ['localhost', '127.0.0.1', '[::1]'];

/** `name` of `name:port` / `[v6]:port`, lower-cased, without a trailing dot. */
export function hostName(header: string): string {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    return end < 0 ? h : h.slice(0, end + 1);
  }
  // A bare IPv6 address (a configured host or list entry, never a Host header) keeps its colons.
  if (h.indexOf(':') !== h.lastIndexOf(':')) return `[${h}]`;
  const colon = h.indexOf(':');
  const name = colon < 0 ? h : h.slice(0, colon);
  return name.endsWith('.') ? name.slice(0, -1) : name;
}

/** Whether a bind address only accepts local connections. */
export function isLoopbackHost(host: string): boolean {
  const name = hostName(host);
  return LOOPBACK.includes(name) || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/**
 * What a server checks by default: every request (upgrades too) for the control center, the
 * plain HTTP routes only for the memory and inference servers when they bind a loopback
 * address (their WebSocket clients come from anywhere the bind allows, browsers among them
 * are held by the Origin check), nothing otherwise.
 */
export function defaultHostCheck(bindHost: string): HostCheck {
  return isLoopbackHost(bindHost) ? 'http' : 'off';
}

export class HostPolicy {
  private readonly any: boolean;
  private readonly names: Set<string>;

  constructor(bindHost: string, extra: readonly string[] = []) {
    this.any = extra.includes('*');
    this.names = new Set([...LOOPBACK, hostName(bindHost), ...extra.map(hostName)]);
  }

  allows(hostHeader: string | undefined): boolean {
    if (!hostHeader || this.any) return true;
    return this.names.has(hostName(hostHeader));
  }
}
