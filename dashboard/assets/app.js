// The dashboard page: loads a snapshot over JSON, then follows the coordinator's live
// feed over Server-Sent Events (/api/events). The DOM is built with createElement and
// textContent only: no string from the workspace or a job is ever parsed as HTML.
'use strict';

const view = document.getElementById('view');
const liveBadge = document.getElementById('live');
let source = null;          // the EventSource of the current page
let current = null;         // the current page: {refresh(), onUpdate(update)}
let messages = 0;           // live messages received (shown, and read by tests)

function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function getJson(url) {
  const response = await fetch(url, { credentials: 'same-origin' });
  if (response.status === 401 || response.status === 403) { location.href = '/login'; throw new Error('not logged in'); }
  if (!response.ok) throw new Error(`${url}: ${response.status} ${await response.text()}`);
  return response.json();
}

function fmt(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value !== 'number') return String(value);
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e6)) return value.toExponential(3);
  return String(+value.toPrecision(5));
}

function fmtP(value) {
  if (value === null || value === undefined || typeof value !== 'number') return value === undefined ? '–' : String(value);
  return value < 1e-4 ? value.toExponential(1) : value.toFixed(4);
}

// Two-sided 97.5% quantiles of Student's t for 1..30 degrees of freedom.
const T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
  2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042];
function tQuantile(df) { return df <= 30 ? T975[df - 1] : 1.96 + 2.4 / df; }

// A series as the page keeps it: a Map of step → value (the first value of a step is
// kept, as the coordinator keeps it). A page left open keeps at most MAX_KEPT points
// of a series: past that, the steps are cut into MAX_KEPT / 2 buckets of equal
// width and the last point of each is kept, so old and new steps stay as dense.
const MAX_KEPT = 4000;
function addPoints(series, steps, values) {
  let grew = false;
  for (let i = 0; i < steps.length; i++) {
    if (!series.has(steps[i])) { series.set(steps[i], values[i]); grew = true; }
  }
  if (series.size > MAX_KEPT) {
    let maxStep = 0;
    for (const step of series.keys()) if (step > maxStep) maxStep = step;
    const width = Math.ceil((maxStep + 1) / (MAX_KEPT / 2));
    const last = new Map();
    for (const [step, value] of series) {
      const b = Math.floor(step / width);
      const seen = last.get(b);
      if (!seen || step > seen[0]) last.set(b, [step, value]);
    }
    series.clear();
    for (const [, [step, value]] of [...last.entries()].sort((a, b) => a[0] - b[0])) series.set(step, value);
  }
  return grew;
}

// Mean ± 95% CI across seeds: [{x, y, lo, hi, n}]. Steps are gathered into at most
// `bins` buckets of equal width (one step each while the runs are short); in each,
// a seed counts with its value at its last step there, so seeds whose sampled steps
// differ still meet, and drawing costs the bins, not the steps.
function meanCurve(seriesList, bins) {
  let maxStep = 0;
  for (const s of seriesList) for (const step of s.keys()) if (step > maxStep) maxStep = step;
  const width = Math.max(1, Math.ceil((maxStep + 1) / (bins || 400)));
  const buckets = new Map();
  for (const s of seriesList) {
    const last = new Map();
    for (const [step, value] of s) {
      if (typeof value !== 'number' || !Number.isFinite(value)) continue;
      const b = Math.floor(step / width);
      const seen = last.get(b);
      if (!seen || step > seen[0]) last.set(b, [step, value]);
    }
    for (const [b, [step, value]] of last) {
      let bucket = buckets.get(b);
      if (!bucket) { bucket = { x: step, values: [] }; buckets.set(b, bucket); }
      bucket.values.push(value);
      if (step > bucket.x) bucket.x = step;
    }
  }
  return [...buckets.keys()].sort((a, b) => a - b).map(b => {
    const { x, values } = buckets.get(b);
    const n = values.length;
    const mean = values.reduce((a, v) => a + v, 0) / n;
    let lo = NaN, hi = NaN;
    if (n > 1) {
      const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1));
      const half = tQuantile(n - 1) * sd / Math.sqrt(n);
      lo = mean - half; hi = mean + half;
    }
    return { x, y: mean, lo, hi, n };
  });
}

