/** What the loaders of native code (ts/native.ts, ts/server/uws.ts) need to know about the host. */

/** The C library's version on Linux with glibc ("2.36"), else null (musl, or not Linux). */
export function glibcVersion(): string | null {
  if (process.platform !== 'linux') return null;
  const report = process.report?.getReport?.() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return report?.header?.glibcVersionRuntime ?? null;
}
