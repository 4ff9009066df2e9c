/**
 * The charts' time axis: it spans the points a chart holds, ending at the newest, and at
 * least MIN_SPAN_S. Computed from the chart's own x values, not from the min/max uPlot passes:
 * for a single point uPlot has already widened those to 86400 / ms (86,400,000 s with
 * seconds as the unit), which put years on the axis right after start.
 */
export const MIN_SPAN_S = 60;

/** uPlot's x-scale `range` callback (only `data` of the plot is read). */
export function xWindow(u: { data: ArrayLike<ArrayLike<number | null | undefined>> }, _min: number | null, max: number | null): [number, number] {
  const xs = u.data[0];
  const n = xs?.length ?? 0;
  const last = n > 0 ? Number(xs![n - 1]) : (max ?? Date.now() / 1000);
  const first = n > 0 ? Number(xs![0]) : last;
  return [last - Math.max(last - first, MIN_SPAN_S), last];
}
