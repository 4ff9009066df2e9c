/** Host figures for the status message: machine CPU % (os.cpus deltas), memory %, data directory size. */
import os from 'node:os';
import { readdir, lstat } from 'node:fs/promises';
import path from 'node:path';

interface CpuTimes {
  idle: number;
  total: number;
}

function cpuTimes(): CpuTimes {
  let idle = 0;
  let total = 0;
  for (const c of os.cpus()) {
    const t = c.times;
    idle += t.idle;
    total += t.user + t.nice + t.sys + t.irq + t.idle;
  }
  return { idle, total };
}

/** Machine CPU % (of all cores) since the previous call. */
export class HostSampler {
  private prev = cpuTimes();
  private lastPercent = 0;

  cpuPercent(): number {
    const now = cpuTimes();
    const dTotal = now.total - this.prev.total;
    const dIdle = now.idle - this.prev.idle;
    // os.cpus() ticks are 10 ms: too short a window shows nothing; keep the last figure.
    if (dTotal > 0) {
      this.lastPercent = Math.round(((dTotal - dIdle) / dTotal) * 1000) / 10;
      this.prev = now;
    }
    return this.lastPercent;
  }

  memoryPercent(): number {
    const total = os.totalmem();
    return total === 0 ? 0 : Math.round(((total - os.freemem()) / total) * 1000) / 10;
  }
}

/** Bytes used by the files under `dir` (recursively; symlinks not followed). 0 if it does not exist. */
export async function directorySize(dir: string, depth = 0): Promise<number> {
  if (depth > 8) return 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  let sum = 0;
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) sum += await directorySize(p, depth + 1);
    else if (e.isFile()) {
      try {
        sum += (await lstat(p)).size;
      } catch {
        /* removed meanwhile */
      }
    }
  }
  return sum;
}