// At most one call of `fn` per `wait` ms, the last one always made.
function throttle(fn, wait) {
  let timer = null, pending = false;
  return function () {
    pending = true;
    if (timer) return;
    timer = setTimeout(function run() {
      timer = null;
      if (!pending) return;
      pending = false;
      fn();
      timer = setTimeout(run, wait);
    }, 0);
  };
}

function connect(query) {
  if (source) source.close();
  source = new EventSource('/api/events' + query);
  const page = current;
  source.addEventListener('open', () => { liveBadge.textContent = 'live'; liveBadge.className = 'on'; });
  source.addEventListener('update', event => {
    messages++;
    document.body.dataset.liveMessages = String(messages);
    liveBadge.textContent = `live · ${messages} updates`;
    if (page === current) page.onUpdate(JSON.parse(event.data));
  });
  source.addEventListener('resync', () => { if (page === current) page.refresh(); });
  source.onerror = () => { liveBadge.textContent = 'reconnecting…'; liveBadge.className = ''; };
}

// ---------------------------------------------------------------- overview

function stageRow(stage) {
  const jobs = stage.jobs;
  const done = jobs.succeeded + jobs.failed + jobs.cancelled;
  const status = !stage.submitted ? 'not submitted' : stage.finished ? 'finished' : 'running';
  return h('tr', { 'data-stage': stage.stage },
    h('td', null, stage.submitted ? h('a', { href: '#/stage/' + encodeURIComponent(stage.stage) }, stage.stage) : stage.stage),
    h('td', null, status),
    h('td', null, h('progress', { max: Math.max(jobs.total, 1), value: done }), ` ${done}/${jobs.total}`),
    h('td', { class: 'num' }, jobs.running), h('td', { class: 'num' }, jobs.queued),
    h('td', { class: 'num' }, jobs.failed), h('td', { class: 'num' }, stage.submitted ? 'v' + stage.idea_version : '–'));
}

function workersTable(workers) {
  return h('table', { id: 'workers' },
    h('thead', null, h('tr', null, ['worker', 'host', 'slots', 'busy', 'GPUs', 'last seen', 'jobs'].map(t => h('th', null, t)))),
    h('tbody', null, workers.map(w => h('tr', null,
      h('td', null, w.worker_id), h('td', null, w.hostname), h('td', { class: 'num' }, w.slots),
      h('td', { class: 'num' }, w.busy), h('td', null, w.gpus.length ? w.gpus.join(', ') : 'CPU'),
      h('td', { class: 'num' }, w.last_seen_s.toFixed(1) + ' s'),
      h('td', null, w.jobs.map(j => h('a', { href: '#/job/' + encodeURIComponent(j) }, j + ' ')))))));
}

function evidenceRows(verdict) {
  const list = Array.isArray(verdict.evidence) ? verdict.evidence : [verdict.evidence || {}];
  return list.map(e => {
    const ci = e.interval && typeof e.interval === 'object' ? [e.interval.low, e.interval.high]
      : (Array.isArray(e.mean_diff_ci95) ? e.mean_diff_ci95 : [e.mean_diff_ci95 && e.mean_diff_ci95.low, e.mean_diff_ci95 && e.mean_diff_ci95.high]);
    return h('tr', { class: 'claim' },
      h('td', null, verdict.claim), h('td', null, verdict.stage),
      h('td', { class: 'verdict verdict-' + verdict.status }, verdict.status),
      h('td', { class: 'num' }, fmt(e.mean_diff)),
      h('td', { class: 'num' }, `[${fmt(ci[0])}, ${fmt(ci[1])}]`),
      h('td', { class: 'num' }, fmtP(e.p_value)), h('td', { class: 'num' }, fmtP(e.p_holm)),
      h('td', null, e.test || '–'), h('td', { class: 'muted' }, verdict.statement || ''));
  });
}

