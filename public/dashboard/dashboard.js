// photopipe's live dashboard. The page holds no secret: the operator types the admin key, which
// stays in this tab (sessionStorage) and is sent with every request. Numbers are fleet-wide: every
// worker process writes its counts to Redis; the API streams one snapshot a second.
(function () {
  'use strict';
  const WINDOW_SECONDS = 300;
  const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf'];
  const $ = (id) => document.getElementById(id);
  let key = sessionStorage.getItem('photopipe-admin-key') || '';
  let stages = [];
  let chart = null;
  let data = null;
  let controller = null;

  const setStatus = (text) => ($('status').textContent = text);
  const cell = (text, cls) => {
    const td = document.createElement('td');
    td.textContent = text === null || text === undefined ? '–' : String(text);
    if (cls) td.className = cls;
    return td;
  };
  const fill = (tableId, rows) => {
    const body = $(tableId).tBodies[0];
    body.replaceChildren(...rows);
  };
  const row = (cells, cls) => {
    const tr = document.createElement('tr');
    if (cls) tr.className = cls;
    tr.append(...cells);
    return tr;
  };

  async function api(path, init) {
    const res = await fetch(path, { ...(init || {}), headers: { ...((init && init.headers) || {}), authorization: `Bearer ${key}` } });
    if (!res.ok) throw new Error(`${path}: ${res.status}`);
    return res.json();
  }

  function buildChart(history) {
    stages = history.stages;
    const xs = history.seconds.map((s) => s.t);
    data = [xs, ...stages.map((st) => history.seconds.map((s) => s.counts[`${st}|succeeded`] || 0))];
    const opts = {
      width: Math.max(600, $('chart').clientWidth || 900),
      height: 260,
      scales: { x: { time: true } },
      series: [{}, ...stages.map((st, i) => ({ label: st, stroke: COLORS[i % COLORS.length], width: 1.5 }))],
      axes: [{}, { label: 'photos/s' }],
    };
    $('chart').replaceChildren();
    chart = new uPlot(opts, data, $('chart'));
  }

  function pushSecond(t, counts) {
    if (!data) return;
    if (data[0].length && t <= data[0][data[0].length - 1]) return;
    data[0].push(t);
    stages.forEach((st, i) => data[i + 1].push(counts[`${st}|succeeded`] || 0));
    if (data[0].length > WINDOW_SECONDS) for (const series of data) series.shift();
    chart.setData(data);
  }

  function render(snap) {
    pushSecond(snap.t, snap.second);
    const t = snap.totals;
    fill('stages', snap.stages.map((st) => row([
      cell(st),
      cell(t[`${st}|succeeded`] || 0, 'num'),
      cell(t[`${st}|retried`] || 0, 'num'),
      cell(t[`${st}|deferred`] || 0, 'num'),
      cell(t[`${st}|dead_lettered`] || 0, 'num'),
      cell(t[`${st}|moot`] || 0, 'num'),
      cell(snap.second[`${st}|succeeded`] || 0, 'num'),
    ])));
    fill('photos', Object.entries(snap.photos || {}).map(([status, n]) => row([cell(status), cell(n, 'num')], status === 'failed' && n > 0 ? 'warn' : '')));
    // Work queues without their prefix (frame, bulk.frame, ...); a queue with messages and no consumer is red: that stage is stuck.
    const work = snap.queues.filter((q) => !q.name.includes('.dlq.') && !q.name.includes('.retry.'));
    const short = (name) => name.slice(name.indexOf('.') + 1);
    fill('queues', work.map((q) => row([cell(short(q.name)), cell(q.ready, 'num'), cell(q.unacked, 'num'), cell(q.consumers, 'num')], q.consumers === 0 && q.ready > 0 ? 'warn' : '')));
    fill('dlq', snap.queues.filter((q) => q.name.includes('.dlq.')).map((q) => row([cell(q.name.split('.dlq.')[1]), cell(q.ready, 'num')], q.ready > 0 ? 'warn' : '')));
    fill('failures', snap.failures.map((f) => {
      const button = document.createElement('button');
      button.textContent = 'Replay';
      button.className = 'replay';
      button.dataset.testid = `replay-${f.id}`;
      button.addEventListener('click', () => void replay(f.id, button));
      const action = document.createElement('td');
      action.append(button);
      return row([cell(new Date(f.failedAt).toLocaleTimeString()), cell(f.stage), cell(f.code), cell(f.reason, 'reason'), cell(f.attempts, 'num'), cell(f.tenantId), cell(f.id), action]);
    }));
    setStatus(`live · ${new Date(snap.t * 1000).toLocaleTimeString()}`);
  }

  async function replay(photoId, button) {
    button.disabled = true;
    try {
      const r = await api('/v1/admin/photos/replay', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ photoIds: [photoId] }) });
      $('replay-result').textContent = `replayed ${r.replayed.length} dead letter(s) of ${photoId}${r.skipped.length ? `; skipped: ${r.skipped.map((s) => s.reason).join('; ')}` : ''}`;
    } catch (err) {
      $('replay-result').textContent = `replay failed: ${err.message}`;
      button.disabled = false;
    }
  }

  async function stream(signal) {
    const res = await fetch('/v1/admin/dashboard/stream', { headers: { authorization: `Bearer ${key}` }, signal });
    if (!res.ok || !res.body) throw new Error(`stream: ${res.status}`);
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error('stream ended');
      buffer += value;
      let end;
      while ((end = buffer.indexOf('\n\n')) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const event = /^event: (.*)$/m.exec(block)?.[1];
        const payload = /^data: (.*)$/m.exec(block)?.[1];
        if (event === 'snapshot' && payload) render(JSON.parse(payload));
      }
    }
  }

  async function connect() {
    if (controller) controller.abort();
    controller = new AbortController();
    const { signal } = controller;
    setStatus('connecting…');
    for (;;) {
      try {
        buildChart(await api(`/v1/admin/dashboard/history?seconds=${WINDOW_SECONDS}`));
        await stream(signal);
      } catch (err) {
        if (signal.aborted) return;
        setStatus(`disconnected (${err.message}); retrying`);
        await new Promise((r) => setTimeout(r, 2000));
      }
    }
  }

  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    key = $('admin-key').value;
    sessionStorage.setItem('photopipe-admin-key', key);
    void connect();
  });
  if (key) {
    $('admin-key').value = key;
    void connect();
  }
})();
