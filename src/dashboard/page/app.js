// The sage dashboard page: reads the cluster token from the URL fragment
// (#token=...), fetches /api/v1 with it about every second and draws the
// nodes, the jobs and the selected job (graph, diagnosis, processes, output).
// Everything the head sends is put in the page as text (textContent,
// attributes), never as HTML. Elements carry data- attributes (data-node,
// data-job, data-operator, data-parallelism, data-status, data-finding) that
// tests and users' scripts can rely on.
'use strict';

const REFRESH_MS = 1000;
const OUTPUT_LINES_KEPT = 200;
const SVG_NS = 'http://www.w3.org/2000/svg';

const params = new URLSearchParams(location.hash.slice(1));
const token = params.get('token') || '';
const state = {
  job: params.get('job') || '',
  operator: null,        // the operator whose instances are shown (id), or 'all'
  instancesFor: '',      // the job those instances are of
  output: { job: '', next: 0, lines: [] },
  refreshes: 0,
};

// ---- small DOM helpers ------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  setAttrs(node, attrs);
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  setAttrs(node, attrs);
  for (const child of children) node.append(child instanceof Node ? child : String(child));
  return node;
}

function setAttrs(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === 'class') node.setAttribute('class', value);
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
}

function $(id) { return document.getElementById(id); }

function fillBody(table, rows) {
  table.tBodies[0].replaceChildren(...rows);
}

// ---- formatting -------------------------------------------------------------