function claimsTable(verdicts) {
  if (verdicts.length === 0) return h('p', { class: 'muted' }, 'No claim evaluated yet: verdicts appear when a stage ends.');
  return h('table', { id: 'claims' },
    h('thead', null, h('tr', null, ['claim', 'stage', 'verdict', 'effect', 'CI', 'p', 'Holm p', 'test', 'statement'].map(t => h('th', null, t)))),
    h('tbody', null, verdicts.slice().reverse().flatMap(evidenceRows)));
}

function ideaSection(idea) {
  const info = idea.idea_json || {};
  return [
    h('p', null, `version ${info.version ?? '–'}, last updated ${info.last_updated ?? '–'}: `, h('span', { class: 'muted' }, info.update_reason ?? '')),
    h('table', { id: 'idea-versions' },
      h('thead', null, h('tr', null, ['version', 'time', 'source', 'reason'].map(t => h('th', null, t)))),
      h('tbody', null, idea.updates.map(u => h('tr', null,
        h('td', null, `${u.from_version} → ${u.to_version}`), h('td', null, u.time), h('td', null, u.source), h('td', null, u.reason))))),
    h('h2', null, 'idea.md'), h('pre', { class: 'doc', id: 'idea-md' }, idea.idea_md),
    h('h2', null, 'idea_evolution.md'), h('pre', { class: 'doc', id: 'evolution-md' }, idea.evolution_md),
  ];
}

function overviewPage() {
  const stagesBody = h('tbody');
  const workersBox = h('div');
  const claimsBox = h('div');
  const ideaBox = h('div');
  view.replaceChildren(
    h('section', null, h('h2', null, 'Stages'), h('table', { id: 'stages' },
      h('thead', null, h('tr', null, ['stage', 'status', 'progress', 'running', 'queued', 'failed', 'idea'].map(t => h('th', null, t)))), stagesBody)),
    h('section', null, h('h2', null, 'Claims'), claimsBox),
    h('section', null, h('h2', null, 'Workers'), workersBox),
    h('section', null, h('h2', null, 'Idea'), ideaBox));
  const refreshOverview = throttle(async () => {
    const overview = await getJson('/api/overview');
    document.getElementById('idea').textContent = `${overview.idea} · idea v${overview.idea_version}`;
    stagesBody.replaceChildren(...overview.stages.filter(s => s.defined || s.submitted).map(stageRow));
    workersBox.replaceChildren(workersTable(overview.workers));
    performance.mark('expcluster:overview');
  }, 500);
  const refreshRecord = throttle(async () => {
    const [claims, idea] = await Promise.all([getJson('/api/claims'), getJson('/api/idea')]);
    claimsBox.replaceChildren(claimsTable(claims.verdicts));
    ideaBox.replaceChildren(...ideaSection(idea));
  }, 1000);
  current = {
    refresh() { refreshOverview(); refreshRecord(); },
    onUpdate(update) {
      if (update.leased || update.events.length) refreshOverview();
      if (update.events.some(e => e.type === 'hypothesis_evaluated' || e.type === 'idea_updated' || e.type === 'experiment_completed')) refreshRecord();
    },
  };
  connect('?metric=-');
  current.refresh();
}

// ---------------------------------------------------------------- a stage

// The jobs table, virtualized: the answer of /api/stages/S/jobs is kept as it came
// (one array per job), sorted in memory, and only the rows in view (plus a margin)
// are in the DOM, between two spacer rows that give the scroll bar its full length.
// 10,000 jobs are then a hundred rows of DOM, whatever the sort.
const ROW_MARGIN = 40;
const COL = { job: 0, method: 1, seed: 2, sweep: 3, state: 4, attempt: 5, worker: 6, error: 7, duration: 8, metrics: 9 };
const collator = new Intl.Collator(undefined, { numeric: true });

