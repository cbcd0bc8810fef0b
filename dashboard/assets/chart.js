// A small SVG line chart: lines with a shaded band (mean ± 95% CI across seeds).
// Hand-written instead of a vendored charting library: it is a few kilobytes, needs
// no build step, and draws only what the dashboard needs. Every label is set with
// textContent, never parsed as markup.
'use strict';

(function () {
  const NS = 'http://www.w3.org/2000/svg';
  const COLORS = ['#2f6fdf', '#d1495b', '#00916e', '#edae49', '#7b4fc9', '#3d9ec9', '#8a6d3b', '#c95f9e'];

  function el(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  function niceTicks(lo, hi, count) {
    if (!(hi > lo)) { hi = lo + 1; }
    const raw = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 5, 10].map(m => m * mag).find(s => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
    return ticks;
  }

  function fmt(value) {
    const a = Math.abs(value);
    if (a !== 0 && (a < 1e-3 || a >= 1e5)) return value.toExponential(1);
    return String(+value.toPrecision(4));
  }

  // series: [{name, points: [{x, y, lo, hi}]}]; returns the <svg> (its data-points
  // attribute counts the points drawn).
  function lineChart(series, options) {
    const width = options.width || 560, height = options.height || 300;
    const pad = { left: 56, right: 12, top: 24, bottom: 34 };
    const svg = el('svg', { class: 'chart', width, height, viewBox: `0 0 ${width} ${height}` });
    let xs = [], ys = [], drawn = 0;
    for (const s of series) for (const p of s.points) {
      if (!Number.isFinite(p.y)) continue;
      xs.push(p.x); ys.push(p.y);
      if (Number.isFinite(p.lo)) ys.push(p.lo);
      if (Number.isFinite(p.hi)) ys.push(p.hi);
    }
    svg.appendChild(el('text', { x: pad.left, y: 15 }, options.title || ''));
    if (xs.length === 0) {
      svg.appendChild(el('text', { x: width / 2 - 40, y: height / 2 }, 'no points yet'));
      svg.setAttribute('data-points', '0');
      return svg;
    }
    let [x0, x1] = [Math.min(...xs), Math.max(...xs)];
    let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
    if (x1 === x0) x1 = x0 + 1;
    if (y1 === y0) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
    const sx = x => pad.left + (x - x0) / (x1 - x0) * (width - pad.left - pad.right);
    const sy = y => height - pad.bottom - (y - y0) / (y1 - y0) * (height - pad.top - pad.bottom);
    for (const t of niceTicks(y0, y1, 5)) {
      svg.appendChild(el('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: sy(t), y2: sy(t) }));
      svg.appendChild(el('text', { x: 4, y: sy(t) + 4 }, fmt(t)));
    }
    for (const t of niceTicks(x0, x1, 6)) {
      svg.appendChild(el('text', { x: sx(t) - 6, y: height - pad.bottom + 16 }, fmt(t)));
    }
    svg.appendChild(el('line', { class: 'axis', x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom }));
    svg.appendChild(el('line', { class: 'axis', x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom }));
    svg.appendChild(el('text', { x: width - pad.right - 40, y: height - 4 }, options.xLabel || 'step'));
    series.forEach((s, i) => {
      const color = COLORS[i % COLORS.length];
      const pts = s.points.filter(p => Number.isFinite(p.y));
      const band = pts.filter(p => Number.isFinite(p.lo) && Number.isFinite(p.hi));
      if (band.length > 1) {
        const upper = band.map(p => `${sx(p.x)},${sy(p.hi)}`);
        const lower = band.slice().reverse().map(p => `${sx(p.x)},${sy(p.lo)}`);
        svg.appendChild(el('polygon', { points: upper.concat(lower).join(' '), fill: color, 'fill-opacity': 0.15, stroke: 'none' }));
      }
      if (pts.length > 1) {
        svg.appendChild(el('polyline', { points: pts.map(p => `${sx(p.x)},${sy(p.y)}`).join(' '), fill: 'none', stroke: color, 'stroke-width': 1.8 }));
      } else if (pts.length === 1) {
        svg.appendChild(el('circle', { cx: sx(pts[0].x), cy: sy(pts[0].y), r: 3, fill: color }));
      }
      drawn += pts.length;
      const legend = el('text', { x: pad.left + 8 + (i % 3) * 150, y: pad.top + 12 + Math.floor(i / 3) * 14 }, s.name);
      legend.setAttribute('fill', color);
      legend.style.fill = color;
      svg.appendChild(legend);
    });
    svg.setAttribute('data-points', String(drawn));
    return svg;
  }

  window.ExpChart = { lineChart };
})();
