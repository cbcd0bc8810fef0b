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

// Mean ± 95% CI across seeds, step by step: [{x, y, lo, hi, n}].
function meanCurve(seriesList) {
  const longest = Math.max(0, ...seriesList.map(s => s.length));
  const points = [];
  for (let step = 0; step < longest; step++) {
    const values = seriesList.map(s => s[step]).filter(v => typeof v === 'number' && Number.isFinite(v));
    if (values.length === 0) continue;
    const n = values.length;
    const mean = values.reduce((a, b) => a + b, 0) / n;
    let lo = NaN, hi = NaN;
    if (n > 1) {
      const sd = Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
      const half = tQuantile(n - 1) * sd / Math.sqrt(n);
      lo = mean - half; hi = mean + half;
    }
    points.push({ x: step, y: mean, lo, hi, n });
  }
  return points;
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

function jobsTable(jobs, sort, onSort) {
  const metricNames = [...new Set(jobs.flatMap(j => Object.keys(j.metrics)))].sort();
  const columns = [
    ['job', j => j.job_id], ['method', j => j.method], ['seed', j => j.seed],
    ['sweep point', j => j.sweep_point && Object.keys(j.sweep_point).length ? JSON.stringify(j.sweep_point) : ''],
    ['state', j => j.state], ['attempt', j => j.attempt], ['worker', j => j.worker],
    ...metricNames.map(m => [m, j => j.metrics[m]]),
    ['duration s', j => j.duration_s],
  ];
  const [key, dir] = sort;
  const column = columns.find(c => c[0] === key) || columns[0];
  const sorted = jobs.slice().sort((a, b) => {
    const x = column[1](a), y = column[1](b);
    const order = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x ?? '').localeCompare(String(y ?? ''), undefined, { numeric: true });
    return dir === 'asc' ? order : -order;
  });
  return h('table', { id: 'jobs', 'data-rows': sorted.length },
    h('thead', null, h('tr', null, columns.map(([name]) => h('th', {
      class: 'sortable' + (name === column[0] ? ' sorted-' + dir : ''),
      onclick: () => onSort(name),
    }, name)))),
    h('tbody', null, sorted.map(j => h('tr', { 'data-job': j.job_id },
      columns.map(([name, get], i) => {
        const value = get(j);
        if (i === 0) return h('td', null, h('a', { href: '#/job/' + encodeURIComponent(j.job_id) }, value));
        if (name === 'state') return h('td', { class: 'state-' + value }, value, j.error ? h('div', { class: 'muted' }, j.error) : null);
        return h('td', { class: typeof value === 'number' ? 'num' : null }, typeof value === 'number' ? fmt(value) : value);
    })))));
}

function stagePage(stage) {
  let jobs = [];
  let sort = ['job', 'asc'];
  let metric = null;
  const series = new Map(); // job id → {variant, values: []}
  const head = h('h1', null, `stage ${stage}`);
  const summary = h('p', { class: 'muted', id: 'stage-summary' });
  const picker = h('select', { id: 'metric', onchange: () => { metric = picker.value; loadSeries(); } });
  const chartBox = h('div', { class: 'charts', id: 'curves' });
  const tableBox = h('div');
  view.replaceChildren(head, summary,
    h('section', null, h('h2', null, 'Learning curves (mean ± 95% CI across seeds) '), picker, chartBox),
    h('section', null, h('h2', null, 'Jobs'), tableBox));

  const drawTable = () => {
    tableBox.replaceChildren(jobsTable(jobs, sort, name => {
      sort = [name, sort[0] === name && sort[1] === 'asc' ? 'desc' : 'asc'];
      drawTable();
    }));
    // When the table is on the page (expcluster-bench dashboard reads it).
    performance.mark('expcluster:jobs-table');
  };
  const drawChart = throttle(() => {
    const byVariant = new Map();
    for (const s of series.values()) {
      if (!byVariant.has(s.variant)) byVariant.set(s.variant, []);
      byVariant.get(s.variant).push(s.values);
    }
    const lines = [...byVariant.entries()].sort().map(([variant, list]) => ({ name: `${variant} (${list.length} seeds)`, points: meanCurve(list) }));
    chartBox.replaceChildren(window.ExpChart.lineChart(lines, { title: metric || '', xLabel: 'step' }));
  }, 300);
  const loadJobs = throttle(async () => {
    const answer = await getJson(`/api/stages/${encodeURIComponent(stage)}/jobs`);
    jobs = answer.jobs;
    const count = s => jobs.filter(j => j.state === s).length;
    summary.textContent = `${jobs.length} jobs: ${count('succeeded')} succeeded, ${count('running')} running, ${count('queued')} queued, ${count('failed')} failed`;
    const names = [...new Set(jobs.flatMap(j => Object.keys(j.metrics)))].sort();
    if (names.length && (metric === null || !names.includes(metric))) {
      metric = names[0];
      loadSeries();
    }
    if (picker.options.length !== names.length) {
      picker.replaceChildren(...names.map(n => h('option', { value: n }, n)));
      if (metric) picker.value = metric;
    }
    drawTable();
  }, 1000);
  async function loadSeries() {
    if (!metric) return;
    connect(`?stage=${encodeURIComponent(stage)}&metric=${encodeURIComponent(metric)}`);
    const answer = await getJson(`/api/stages/${encodeURIComponent(stage)}/series?metric=${encodeURIComponent(metric)}`);
    series.clear();
    for (const job of answer.jobs) series.set(job.job_id, { variant: job.variant, attempt: job.attempt, values: job.values || [] });
    drawChart();
  }
  current = {
    refresh() { loadJobs(); loadSeries(); },
    onUpdate(update) {
      let grew = false;
      for (const [job, attempt, name, step, value] of update.metrics) {
        if (name !== metric) continue;
        let s = series.get(job);
        if (!s || s.attempt !== attempt) {
          const variant = (jobs.find(j => j.job_id === job) || {}).method || job.split('.')[1] || job;
          s = { variant, attempt, values: [] };
          series.set(job, s);
        }
        if (s.values[step] === undefined || s.values[step] === null) { s.values[step] = value; grew = true; }
      }
      if (grew) drawChart();
      if (update.leased || update.events.length || update.metrics.length) loadJobs();
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
    chartBox.replaceChildren(...Object.entries(series).map(([name, values]) =>
      window.ExpChart.lineChart([{ name, points: values.map((y, x) => ({ x, y })).filter(p => typeof p.y === 'number') }], { title: name, width: 420, height: 240 })));
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
    series = answer.series;
    drawCharts();
    await Promise.all(['stdout', 'stderr'].map(loadLog));
  }
  current = {
    refresh: load,
    onUpdate(update) {
      for (const [id, att, name, step, value] of update.metrics) {
        if (id !== job || att !== attempt) continue;
        (series[name] = series[name] || [])[step] ??= value;
        drawCharts();
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
route();