function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = Number(n) || 0;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${units[unit]}`;
}

function count(n) {
  const value = Number(n) || 0;
  if (value >= 1e9) return (value / 1e9).toFixed(1) + 'G';
  if (value >= 1e6) return (value / 1e6).toFixed(1) + 'M';
  if (value >= 1e4) return (value / 1e3).toFixed(1) + 'k';
  return String(Math.round(value));
}

function rate(n) { return count(n) + '/s'; }

function percent(share) { return Math.round(100 * share) + '%'; }

function time(ms) {
  return ms > 0 ? new Date(ms).toLocaleTimeString() : '–';
}

function duration(from, to) {
  if (!(from > 0)) return '–';
  const seconds = Math.max(0, ((to > 0 ? to : Date.now()) - from) / 1000);
  if (seconds < 60) return seconds.toFixed(1) + ' s';
  if (seconds < 3600) return Math.floor(seconds / 60) + ' min ' + Math.round(seconds % 60) + ' s';
  return (seconds / 3600).toFixed(1) + ' h';
}

function bar(share, kind) {
  const clamped = Math.max(0, Math.min(1, share || 0));
  const inner = el('span', { 'data-share': clamped.toFixed(2) });
  inner.style.width = (100 * clamped) + '%';  // CSSOM, which the page's CSP allows
  return el('span', { class: 'bar ' + (kind || '') }, inner);
}

// ---- fetching ---------------------------------------------------------------

class Refused extends Error {}
class NotFound extends Error {}

async function api(path) {
  const response = await fetch(path, {
    headers: { Authorization: 'Bearer ' + token },
    cache: 'no-store',
  });
  if (response.status === 401) throw new Refused('the head refused the token');
  const body = await response.json();
  if (response.status === 404) throw new NotFound(body.error);
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

function say(text, kind) {
  const status = $('status');
  status.textContent = text;
  status.dataset.status = kind;
}

function problem(text) {
  const box = $('problem');
  box.hidden = !text;
  box.textContent = text || '';
}

// Timings the page keeps on <body> (milliseconds, real time): data-script-ms
// from navigation to this script's start, data-first-render-ms to the first
// refresh drawn in full, data-refresh-ms the last
// refresh (fetches and drawing), data-draw-ms its drawing alone.
async function refresh() {
  const began = performance.now();
  let drawing = 0;
  try {
    const [cluster, jobs] = await Promise.all([api('/api/v1/cluster'), api('/api/v1/jobs?limit=50')]);
    let drawFrom = performance.now();
    drawNodes(cluster.nodes);
    drawJobs(jobs);
    drawing += performance.now() - drawFrom;
    if (!state.job && jobs.jobs.length > 0) {
      const running = jobs.jobs.find((j) => j.state === 'RUNNING');
      select((running || jobs.jobs[0]).id);
      drawSelection();
    }
    if (state.job) {
      const id = encodeURIComponent(state.job);
      const [job, output] = await Promise.all([
        api(`/api/v1/jobs/${id}`),
        api(`/api/v1/jobs/${id}/output?from=${state.output.job === state.job ? state.output.next : 0}`),
      ]);
      drawFrom = performance.now();
      drawJob(job);
      drawOutput(job.id, output);
      drawing += performance.now() - drawFrom;
    }
    problem('');
    state.refreshes++;
    const body = document.body.dataset;
    body.refreshes = state.refreshes;
    body.drawMs = drawing.toFixed(1);
    body.refreshMs = (performance.now() - began).toFixed(1);
    if (!body.firstRenderMs) body.firstRenderMs = performance.now().toFixed(1);
    say('updated ' + new Date().toLocaleTimeString(), 'ok');
  } catch (error) {
    if (error instanceof NotFound && state.job) {
      select('');  // the head forgot the job: show the newest one
      $('job').hidden = true;
      setTimeout(refresh, 0);
      return;
    }
    if (error instanceof Refused) {
      problem('The head refused the token in this URL. Open the URL that `sage dashboard` prints.');
      say('token refused', 'error');
      return;  // no point in asking again
    }
    say('cannot reach the head: ' + error.message, 'error');
  }
  setTimeout(refresh, REFRESH_MS);
}

function select(jobId) {
  if (state.job !== jobId) {
    state.job = jobId;
    state.operator = null;
    $('instances').hidden = true;
    $('instances-hint').textContent = 'click an operator of the graph, or';
  }
  const hash = new URLSearchParams(jobId ? { token, job: jobId } : { token });
  history.replaceState(null, '', '#' + hash.toString());
}

// ---- nodes and jobs ---------------------------------------------------------

function drawNodes(nodes) {
  const alive = nodes.filter((n) => n.alive).length;
  $('summary').textContent = `${alive} of ${nodes.length} nodes alive`;
  fillBody($('nodes'), nodes.map((n) => el('tr', { 'data-node': n.id, 'data-alive': n.alive },
    el('td', {}, n.id),
    el('td', { class: 'mono' }, n.address),
    el('td', {}, el('span', { class: 'state ' + (n.alive ? 'RUNNING' : 'FAILED') }, n.alive ? 'alive' : 'dead')),
    el('td', {}, usage(n.used.cpus, n.total.cpus, (v) => v)),
    el('td', {}, usage(n.used.gpus, n.total.gpus, (v) => v)),
    el('td', {}, usage(n.used.memory_bytes, n.total.memory_bytes, bytes)),
    el('td', {}, n.last_heartbeat_ms > 0 ? duration(n.last_heartbeat_ms, 0) + ' ago' : '–'))));
}

function usage(used, total, format) {
  const share = total > 0 ? used / total : 0;
  return el('span', { class: 'usage' }, bar(share), ` ${format(used)} / ${format(total)}`);
}

function drawJobs(page) {
  $('jobs-total').textContent = page.total > page.jobs.length
    ? `(newest ${page.jobs.length} of ${page.total})` : `(${page.total})`;
  fillBody($('jobs'), page.jobs.map((j) => el('tr', {
    'data-job': j.id, 'data-state': j.state,
    class: j.id === state.job ? 'selected clickable' : 'clickable',
    onclick: () => { select(j.id); drawSelection(); },
  },
  el('td', { class: 'mono' }, j.id),
  el('td', {}, j.name),
  el('td', {}, el('span', { class: 'state ' + j.state }, j.state)),
  el('td', {}, j.instance_count),
  el('td', {}, time(j.submitted_at_ms)),
  el('td', {}, duration(j.started_at_ms, j.finished_at_ms)),
  el('td', {}, j.restarts))));
}

function drawSelection() {
  for (const row of $('jobs').tBodies[0].rows) {
    row.classList.toggle('selected', row.dataset.job === state.job);
  }
}

// ---- one job ----------------------------------------------------------------

function drawJob(job) {
  $('job').hidden = false;
  $('job').dataset.job = job.id;
  $('job-title').textContent = `${job.name} (${job.id})`;
  const badge = $('job-state');
  badge.textContent = job.state;
  badge.className = 'state ' + job.state;
  const facts = [
    ['submitted', time(job.submitted_at_ms)],
    ['running for', duration(job.started_at_ms, job.finished_at_ms)],
    ['instances', job.instance_count],
    ['nodes', job.nodes.join(', ') || '–'],
  ];
  if (job.pending_reason) facts.push(['waiting', job.pending_reason]);
  $('job-facts').replaceChildren(...facts.map(([k, v]) => el('span', {}, el('b', {}, k + ' '), v)));
  drawFindings(job.diagnosis);
  drawGraph(job);
  drawHealth(job);
  drawProcesses(job.processes);
  if (state.operator !== null && state.instancesFor === job.id) {
    $('instances-hint').textContent = state.operator === 'all'
      ? 'all operators' : `operator ${operatorName(job, state.operator)}`;
  }
}

function operatorName(job, id) {
  const found = job.operators.find((o) => o.id === id);
  return found ? found.name : String(id);
}

function drawFindings(findings) {
  $('findings').replaceChildren(...findings.map((f) => el('li', {
    class: 'finding ' + f.kind, 'data-finding': f.kind,
    'data-operator': f.operator || null, 'data-process': f.process >= 0 ? f.process : null,
  }, el('b', {}, f.kind), ' ', f.message)));
}

function drawHealth(job) {
  const c = job.checkpoints;
  const rows = [];
  rows.push(['checkpoints', c.last_id > 0
    ? `${c.completed} completed, ${c.failed} failed; last #${c.last_id} ${duration(c.last_completed_at_ms, 0)} ago, ` +
      `${c.last_duration_ms} ms, ${bytes(c.last_bytes)}`
    : (c.failed > 0 ? `none completed, ${c.failed} failed` : 'none')]);
  if (c.last_failure) rows.push(['last failed checkpoint', c.last_failure]);
  rows.push(['restarts', String(job.restarts)]);
  for (const cause of job.restart_causes) rows.push(['restarted after', cause]);
  const errors = job.operators.filter((o) => o.errors > 0);
  rows.push(['operator errors', errors.length === 0 ? 'none'
    : errors.map((o) => `${o.name}: ${o.errors}`).join(', ')]);
  if (job.error) rows.push(['error', job.error]);
  $('health').replaceChildren(...rows.flatMap(([k, v]) => [
    el('dt', {}, k), el('dd', { class: k === 'error' ? 'error' : null, 'data-health': k }, v)]));
}