function jobsTable() {
  let rows = [], metricNames = [], sorted = [], sort = ['job', 'asc'];
  let rowHeight = 0, drawn = null, frame = 0;
  const head = h('thead');
  const body = h('tbody');
  const table = h('table', { id: 'jobs', 'data-rows': 0 }, head, body);
  const box = h('div', { class: 'table-scroll', onscroll: () => { if (!frame) frame = requestAnimationFrame(() => { frame = 0; draw(false); }); } }, table);
  const columns = () => [
    ['job', r => r[COL.job]], ['method', r => r[COL.method]], ['seed', r => r[COL.seed]],
    ['sweep point', r => r[COL.sweep]], ['state', r => r[COL.state]], ['attempt', r => r[COL.attempt]],
    ['worker', r => r[COL.worker]],
    ...metricNames.map((m, i) => [m, r => r[COL.metrics][i]]),
    ['duration s', r => r[COL.duration]],
  ];
  function resort() {
    const [key, dir] = sort;
    const cols = columns();
    const get = (cols.find(c => c[0] === key) || cols[0])[1];
    const sign = dir === 'asc' ? 1 : -1;
    sorted = rows.slice().sort((a, b) => {
      const x = get(a), y = get(b);
      if (typeof x === 'number' && typeof y === 'number') return sign * (x - y);
      if (x === null || x === undefined) return (y === null || y === undefined) ? 0 : 1;
      if (y === null || y === undefined) return -1;
      return sign * collator.compare(String(x), String(y));
    });
  }
  function drawHead() {
    head.replaceChildren(h('tr', null, columns().map(([name]) => h('th', {
      class: 'sortable' + (name === sort[0] ? ' sorted-' + sort[1] : ''),
      onclick: () => { sort = [name, sort[0] === name && sort[1] === 'asc' ? 'desc' : 'asc']; resort(); drawHead(); draw(true); },
    }, name))));
  }
  function rowOf(r, cols) {
    return h('tr', { 'data-job': r[COL.job] }, cols.map(([name, get], i) => {
      const value = get(r);
      if (i === 0) return h('td', null, h('a', { href: '#/job/' + encodeURIComponent(value) }, value));
      if (name === 'state') {
        const error = r[COL.error];
        return h('td', { class: 'state-' + value, title: error || null }, value, error ? h('span', { class: 'muted' }, ' ' + error) : null);
      }
      return h('td', { class: typeof value === 'number' ? 'num' : null }, typeof value === 'number' ? fmt(value) : value);
    }));
  }
  function spacer(rowsHidden, span) {
    const cell = h('td', { colspan: span });
    // Through the CSSOM: the Content-Security-Policy refuses style attributes.
    cell.style.height = `${rowsHidden * (rowHeight || 27)}px`;
    return h('tr', { class: 'spacer', 'aria-hidden': 'true' }, cell);
  }
  // Renders the rows in view; `force` when the data or the order changed.
  function draw(force) {
    const cols = columns();
    if (!rowHeight && sorted.length) {
      body.replaceChildren(rowOf(sorted[0], cols));
      rowHeight = body.firstChild.getBoundingClientRect().height || 27;
    }
    const height = rowHeight || 27;
    const first = Math.max(0, Math.floor(box.scrollTop / height) - ROW_MARGIN);
    const last = Math.min(sorted.length, Math.ceil((box.scrollTop + Math.max(box.clientHeight, window.innerHeight)) / height) + ROW_MARGIN);
    if (!force && drawn && drawn[0] === first && drawn[1] === last) return;
    drawn = [first, last];
    const parts = [];
    if (first > 0) parts.push(spacer(first, cols.length));
    for (let i = first; i < last; i++) parts.push(rowOf(sorted[i], cols));
    if (last < sorted.length) parts.push(spacer(sorted.length - last, cols.length));
    body.replaceChildren(...parts);
    table.dataset.rows = String(sorted.length);
  }
  return {
    box,
    // A new answer of /api/stages/S/jobs.
    set(answer) {
      rows = answer.rows; metricNames = answer.metrics;
      resort(); drawHead(); draw(true);
    },
    rows: () => rows,
    metricNames: () => metricNames,
    // The latest value of a metric of some jobs changed (live points).
    changed: throttle(() => { resort(); draw(true); }, 300),
  };
}

