#!/usr/bin/env node
/**
 * The `memory-server` executable. `--help` and `--version` need nothing native; everything
 * else loads the CLI (run.ts) dynamically, so that a missing native addon or a Node/platform
 * with no uWebSockets.js build is reported as one line with exit code 1, never as a stack
 * trace from module loading.
 */
import { UsageError, helpText, parseArgs } from './config.js';
import { VERSION } from '../version.js';

/** Errors that say everything in their message (set by native.ts and server/uws.ts). */
const START_UP_CODES = new Set(['native_unavailable', 'uws_unavailable']);

function quickCommands(): boolean {
  let args;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    if (e instanceof UsageError) return false; // run.ts reports it with the usual exit code 2
    throw e;
  }
  if (args.help) process.stdout.write(`${helpText(VERSION, args.command)}\n`);
  else if (args.version) process.stdout.write(`${VERSION}\n`);
  return args.help || args.version;
}

if (!quickCommands()) {
  let run: typeof import('./run.js');
  try {
    run = await import('./run.js');
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && START_UP_CODES.has(code)) {
      process.stderr.write(`memory-server: ${(e as Error).message}\n`);
      process.exit(1);
    }
    throw e;
  }
  await run.main();
}