function drawProcesses(processes) {
  fillBody($('processes'), processes.map((p) => {
    const share = p.memory_limit_bytes > 0 ? p.resident_bytes / p.memory_limit_bytes : 0;
    return el('tr', { 'data-process': p.index, class: share >= 0.9 ? 'warn' : null },
      el('td', {}, p.index),
      el('td', {}, p.node),
      el('td', {}, p.pid),
      el('td', {}, p.memory_limit_bytes > 0
        ? el('span', { class: 'usage' }, bar(share, share >= 0.9 ? 'hot' : ''), ` ${bytes(p.resident_bytes)} / ${bytes(p.memory_limit_bytes)}`)
        : `${bytes(p.resident_bytes)} (no limit declared)`),
      el('td', {}, p.instance_count));
  }));
}

// ---- the graph --------------------------------------------------------------

const BOX_W = 190;
const BOX_H = 84;
const GAP_X = 90;
const GAP_Y = 26;

// Columns by longest path from a source; rows in program order.
function layout(job) {
  const column = new Map(job.operators.map((o) => [o.id, 0]));
  for (let pass = 0; pass < job.operators.length; pass++) {
    let moved = false;
    for (const e of job.edges) {
      if (!column.has(e.from) || !column.has(e.to)) continue;
      if (column.get(e.to) < column.get(e.from) + 1) {
        column.set(e.to, column.get(e.from) + 1);
        moved = true;
      }
    }
    if (!moved) break;
  }
  const rows = new Map();
  const place = new Map();
  for (const o of job.operators) {
    const c = column.get(o.id);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    place.set(o.id, { x: 20 + c * (BOX_W + GAP_X), y: 20 + r * (BOX_H + GAP_Y) });
  }
  const columns = Math.max(1, ...[...column.values()].map((c) => c + 1));
  const height = Math.max(1, ...rows.values());
  return { place, width: 40 + columns * BOX_W + (columns - 1) * GAP_X, height: 40 + height * BOX_H + (height - 1) * GAP_Y };
}

