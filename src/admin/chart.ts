// Server-side SVG for the page: the count-against-threshold bar and the activations-per-day
// chart. Presentation attributes only (no style attributes, no script), so the page's CSP holds.
import type { DayActivity } from './inventory-reads';
import { escapeHtml } from './html';

const SERVED = '#2f7d32';
const REFUSED = '#c62828';
const MISSING = '#e0e0e0';

/** A bar of `count` against `threshold`: filled to the count, a tick at the threshold. */
export function thresholdBar(count: number, threshold: number): string {
  const scale = Math.max(1, threshold, Math.min(count, 2 * Math.max(threshold, 1)));
  const w = Math.min(100, (count / scale) * 100);
  const t = threshold > 0 ? (threshold / scale) * 100 : -1;
  const colour = threshold > 0 && count >= threshold ? SERVED : '#ef6c00';
  return (
    `<svg class="bar" viewBox="0 0 100 10" preserveAspectRatio="none" role="img" aria-label="${count} of ${threshold} machines">` +
    `<rect width="100" height="10" fill="${MISSING}"/><rect width="${w.toFixed(2)}" height="10" fill="${colour}"/>` +
    (t >= 0 ? `<rect x="${Math.max(0, t - 0.4).toFixed(2)}" width="0.8" height="10" fill="#222"/>` : '') +
    '</svg>'
  );
}

/** Activations per day: served stacked under refused, one column per day, oldest on the left. */
export function activityChart(days: readonly DayActivity[]): string {
  const width = 600;
  const height = 180;
  const top = 12;
  const bottom = 22;
  const left = 36;
  const plotH = height - top - bottom;
  const max = Math.max(1, ...days.map((d) => d.served + d.refused));
  const step = (width - left) / Math.max(1, days.length);
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const bars = days
    .map((d, i) => {
      const x = (left + i * step + step * 0.15).toFixed(1);
      const w = (step * 0.7).toFixed(1);
      const servedTop = y(d.served);
      const refusedTop = y(d.served + d.refused);
      return (
        `<g><title>${escapeHtml(d.day)}: ${d.served} served, ${d.refused} refused</title>` +
        (d.served > 0
          ? `<rect x="${x}" y="${servedTop.toFixed(1)}" width="${w}" height="${(top + plotH - servedTop).toFixed(1)}" fill="${SERVED}"/>`
          : '') +
        (d.refused > 0
          ? `<rect x="${x}" y="${refusedTop.toFixed(1)}" width="${w}" height="${(servedTop - refusedTop).toFixed(1)}" fill="${REFUSED}"/>`
          : '') +
        '</g>'
      );
    })
    .join('');
  const first = days[0]?.day ?? '';
  const last = days[days.length - 1]?.day ?? '';
  return (
    `<svg class="chart" viewBox="0 0 ${width} ${height}" role="img" aria-label="Activations per day, last ${days.length} days">` +
    `<line x1="${left}" y1="${top + plotH}" x2="${width}" y2="${top + plotH}" stroke="#888"/>` +
    `<line x1="${left}" y1="${top}" x2="${width}" y2="${top}" stroke="#ddd"/>` +
    `<text x="${left - 4}" y="${top + 4}" text-anchor="end" font-size="11" fill="#555">${max}</text>` +
    `<text x="${left - 4}" y="${top + plotH}" text-anchor="end" font-size="11" fill="#555">0</text>` +
    bars +
    `<text x="${left}" y="${height - 6}" font-size="11" fill="#555">${escapeHtml(first)}</text>` +
    `<text x="${width}" y="${height - 6}" text-anchor="end" font-size="11" fill="#555">${escapeHtml(last)}</text>` +
    '</svg>'
  );
}
