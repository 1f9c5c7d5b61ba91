// A small line chart as SVG (no dependency): x on a log or linear axis, y in [0, 1] or
// any range, one polyline per series with a legend.
export interface Series {
  name: string;
  points: Array<[number, number]>;
}

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];

export function lineChart(options: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
  logX?: boolean;
  yMin?: number;
  yMax?: number;
  formatX?: (x: number) => string;
  formatY?: (y: number) => string;
}): string {
  const W = 720;
  const H = 440;
  const left = 70;
  const right = 190;
  const top = 40;
  const bottom = 60;
  const xs = options.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = options.series.flatMap((s) => s.points.map((p) => p[1]));
  const tx = (x: number) => (options.logX ? Math.log10(x) : x);
  const x0 = tx(Math.min(...xs));
  const x1 = tx(Math.max(...xs));
  const y0 = options.yMin ?? Math.min(...ys);
  const y1 = options.yMax ?? Math.max(...ys);
  const px = (x: number) => left + ((tx(x) - x0) / (x1 - x0 || 1)) * (W - left - right);
  const py = (y: number) => H - bottom - ((y - y0) / (y1 - y0 || 1)) * (H - top - bottom);
  const fx = options.formatX ?? ((x: number) => String(x));
  const fy = options.formatY ?? ((y: number) => y.toFixed(2));
  const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  parts.push(`<text x="${W / 2 - right / 2}" y="22" text-anchor="middle" font-size="15">${esc(options.title)}</text>`);
  // grid and ticks
  const xTicks = [...new Set(xs)].sort((a, b) => a - b);
  for (const x of xTicks) {
    parts.push(`<line x1="${px(x)}" y1="${top}" x2="${px(x)}" y2="${H - bottom}" stroke="#eee"/>`);
    parts.push(`<text x="${px(x)}" y="${H - bottom + 16}" text-anchor="middle">${esc(fx(x))}</text>`);
  }
  for (let i = 0; i <= 5; i++) {
    const y = y0 + ((y1 - y0) * i) / 5;
    parts.push(`<line x1="${left}" y1="${py(y)}" x2="${W - right}" y2="${py(y)}" stroke="#eee"/>`);
    parts.push(`<text x="${left - 6}" y="${py(y) + 4}" text-anchor="end">${esc(fy(y))}</text>`);
  }
  parts.push(`<rect x="${left}" y="${top}" width="${W - left - right}" height="${H - top - bottom}" fill="none" stroke="#444"/>`);
  parts.push(`<text x="${(left + W - right) / 2}" y="${H - 18}" text-anchor="middle">${esc(options.xLabel)}</text>`);
  parts.push(`<text transform="translate(18 ${(top + H - bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(options.yLabel)}</text>`);
  options.series.forEach((s, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = s.points.map(([x, y]) => `${px(x).toFixed(1)},${py(y).toFixed(1)}`).join(' ');
    parts.push(`<polyline points="${pts}" fill="none" stroke="${c}" stroke-width="2"/>`);
    for (const [x, y] of s.points) parts.push(`<circle cx="${px(x).toFixed(1)}" cy="${py(y).toFixed(1)}" r="3" fill="${c}"/>`);
    parts.push(`<line x1="${W - right + 12}" y1="${top + 12 + i * 20}" x2="${W - right + 32}" y2="${top + 12 + i * 20}" stroke="${c}" stroke-width="2"/>`);
    parts.push(`<text x="${W - right + 38}" y="${top + 16 + i * 20}">${esc(s.name)}</text>`);
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
