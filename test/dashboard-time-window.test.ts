/**
 * The dashboard charts' time axis (ts/dashboard/time-window.ts), with the min/max uPlot
 * actually passes: for a single point it has already widened them to 86400 / ms.
 */
import { describe, expect, it } from 'vitest';
import { MIN_SPAN_S, xWindow } from '../ts/dashboard/time-window.js';

const t = 1_780_000_000; // seconds, as the charts' x values

describe('chart time axis', () => {
  it('one point: the axis ends at it and spans MIN_SPAN_S, not the 86,400,000 s uPlot widened it to', () => {
    expect(xWindow({ data: [[t], [1]] }, t, t + 86_400_000)).toEqual([t - MIN_SPAN_S, t]);
  });

  it('a few seconds of points: still MIN_SPAN_S, ending at the newest', () => {
    expect(xWindow({ data: [[t, t + 2, t + 4], [1, 2, 3]] }, t, t + 4)).toEqual([t + 4 - MIN_SPAN_S, t + 4]);
  });

  it('more than MIN_SPAN_S of points: exactly their span', () => {
    const xs = Array.from({ length: 150 }, (_, i) => t + 2 * i);
    expect(xWindow({ data: [xs, xs] }, t, t + 298)).toEqual([t, t + 298]);
  });

  it('no points yet: a MIN_SPAN_S window ending at the scale max', () => {
    expect(xWindow({ data: [[], []] }, null, t)).toEqual([t - MIN_SPAN_S, t]);
  });
});
