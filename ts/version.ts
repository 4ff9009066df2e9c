import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

function readVersion(): string {
  try {
    return (require('../package.json') as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** The package version (from package.json). */
export const VERSION: string = readVersion();