// Busy: white to amber; backpressured: to slate; the bottleneck keeps its
// colour and gets a red border.
function fill(busy, backpressure) {
  if (backpressure >= 0.5) return `hsl(215, 20%, ${Math.round(75 - 40 * backpressure)}%)`;
  return `hsl(${Math.round(45 - 40 * busy)}, ${Math.round(30 + 60 * busy)}%, ${Math.round(96 - 36 * busy)}%)`;
}

function drawGraph(job) {
  const graph = $('graph');
  const { place, width, height } = layout(job);
  graph.setAttribute('viewBox', `0 0 ${width} ${height}`);
  graph.setAttribute('width', width);
  graph.setAttribute('height', height);
  const kinds = new Map();
  for (const f of job.diagnosis) {
    if (f.operator_id >= 0) kinds.set(f.operator_id, [...(kinds.get(f.operator_id) || []), f.kind]);
  }
  const byId = new Map(job.operators.map((o) => [o.id, o]));
  const incoming = new Map();
  for (const e of job.edges) incoming.set(e.to, (incoming.get(e.to) || 0) + 1);

  const defs = svg('defs', {}, svg('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse',
  }, svg('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrow' })));
  const edges = job.edges.filter((e) => place.has(e.from) && place.has(e.to)).map((e) => {
    const a = place.get(e.from);
    const b = place.get(e.to);
    const x1 = a.x + BOX_W;
    const y1 = a.y + BOX_H / 2;
    const x2 = b.x;
    const y2 = b.y + BOX_H / 2;
    const mid = (x1 + x2) / 2;
    const to = byId.get(e.to);
    const from = byId.get(e.from);
    const perSecond = incoming.get(e.to) === 1 ? to.records_in_per_second : from.records_out_per_second;
    return svg('g', { class: 'edge' + (e.chained ? ' chained' : ''), 'data-edge': `${e.from}-${e.to}`, 'data-partitioning': e.partitioning },
      svg('path', { d: `M ${x1} ${y1} C ${mid} ${y1}, ${mid} ${y2}, ${x2} ${y2}`, 'marker-end': 'url(#arrow)' }),
      svg('text', { x: mid, y: (y1 + y2) / 2 - 6, 'text-anchor': 'middle', class: 'rate' }, rate(perSecond)),
      svg('text', { x: mid, y: (y1 + y2) / 2 + 12, 'text-anchor': 'middle', class: 'partitioning' },
        e.chained ? 'chained' : e.partitioning));
  });
  const boxes = job.operators.map((o) => {
    const { x, y } = place.get(o.id);
    const busy = job.state === 'RUNNING' ? o.busy : 0;
    const backpressure = o.backpressure;
    const found = kinds.get(o.id) || [];
    const status = found.includes('bottleneck') ? 'bottleneck'
      : backpressure >= 0.5 ? 'backpressured' : busy >= 0.5 ? 'busy' : 'idle';
    const selected = state.operator === o.id;
    return svg('g', {
      class: `operator ${status}${selected ? ' selected' : ''}`,
      'data-operator': o.name, 'data-operator-id': o.id, 'data-parallelism': o.parallelism,
      'data-status': status, 'data-findings': found.join(' ') || null,
      'data-busy': busy.toFixed(2), 'data-backpressure': backpressure.toFixed(2),
      transform: `translate(${x} ${y})`,
      onclick: () => showInstances(o.id),
    },
    svg('title', {}, `${o.name}: ${o.parallelism} instances (${o.running_instances} running) on ${o.nodes.join(', ') || '–'}`),
    svg('rect', { width: BOX_W, height: BOX_H, rx: 8, fill: fill(busy, backpressure) }),
    svg('text', { x: 10, y: 20, class: 'name' }, clip(o.name, 20)),
    svg('text', { x: BOX_W - 10, y: 20, 'text-anchor': 'end', class: 'parallelism' }, '×' + o.parallelism),
    svg('text', { x: 10, y: 40, class: 'figure' }, `in ${rate(o.records_in_per_second)}  out ${rate(o.records_out_per_second)}`),
    svg('text', { x: 10, y: 58, class: 'figure' }, `busy ${percent(busy)}  backpressure ${percent(backpressure)}`),
    svg('text', { x: 10, y: 75, class: 'tags' }, found.join(' · ') + (o.errors > 0 ? `  errors ${o.errors}` : '')));
  });
  graph.replaceChildren(defs, ...edges, ...boxes);
  $('legend').replaceChildren(
    ...[['idle', fill(0, 0)], ['busy', fill(1, 0)], ['backpressured', fill(0, 0.9)]].map(([name, colour]) =>
      el('span', { class: 'key' }, el('span', { class: 'swatch', 'data-colour': colour }), name)),
    el('span', { class: 'key' }, el('span', { class: 'swatch bottleneck-swatch' }), 'bottleneck'));
  for (const swatch of $('legend').querySelectorAll('[data-colour]')) {
    swatch.style.background = swatch.dataset.colour;  // CSSOM: allowed by the page's CSP
  }
}