function stagePage(stage) {
  let metric = null;
  const series = new Map(); // job id → {variant, attempt, points: Map step → value}
  const head = h('h1', null, `stage ${stage}`);
  const summary = h('p', { class: 'muted', id: 'stage-summary' });
  const picker = h('select', { id: 'metric', onchange: () => { metric = picker.value; loadSeries(); } });
  const chartBox = h('div', { class: 'charts', id: 'curves' });
  const table = jobsTable();
  view.replaceChildren(head, summary,
    h('section', null, h('h2', null, 'Learning curves (mean ± 95% CI across seeds) '), picker, chartBox),
    h('section', null, h('h2', null, 'Jobs'), table.box));

  const drawChart = throttle(() => {
    const byVariant = new Map();
    for (const s of series.values()) {
      if (!byVariant.has(s.variant)) byVariant.set(s.variant, []);
      byVariant.get(s.variant).push(s.points);
    }
    const lines = [...byVariant.entries()].sort().map(([variant, list]) => ({ name: `${variant} (${list.length} seeds)`, points: meanCurve(list) }));
    chartBox.replaceChildren(window.ExpChart.lineChart(lines, { title: metric || '', xLabel: 'step' }));
  }, 300);
  const loadJobs = throttle(async () => {
    const answer = await getJson(`/api/stages/${encodeURIComponent(stage)}/jobs`);
    const counts = {};
    for (const r of answer.rows) counts[r[COL.state]] = (counts[r[COL.state]] || 0) + 1;
    summary.textContent = `${answer.rows.length} jobs: ${counts.succeeded || 0} succeeded, ${counts.running || 0} running, ${counts.queued || 0} queued, ${counts.failed || 0} failed`;
    const names = answer.metrics;
    if (names.length && (metric === null || !names.includes(metric))) {
      metric = names[0];
      loadSeries();
    }
    if (picker.options.length !== names.length) {
      picker.replaceChildren(...names.map(n => h('option', { value: n }, n)));
      if (metric) picker.value = metric;
    }
    table.set(answer);
    // When the table is on the page (expcluster-bench dashboard reads it).
    performance.mark('expcluster:jobs-table');
  }, 1000);
  // Metrics also change other columns than the followed one: refreshed, but seldom.
  const refreshMetrics = throttle(loadJobs, 5000);
  async function loadSeries() {
    if (!metric) return;
    connect(`?stage=${encodeURIComponent(stage)}&metric=${encodeURIComponent(metric)}`);
    const answer = await getJson(`/api/stages/${encodeURIComponent(stage)}/series?metric=${encodeURIComponent(metric)}`);
    series.clear();
    for (const job of answer.jobs) {
      const points = new Map();
      addPoints(points, job.series.steps, job.series.values);
      series.set(job.job_id, { variant: job.variant, attempt: job.attempt, points });
    }
    drawChart();
  }
  current = {
    refresh() { loadJobs(); loadSeries(); },
    onUpdate(update) {
      let grew = false, latest = false;
      const column = table.metricNames().indexOf(metric);
      const byId = column >= 0 && update.metrics.length ? new Map(table.rows().map(r => [r[COL.job], r])) : null;
      for (const [job, attempt, name, steps, values] of update.metrics) {
        if (name !== metric) continue;
        let s = series.get(job);
        if (!s || s.attempt !== attempt) {
          const row = byId && byId.get(job);
          const variant = (row && row[COL.method]) || job.split('.')[1] || job;
          s = { variant, attempt, points: new Map() };
          series.set(job, s);
        }
        if (addPoints(s.points, steps, values)) grew = true;
        const row = byId && byId.get(job);
        if (row && values.length) { row[COL.metrics][column] = values[values.length - 1]; latest = true; }
      }
      if (grew) drawChart();
      if (latest) table.changed();
      if (update.leased || update.events.length) loadJobs();
      else if (update.metrics.length) refreshMetrics();
    },
  };
  connect(`?stage=${encodeURIComponent(stage)}&metric=-`);
  loadJobs();
}

