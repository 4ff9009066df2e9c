/**
 * Download progress: a one-line bar rewritten in place on a terminal, or one line per file
 * when the output is not a terminal (logs, CI). Written here because it is one line of
 * text redrawn with `\r` — a progress-bar library would add more than it saves.
 */
export interface Progress {
  start(file: string, total: number): void;
  update(done: number, total: number): void;
  end(): void;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

const WIDTH = 24;
const REDRAW_MS = 100;

/** A bar on `stream` when it is a terminal (and HF_HUB_DISABLE_PROGRESS_BARS is unset), else one log line per file. */
export function createProgress(stream: NodeJS.WriteStream, log: (msg: string) => void, env: NodeJS.ProcessEnv = process.env): Progress {
  const tty = stream.isTTY === true && !/^(1|true|yes|on)$/i.test(env.HF_HUB_DISABLE_PROGRESS_BARS ?? '');
  let name = '';
  let startedAt = 0;
  let lastDraw = 0;
  const draw = (done: number, total: number): void => {
    const frac = total > 0 ? done / total : 1;
    const filled = Math.round(frac * WIDTH);
    const secs = (Date.now() - startedAt) / 1000;
    const rate = secs > 0 ? `${formatBytes(Math.round(done / secs))}/s` : '';
    stream.write(`\r${name} [${'#'.repeat(filled)}${'.'.repeat(WIDTH - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${rate}\x1b[K`);
  };
  return {
    start(file, total) {
      name = file;
      startedAt = Date.now();
      lastDraw = 0;
      if (tty) draw(0, total);
      else log(`fetching ${file} (${formatBytes(total)})`);
    },
    update(done, total) {
      if (!tty) return;
      const now = Date.now();
      if (now - lastDraw < REDRAW_MS && done < total) return;
      lastDraw = now;
      draw(done, total);
    },
    end() {
      if (tty) stream.write('\n');
    },
  };
}