function clip(text, length) {
  return text.length <= length ? text : text.slice(0, length - 1) + '…';
}

// ---- instances (fetched on request only) ------------------------------------

async function showInstances(operator) {
  state.operator = operator;
  state.instancesFor = state.job;
  const query = operator === 'all' ? '' : `&operator=${operator}`;
  try {
    const job = await api(`/api/v1/jobs/${encodeURIComponent(state.job)}?instances=1${query}`);
    const table = $('instances');
    table.hidden = false;
    $('instances-hint').textContent = (operator === 'all' ? 'all operators' : `operator ${operatorName(job, operator)}`) +
      ` at ${new Date().toLocaleTimeString()} (click again to update)`;
    fillBody(table, job.instances.map((s) => el('tr', { 'data-instance': `${s.operator}[${s.instance}]` },
      el('td', {}, `${s.operator}[${s.instance}]`),
      el('td', {}, s.node),
      el('td', {}, s.pid),
      el('td', {}, s.running ? 'running' : 'ended'),
      el('td', { class: 'num' }, count(s.records_in)),
      el('td', { class: 'num' }, count(s.records_out)),
      el('td', { class: 'num' }, rate(s.records_in_per_second)),
      el('td', { class: 'num' }, rate(s.records_out_per_second)),
      el('td', { class: 'num' }, percent(s.busy)),
      el('td', { class: 'num' }, percent(s.backpressure)),
      el('td', { class: 'num' }, s.queue_capacity_batches > 0 ? `${s.queue_batches}/${s.queue_capacity_batches}` : '–'),
      el('td', { class: 'num' }, s.errors))));
    for (const box of $('graph').querySelectorAll('g.operator')) {
      box.classList.toggle('selected', Number(box.dataset.operatorId) === operator);
    }
  } catch (error) {
    say('cannot load the instances: ' + error.message, 'error');
  }
}

// ---- output -----------------------------------------------------------------

function drawOutput(jobId, tail) {
  const kept = state.output;
  if (kept.job !== jobId) {
    kept.job = jobId;
    kept.lines = [];
  }
  kept.lines.push(...tail.lines);
  if (kept.lines.length > OUTPUT_LINES_KEPT) kept.lines.splice(0, kept.lines.length - OUTPUT_LINES_KEPT);
  kept.next = tail.first_line + tail.lines.length;
  $('output-hint').textContent = tail.line_count === 0 ? '(none yet)'
    : `(last ${kept.lines.length} of ${tail.line_count} lines; sage job logs ${jobId} has them all)`;
  if (tail.lines.length === 0 && $('output').dataset.job === jobId) return;
  const box = $('output');
  const atEnd = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
  box.dataset.job = jobId;
  box.textContent = kept.lines.join('\n');
  if (atEnd) box.scrollTop = box.scrollHeight;
}

// ---- start ------------------------------------------------------------------

function start() {
  document.body.dataset.scriptMs = performance.now().toFixed(1);
  $('load-instances').addEventListener('click', () => showInstances('all'));
  if (!token) {
    problem('This page needs the cluster token in its URL: open the URL that `sage dashboard` prints ' +
            '(it ends in #token=...).');
    say('no token', 'error');
    return;
  }
  refresh();
}

start();