// ---------------------------------------------------------------- a job

function jobPage(job) {
  const logs = { stdout: { box: h('pre', { id: 'stdout' }), offset: 0 }, stderr: { box: h('pre', { id: 'stderr' }), offset: 0 } };
  const info = h('p', { class: 'muted', id: 'job-info' });
  const chartBox = h('div', { class: 'charts', id: 'job-curves' });
  let series = {};
  let attempt = null;
  view.replaceChildren(h('h1', null, `job ${job}`), info,
    h('section', null, h('h2', null, 'Metrics'), chartBox),
    h('section', null, h('h2', null, 'stdout'), logs.stdout.box),
    h('section', null, h('h2', null, 'stderr'), logs.stderr.box));
  const drawCharts = throttle(() => {
    chartBox.replaceChildren(...Object.entries(series).map(([name, points]) =>
      window.ExpChart.lineChart([{ name, points: meanCurve([points], 1000) }], { title: name, width: 420, height: 240 })));
  }, 300);
  async function loadLog(stream) {
    const log = logs[stream];
    const piece = await getJson(`/api/jobs/${encodeURIComponent(job)}/log?stream=${stream}&offset=${log.offset}`);
    if (piece.text) log.box.append(document.createTextNode(piece.text));
    log.offset = piece.next_offset;
    info.textContent = `attempt ${piece.attempt} · ${piece.state}${piece.error ? ' · ' + piece.error : ''}`;
  }
  async function load() {
    const answer = await getJson(`/api/jobs/${encodeURIComponent(job)}/series`);
    if (attempt !== null && attempt !== answer.attempt) {
      for (const log of Object.values(logs)) { log.box.replaceChildren(); log.offset = 0; }
    }
    attempt = answer.attempt;
    series = {};
    for (const [name, thinned] of Object.entries(answer.series)) {
      series[name] = new Map();
      addPoints(series[name], thinned.steps, thinned.values);
    }
    drawCharts();
    await Promise.all(['stdout', 'stderr'].map(loadLog));
  }
  current = {
    refresh: load,
    onUpdate(update) {
      for (const [id, att, name, steps, values] of update.metrics) {
        if (id !== job || att !== attempt) continue;
        if (addPoints(series[name] = series[name] || new Map(), steps, values)) drawCharts();
      }
      for (const piece of update.logs) {
        const log = logs[piece.stream];
        if (!log || piece.attempt !== attempt) continue;
        if (piece.offset === log.offset) {
          log.box.append(document.createTextNode(piece.text));
          log.offset += new TextEncoder().encode(piece.text).length;
        } else if (piece.offset > log.offset) {
          loadLog(piece.stream);
        }
      }
      if (update.events.some(e => e.job_id === job) || update.leased) load();
    },
  };
  connect(`?job=${encodeURIComponent(job)}`);
  load();
}

// ---------------------------------------------------------------- routing

function route() {
  const hash = location.hash.replace(/^#/, '');
  const [, page, arg] = hash.split('/');
  const name = arg ? decodeURIComponent(arg) : '';
  if (page === 'stage' && name) stagePage(name);
  else if (page === 'job' && name) jobPage(name);
  else overviewPage();
}

window.addEventListener('hashchange', route);
// A page left (a reload, another URL) closes its stream at once: a browser opens at
// most six connections to a host, and streams of pages kept in its back-forward
// cache would otherwise hold them, stalling the next page's requests.
window.addEventListener('pagehide', () => { if (source) { source.close(); source = null; } });
route();
