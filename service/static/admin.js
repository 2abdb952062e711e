// product-sync admin page: plain JS over the same JSON API as every other client.
// The admin token is only ever sent once (POST /admin/session); the server answers with an
// HttpOnly cookie, so this script never stores the token anywhere.
(function () {
  'use strict';

  var POLL_INTERVAL_MS = 2000;
  // While idle the page still looks now and then: a run may start elsewhere (the schedule, another
  // replica, the command line), and the page should follow it as it follows its own.
  var IDLE_POLL_INTERVAL_MS = 5000;
  var HISTORY_LIMIT = 20;
  var ERRORS_PAGE_SIZE = 50;
  var PLAN_PAGE_SIZE = 50;
  var CHART_RUNS = 20;
  var SVG_NS = 'http://www.w3.org/2000/svg';

  var el = {};
  var state = {
    signedIn: false,
    running: false,
    runId: null,
    pollTimer: null,
    generation: 0, // bumped on sign-in/out so late responses of an old session are dropped
    historyCursor: null,
    cancelRequested: false,
    previewRunId: null, // the dry run this page started, whose plan it shows when it ends
    planCursor: null,
  };

  function $(id) {
    return document.getElementById(id);
  }

  // ---- HTTP -----------------------------------------------------------------

  class NetworkError extends Error {}

  async function api(method, path, body) {
    var init = {
      method: method,
      credentials: 'same-origin',
      cache: 'no-store',
      headers: { Accept: 'application/json' },
    };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    var response;
    try {
      response = await fetch(path, init);
    } catch (err) {
      throw new NetworkError('Could not reach the server.');
    }
    var payload = null;
    try {
      payload = await response.json();
    } catch (err) {
      payload = null;
    }
    return { status: response.status, ok: response.ok, body: payload };
  }

  function messageOf(result, fallback) {
    if (result.body && typeof result.body.message === 'string' && result.body.message) {
      return result.body.message;
    }
    return fallback + ' (HTTP ' + result.status + ')';
  }

  // ---- formatting -----------------------------------------------------------

  function formatTime(iso) {
    if (!iso) return '—';
    var date = new Date(iso);
    if (isNaN(date.getTime())) return String(iso);
    return date.toLocaleString();
  }

  function formatDuration(seconds) {
    if (seconds === null || seconds === undefined) return '—';
    var value = Number(seconds);
    if (!isFinite(value)) return '—';
    if (value < 60) return value.toFixed(2) + ' s';
    var minutes = Math.floor(value / 60);
    var rest = value - minutes * 60;
    return minutes + ' min ' + rest.toFixed(0) + ' s';
  }

  function count(stats, key) {
    var value = stats && stats[key];
    return typeof value === 'number' ? value : 0;
  }

  function countsSentence(stats) {
    return count(stats, 'created') + ' created, ' + count(stats, 'updated') + ' updated, ' +
      count(stats, 'unchanged') + ' unchanged, ' + count(stats, 'errors') + ' errors';
  }

  function timeElement(iso) {
    var node = document.createElement('time');
    if (iso) node.dateTime = iso;
    node.textContent = formatTime(iso);
    return node;
  }

  // ---- messages -------------------------------------------------------------

  function showNotice(node, text, kind) {
    node.textContent = text;
    node.className = 'notice' + (kind ? ' notice-' + kind : '');
    node.hidden = false;
  }

  function hideNotice(node) {
    node.hidden = true;
    node.textContent = '';
  }

  // ---- session ----------------------------------------------------------------

  function showSignIn(message) {
    state.generation += 1;
    state.signedIn = false;
    stopPolling();
    el.loading.hidden = true;
    el.dashboard.hidden = true;
    el.account.hidden = true;
    el.accountName.textContent = '';
    el.historyBody.textContent = '';
    el.signIn.hidden = false;
    if (message) {
      showNotice(el.signInMessage, message, 'error');
    } else {
      hideNotice(el.signInMessage);
    }
  }

  function showDashboard(session) {
    state.generation += 1;
    state.signedIn = true;
    el.loading.hidden = true;
    el.signIn.hidden = true;
    hideNotice(el.signInMessage);
    el.accountName.textContent = (session && session.tokenName) || 'admin';
    if (session && session.expiresAt) {
      el.accountName.title = 'Session ends ' + formatTime(session.expiresAt);
    }
    el.account.hidden = false;
    el.dashboard.hidden = false;
    hideNotice(el.syncMessage);
    refreshStatus();
    loadRuns(true);
  }

  async function checkSession() {
    var result;
    try {
      result = await api('GET', '/admin/session');
    } catch (err) {
      showSignIn(err.message + ' Reload the page to try again.');
      return;
    }
    if (result.ok && result.body && result.body.data) {
      showDashboard(result.body.data);
    } else if (result.status === 401) {
      showSignIn(null);
    } else {
      showSignIn(messageOf(result, 'Could not check the session.'));
    }
  }

  async function onSignIn(event) {
    event.preventDefault();
    var token = el.token.value.trim();
    el.token.value = ''; // never leave the secret in the DOM
    if (!token) {
      showNotice(el.signInMessage, 'Paste an admin token first.', 'error');
      el.token.focus();
      return;
    }
    el.signInButton.disabled = true;
    var result;
    try {
      result = await api('POST', '/admin/session', { token: token });
    } catch (err) {
      showNotice(el.signInMessage, err.message, 'error');
      return;
    } finally {
      token = '';
      el.signInButton.disabled = false;
    }
    if (result.ok) {
      // Ask the server who we are rather than trusting the sign-in answer's shape.
      await checkSession();
      if (state.signedIn) el.syncTitle.focus();
      return;
    }
    var text = result.status === 401
      ? 'That token was not accepted. Check it and try again.'
      : messageOf(result, 'Sign-in failed.');
    showNotice(el.signInMessage, text, 'error');
    el.token.focus();
  }

  async function onSignOut() {
    el.signOut.disabled = true;
    try {
      await api('DELETE', '/admin/session');
    } catch (err) {
      // The cookie may still be valid; say so instead of pretending.
      showNotice(el.syncMessage, err.message + ' You may still be signed in.', 'error');
      return;
    } finally {
      el.signOut.disabled = false;
    }
    showSignIn(null);
    showNotice(el.signInMessage, 'You have signed out.', 'ok');
    el.token.focus();
  }

  function sessionEnded() {
    showSignIn('Your session has ended. Please sign in again.');
  }

  // ---- sync status ------------------------------------------------------------

  function stopPolling() {
    if (state.pollTimer !== null) {
      clearTimeout(state.pollTimer);
      state.pollTimer = null;
    }
  }

  function schedulePoll() {
    stopPolling();
    state.pollTimer = setTimeout(refreshStatus, state.running ? POLL_INTERVAL_MS : IDLE_POLL_INTERVAL_MS);
  }

  async function refreshStatus() {
    state.pollTimer = null;
    var generation = state.generation;
    var result;
    try {
      result = await api('GET', '/admin/sync/status');
    } catch (err) {
      if (generation !== state.generation) return;
      showNotice(el.syncMessage, err.message + ' Retrying…', 'error');
      schedulePoll();
      return;
    }
    if (generation !== state.generation) return;
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (!result.ok || !result.body || !result.body.data) {
      showNotice(el.syncMessage, messageOf(result, 'Could not read the sync status.'), 'error');
      schedulePoll();
      return;
    }
    var wasRunning = state.running;
    renderStatus(result.body.data);
    schedulePoll();
    if (!state.running && wasRunning) {
      // The run just ended: the summary now tells the outcome, and its final row belongs in the history.
      if (!el.syncMessage.classList.contains('notice-error')) hideNotice(el.syncMessage);
      loadRuns(true);
      if (state.previewRunId !== null && state.previewRunId === result.body.data.runId) {
        loadPlan(state.previewRunId, true);
      }
    }
  }

  function setRunning(running) {
    var hadFocus = document.activeElement;
    state.running = running;
    el.syncButton.disabled = running;
    el.previewButton.disabled = running;
    el.cancelButton.hidden = !running;
    if (!running) state.cancelRequested = false;
    el.cancelButton.disabled = state.cancelRequested;
    // Keep keyboard users' focus on a live control when the focused one goes away.
    if (running && hadFocus === el.syncButton) el.cancelButton.focus();
    if (!running && hadFocus === el.cancelButton) el.syncButton.focus();
  }

  function renderCounters(stats) {
    el.counters.hidden = false;
    el.countCreated.textContent = String(count(stats, 'created'));
    el.countUpdated.textContent = String(count(stats, 'updated'));
    el.countUnchanged.textContent = String(count(stats, 'unchanged'));
    el.countErrors.textContent = String(count(stats, 'errors'));
    el.countErrors.parentElement.classList.toggle('has-errors', count(stats, 'errors') > 0);
  }

  function renderProgress(progress, running) {
    if (!running || !progress) {
      el.progressBlock.hidden = true;
      return;
    }
    var processed = typeof progress.processed === 'number' ? progress.processed : 0;
    var total = typeof progress.total === 'number' ? progress.total : null;
    el.progressBlock.hidden = false;
    if (total !== null && total > 0) {
      el.progressBar.hidden = false;
      el.progressLabel.hidden = false;
      el.progressBar.max = total;
      el.progressBar.value = Math.min(processed, total);
      el.progressText.textContent = processed + ' / ' + total + ' processed (' +
        Math.floor((Math.min(processed, total) / total) * 100) + '%)';
    } else {
      // Total not known yet (first page not read, or a feed without a total).
      el.progressBar.hidden = true;
      el.progressLabel.hidden = true;
      el.progressText.textContent = processed + ' processed';
    }
  }

  function setSummary(text, kind) {
    // Only touch the live region when the sentence changes, so polling stays quiet.
    if (el.statusSummary.textContent !== text) el.statusSummary.textContent = text;
    el.statusSummary.className = 'status-summary' + (kind ? ' is-' + kind : '');
  }

  function renderSink(sink) {
    if (!sink) { el.sinkTarget.hidden = true; return; }
    var catalogs = { medusa: 'the Medusa shop at ', postgres: 'the PostgreSQL catalog ', sqlite: 'the SQLite catalog ' };
    var where = (catalogs[sink.kind] || sink.kind + ' ') + sink.target;
    var text = 'Products go to ' + where + '.';
    if (el.sinkTarget.textContent !== text) el.sinkTarget.textContent = text;
    el.sinkTarget.hidden = false;
  }

  function renderSchedule(data) {
    var text;
    if (data.schedule) {
      text = 'Runs start on the schedule ' + data.schedule.expression + ' (' + data.schedule.timezone +
        '); the next is due ' + formatTime(data.nextRunAt) + '.';
    } else {
      text = 'No schedule: runs start only when triggered.';
    }
    if (el.scheduleLine.textContent !== text) el.scheduleLine.textContent = text;
    el.scheduleLine.hidden = false;
  }

  function renderStatus(data) {
    renderSink(data.sink);
    renderSchedule(data);
    var running = Boolean(data.isRunning);
    state.runId = data.runId === undefined ? null : data.runId;
    setRunning(running);
    renderProgress(data.progress, running);
    var stats = data.stats || {};
    var status = data.lastStatus || 'idle';
    if (running) {
      var by = data.triggeredBy ? ' (started by ' + data.triggeredBy + ')' : '';
      setSummary('Sync running since ' + formatTime(data.lastRun) + by + '.', 'running');
      renderCounters(stats);
      updateRunningRow(data.runId, stats);
      return;
    }
    if (status === 'idle' || !data.lastRun) {
      setSummary('No sync has run yet.', null);
      el.counters.hidden = true;
      return;
    }
    renderCounters(stats);
    var took = data.lastDuration === null || data.lastDuration === undefined
      ? '' : ' in ' + formatDuration(data.lastDuration);
    if (data.dryRun && status === 'success') {
      setSummary('Last preview (nothing written) finished' + took + ': a sync would make ' +
        countsSentence(stats) + ', ' + count(stats, 'removed') + ' removed.', 'success');
    } else if (status === 'success') {
      setSummary('Last sync succeeded' + took + ': ' + countsSentence(stats) + '. Started ' +
        formatTime(data.lastRun) + '.', 'success');
    } else if (status === 'cancelled') {
      var who = data.cancelledBy ? ' by ' + data.cancelledBy : '';
      setSummary('Last sync was cancelled' + who + took + ': ' + countsSentence(stats) + '.', 'cancelled');
    } else {
      setSummary('Last sync failed' + took + ': ' + (data.lastError || 'unknown error') + '.', 'error');
    }
  }

  // ---- actions ------------------------------------------------------------------

  async function onSync() {
    await startRun(false);
  }

  async function onPreview() {
    await startRun(true);
  }

  async function startRun(dryRun) {
    hideNotice(el.syncMessage);
    el.syncButton.disabled = true; // no double submits while the request is in flight
    el.previewButton.disabled = true;
    var result;
    try {
      result = await api('POST', '/admin/sync/trigger', dryRun ? { dryRun: true } : undefined);
    } catch (err) {
      showNotice(el.syncMessage, err.message, 'error');
      el.syncButton.disabled = state.running;
      el.previewButton.disabled = state.running;
      return;
    }
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (result.ok) {
      var data = result.body && result.body.data ? result.body.data : {};
      state.previewRunId = dryRun ? data.runId : null;
      var what = dryRun ? 'Preview (a dry run: nothing is written)' : 'Sync';
      showNotice(el.syncMessage, what + ' started at ' + formatTime(data.startedAt) + '.', 'ok');
      setRunning(true);
      await refreshStatus();
      loadRuns(true);
      return;
    }
    if (result.status === 409) {
      var since = result.body && result.body.data ? result.body.data.startedAt : null;
      showNotice(el.syncMessage, 'A sync is already running since ' + formatTime(since) + '.', 'warn');
      setRunning(true);
      await refreshStatus(); // follow the run that is already going
      return;
    }
    showNotice(el.syncMessage, messageOf(result, 'The sync could not be started.'), 'error');
    el.syncButton.disabled = state.running;
    el.previewButton.disabled = state.running;
  }

  async function onCancel() {
    state.cancelRequested = true;
    el.cancelButton.disabled = true;
    var result;
    try {
      result = await api('POST', '/admin/sync/cancel');
    } catch (err) {
      state.cancelRequested = false;
      el.cancelButton.disabled = false;
      showNotice(el.syncMessage, err.message, 'error');
      return;
    }
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (result.ok) {
      showNotice(el.syncMessage, 'Cancellation requested; the sync stops after its current batch.', 'warn');
    } else if (result.status === 409) {
      showNotice(el.syncMessage, 'No sync is running.', 'warn');
    } else {
      state.cancelRequested = false;
      el.cancelButton.disabled = false;
      showNotice(el.syncMessage, messageOf(result, 'The sync could not be cancelled.'), 'error');
    }
    await refreshStatus();
  }

  // ---- history ------------------------------------------------------------------

  function cell(row, label, content, className) {
    var td = document.createElement('td');
    td.setAttribute('data-label', label);
    if (className) td.className = className;
    if (content instanceof Node) td.appendChild(content);
    else td.textContent = content;
    row.appendChild(td);
    return td;
  }

  function badge(status) {
    var span = document.createElement('span');
    span.className = 'badge badge-' + status;
    span.textContent = status;
    return span;
  }

  function runRow(run) {
    var row = document.createElement('tr');
    row.className = 'run-row';
    row.setAttribute('data-run-id', String(run.id));
    var stats = run.stats || {};
    cell(row, 'Run', '#' + run.id, 'cell-id');
    var statusCell = cell(row, 'Status', badge(run.status), 'cell-status');
    if (run.dryRun) {
      var dry = document.createElement('span');
      dry.className = 'badge badge-dry';
      dry.textContent = 'dry run';
      statusCell.appendChild(document.createTextNode(' '));
      statusCell.appendChild(dry);
    }
    cell(row, 'Triggered by', run.triggeredBy || '—', 'cell-by');
    cell(row, 'Started', timeElement(run.startedAt), 'cell-started');
    cell(row, 'Duration', run.status === 'running' ? 'running' : formatDuration(run.duration), 'cell-duration');
    cell(row, 'Created', String(count(stats, 'created')), 'num');
    cell(row, 'Updated', String(count(stats, 'updated')), 'num');
    cell(row, 'Unchanged', String(count(stats, 'unchanged')), 'num');
    cell(row, 'Errors', String(count(stats, 'errors')), 'num');

    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'button button-small';
    button.setAttribute('aria-expanded', 'false');
    button.setAttribute('aria-controls', 'run-details-' + run.id);
    button.appendChild(document.createTextNode('Details'));
    var hint = document.createElement('span');
    hint.className = 'visually-hidden';
    hint.textContent = ' of run ' + run.id;
    button.appendChild(hint);
    button.addEventListener('click', function () {
      toggleDetails(row, run, button);
    });
    cell(row, 'Details', button, 'cell-action');
    return row;
  }

  function updateRunningRow(runId, stats) {
    // Keep the history's running row in step with the status poll, without refetching the list.
    if (runId === null || runId === undefined) return;
    var row = el.historyBody.querySelector('tr.run-row[data-run-id="' + String(Number(runId)) + '"]');
    if (!row) return;
    ['Created', 'Updated', 'Unchanged', 'Errors'].forEach(function (label) {
      var td = row.querySelector('td[data-label="' + label + '"]');
      if (td) td.textContent = String(count(stats, label.toLowerCase()));
    });
  }

  async function loadRuns(reset) {
    var generation = state.generation;
    var path = '/admin/sync/runs?limit=' + HISTORY_LIMIT;
    if (!reset && state.historyCursor) path += '&cursor=' + encodeURIComponent(state.historyCursor);
    el.historyRefresh.disabled = true;
    var result;
    try {
      result = await api('GET', path);
    } catch (err) {
      if (generation === state.generation) showNotice(el.historyMessage, err.message, 'error');
      return;
    } finally {
      el.historyRefresh.disabled = false;
    }
    if (generation !== state.generation) return;
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (!result.ok || !result.body || !result.body.data) {
      showNotice(el.historyMessage, messageOf(result, 'Could not load the run history.'), 'error');
      return;
    }
    hideNotice(el.historyMessage);
    var runs = result.body.data.runs || [];
    if (reset) drawChart(runs);
    if (reset) el.historyBody.textContent = '';
    runs.forEach(function (run) {
      el.historyBody.appendChild(runRow(run));
    });
    state.historyCursor = result.body.data.nextCursor || null;
    el.historyMore.hidden = !state.historyCursor;
    var empty = el.historyBody.children.length === 0;
    el.history.hidden = empty;
    el.historyEmpty.hidden = !empty;
  }

  // ---- planned changes (a dry run) ---------------------------------------------------

  var CHANGE_WORDS = { create: 'create', update: 'update', restore: 'restore', remove: 'remove' };

  async function loadPlan(runId, reset) {
    var generation = state.generation;
    var path = '/admin/sync/runs/' + runId + '?errorsLimit=1&changesLimit=' + PLAN_PAGE_SIZE;
    if (!reset && state.planCursor) path += '&changesCursor=' + encodeURIComponent(state.planCursor);
    var result;
    try {
      result = await api('GET', path);
    } catch (err) {
      if (generation === state.generation) showNotice(el.syncMessage, err.message, 'error');
      return;
    }
    if (generation !== state.generation) return;
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (!result.ok || !result.body || !result.body.data) {
      showNotice(el.syncMessage, messageOf(result, 'Could not load the planned changes.'), 'error');
      return;
    }
    var detail = result.body.data;
    var stats = detail.run.stats || {};
    if (reset) {
      el.planBody.textContent = '';
      var sentence;
      if (detail.run.status === 'success') {
        sentence = 'A sync now would create ' + count(stats, 'created') + ', update ' + count(stats, 'updated') +
          ', restore ' + count(stats, 'restored') + ' and remove ' + count(stats, 'removed') + ' products; ' +
          count(stats, 'unchanged') + ' are unchanged and ' + count(stats, 'errors') + ' items are errors.';
      } else {
        sentence = 'The preview ended in ' + detail.run.status + (detail.run.error ? ': ' + detail.run.error : '') +
          '. A sync now would end the same way.';
      }
      el.planSummary.textContent = sentence;
    }
    (detail.changes || []).forEach(function (change) {
      var row = document.createElement('tr');
      row.className = 'plan-row';
      cell(row, 'Item id', change.externalId);
      cell(row, 'Handle', change.handle || '—');
      var kind = CHANGE_WORDS[change.kind] || change.kind;
      cell(row, 'Change', change.action ? kind + ' (' + change.action + ')' : kind);
      cell(row, 'Fields', change.fields && change.fields.length ? change.fields.join(', ') : '—');
      el.planBody.appendChild(row);
    });
    state.planCursor = detail.nextChangesCursor || null;
    el.planMore.hidden = !state.planCursor;
    var empty = el.planBody.children.length === 0;
    el.planTable.hidden = empty;
    el.planEmpty.hidden = !empty || detail.run.status !== 'success';
    el.plan.hidden = false;
    if (reset) el.planTitle.focus();
  }

  // ---- the recent runs chart (SVG drawn here: no external asset, nothing inline for the CSP) -----

  function svgNode(name, attributes, tip) {
    var node = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) {
      node.setAttribute(key, String(attributes[key]));
    });
    if (tip) {
      var title = document.createElementNS(SVG_NS, 'title');
      title.textContent = tip;
      node.appendChild(title);
    }
    return node;
  }

  function clearBars(svg) {
    Array.prototype.slice.call(svg.querySelectorAll('rect')).forEach(function (node) {
      svg.removeChild(node);
    });
  }

  function drawChart(runs) {
    var done = runs.filter(function (run) { return run.status !== 'running'; }).slice(0, CHART_RUNS).reverse();
    el.chart.hidden = done.length === 0;
    el.chartEmpty.hidden = done.length !== 0;
    clearBars(el.chartDuration);
    clearBars(el.chartCounts);
    if (!done.length) return;
    var width = 600, height = 90, top = 4;
    var slot = width / done.length;
    var barWidth = Math.max(2, Math.min(slot * 0.7, 30));
    var longest = Math.max.apply(null, done.map(function (run) { return run.duration || 0; }).concat([0.01]));
    var parts = ['created', 'updated', 'removed', 'errors'];
    var largest = Math.max.apply(null, done.map(function (run) {
      return parts.reduce(function (sum, key) { return sum + count(run.stats, key); }, 0);
    }).concat([1]));
    done.forEach(function (run, index) {
      var x = index * slot + (slot - barWidth) / 2;
      var dry = run.dryRun ? ' bar-dry' : '';
      var label = 'Run #' + run.id + (run.dryRun ? ' (dry run)' : '') + ', ' + run.status + ': ';
      var tall = Math.max(1, (height - top) * (run.duration || 0) / longest);
      el.chartDuration.appendChild(svgNode('rect', {
        x: x, y: height - tall, width: barWidth, height: tall, class: 'bar bar-duration' + dry,
        'data-run-id': run.id,
      }, label + formatDuration(run.duration)));
      var y = height;
      parts.forEach(function (key) {
        var value = count(run.stats, key);
        if (!value) return;
        var piece = Math.max(1, (height - top) * value / largest);
        y -= piece;
        el.chartCounts.appendChild(svgNode('rect', {
          x: x, y: y, width: barWidth, height: piece, class: 'bar bar-' + key + dry, 'data-run-id': run.id,
        }, label + value + ' ' + key));
      });
    });
  }

  function toggleDetails(row, run, button) {
    var id = 'run-details-' + run.id;
    var existing = $(id);
    if (existing) {
      existing.remove();
      button.setAttribute('aria-expanded', 'false');
      return;
    }
    var detailsRow = document.createElement('tr');
    detailsRow.id = id;
    detailsRow.className = 'run-details';
    var td = document.createElement('td');
    td.colSpan = 10;
    var box = document.createElement('div');
    box.className = 'details';
    box.setAttribute('aria-live', 'polite');
    var loading = document.createElement('p');
    loading.className = 'muted';
    loading.textContent = 'Loading run ' + run.id + '…';
    box.appendChild(loading);
    td.appendChild(box);
    detailsRow.appendChild(td);
    row.after(detailsRow);
    button.setAttribute('aria-expanded', 'true');
    loadDetails(run.id, box, null);
  }

  function paragraph(text, className) {
    var p = document.createElement('p');
    if (className) p.className = className;
    p.textContent = text;
    return p;
  }

  function errorsTable(runId) {
    var table = document.createElement('table');
    table.className = 'item-errors';
    var caption = document.createElement('caption');
    caption.className = 'visually-hidden';
    caption.textContent = 'Item errors of run ' + runId;
    table.appendChild(caption);
    var head = document.createElement('thead');
    var headRow = document.createElement('tr');
    ['Position', 'Item id', 'Reason', 'Recorded'].forEach(function (name) {
      var th = document.createElement('th');
      th.scope = 'col';
      th.textContent = name;
      headRow.appendChild(th);
    });
    head.appendChild(headRow);
    table.appendChild(head);
    table.appendChild(document.createElement('tbody'));
    return table;
  }

  function appendErrors(table, errors) {
    var body = table.tBodies[0];
    errors.forEach(function (item) {
      var tr = document.createElement('tr');
      var values = [
        ['Position', item.position === null || item.position === undefined ? '—' : String(item.position), ''],
        ['Item id', item.externalId === null || item.externalId === undefined ? '—' : String(item.externalId), ''],
        ['Reason', item.reason || '', 'reason'],
      ];
      values.forEach(function (entry) {
        var td = document.createElement('td');
        td.setAttribute('data-label', entry[0]);
        if (entry[2]) td.className = entry[2];
        td.textContent = entry[1];
        tr.appendChild(td);
      });
      var when = document.createElement('td');
      when.setAttribute('data-label', 'Recorded');
      when.appendChild(timeElement(item.recordedAt));
      tr.appendChild(when);
      body.appendChild(tr);
    });
  }

  async function loadDetails(runId, box, cursor) {
    var path = '/admin/sync/runs/' + encodeURIComponent(String(runId)) + '?errorsLimit=' + ERRORS_PAGE_SIZE;
    if (cursor) path += '&errorsCursor=' + encodeURIComponent(cursor);
    var result;
    try {
      result = await api('GET', path);
    } catch (err) {
      box.textContent = '';
      box.appendChild(paragraph(err.message, 'notice notice-error'));
      return;
    }
    if (result.status === 401) {
      sessionEnded();
      return;
    }
    if (!result.ok || !result.body || !result.body.data) {
      box.textContent = '';
      box.appendChild(paragraph(messageOf(result, 'Could not load run ' + runId + '.'), 'notice notice-error'));
      return;
    }
    var data = result.body.data;
    var errors = data.errors || [];
    var table;
    if (!cursor) {
      var run = data.run || {};
      box.textContent = '';
      if (run.error) box.appendChild(paragraph('Run error: ' + run.error, 'notice notice-error'));
      if (run.cancelledBy) box.appendChild(paragraph('Cancelled by ' + run.cancelledBy + '.'));
      if (run.finishedAt) box.appendChild(paragraph('Finished ' + formatTime(run.finishedAt) + '.'));
      if (run.progress && typeof run.progress.processed === 'number') {
        var total = typeof run.progress.total === 'number' ? ' of ' + run.progress.total : '';
        box.appendChild(paragraph(run.progress.processed + total + ' items processed.'));
      }
      var heading = document.createElement('h3');
      heading.textContent = 'Item errors';
      box.appendChild(heading);
      if (errors.length === 0) {
        box.appendChild(paragraph('No item errors.', 'muted'));
        return;
      }
      table = errorsTable(runId);
      box.appendChild(table);
    } else {
      table = box.querySelector('table.item-errors');
    }
    appendErrors(table, errors);
    var more = box.querySelector('button.more-errors');
    if (more) more.remove();
    if (data.nextErrorsCursor) {
      more = document.createElement('button');
      more.type = 'button';
      more.className = 'button button-small more-errors';
      more.textContent = 'Show more item errors';
      more.addEventListener('click', function () {
        more.disabled = true;
        loadDetails(runId, box, data.nextErrorsCursor);
      });
      box.appendChild(more);
    }
  }

  // ---- start ----------------------------------------------------------------------

  function init() {
    el.loading = $('loading');
    el.signIn = $('sign-in');
    el.signInForm = $('sign-in-form');
    el.signInButton = $('sign-in-button');
    el.signInMessage = $('sign-in-message');
    el.token = $('token');
    el.account = $('account');
    el.accountName = $('account-name');
    el.signOut = $('sign-out');
    el.dashboard = $('dashboard');
    el.syncTitle = $('sync-title');
    el.syncButton = $('sync-button');
    el.previewButton = $('preview-button');
    el.scheduleLine = $('schedule-line');
    el.plan = $('plan');
    el.planTitle = $('plan-title');
    el.planSummary = $('plan-summary');
    el.planEmpty = $('plan-empty');
    el.planTable = $('plan-table');
    el.planBody = $('plan-body');
    el.planMore = $('plan-more');
    el.chart = $('chart');
    el.chartEmpty = $('chart-empty');
    el.chartDuration = $('chart-duration');
    el.chartCounts = $('chart-counts');
    el.cancelButton = $('cancel-button');
    el.syncMessage = $('sync-message');
    el.sinkTarget = $('sink-target');
    el.statusSummary = $('status-summary');
    el.progressBlock = $('progress-block');
    el.progressBar = $('progress-bar');
    el.progressLabel = el.progressBlock.querySelector('label');
    el.progressText = $('progress-text');
    el.counters = $('counters');
    el.countCreated = $('count-created');
    el.countUpdated = $('count-updated');
    el.countUnchanged = $('count-unchanged');
    el.countErrors = $('count-errors');
    el.history = $('history');
    el.historyBody = $('history-body');
    el.historyEmpty = $('history-empty');
    el.historyMessage = $('history-message');
    el.historyRefresh = $('history-refresh');
    el.historyMore = $('history-more');

    el.signInForm.addEventListener('submit', onSignIn);
    el.signOut.addEventListener('click', onSignOut);
    el.syncButton.addEventListener('click', onSync);
    el.previewButton.addEventListener('click', onPreview);
    el.planMore.addEventListener('click', function () {
      if (state.previewRunId !== null) loadPlan(state.previewRunId, false);
    });
    el.cancelButton.addEventListener('click', onCancel);
    el.historyRefresh.addEventListener('click', function () {
      loadRuns(true);
    });
    el.historyMore.addEventListener('click', function () {
      loadRuns(false);
    });
    checkSession();
  }

  if (document.readyState === 'loading') {
    document.addEventListener('DOMContentLoaded', init);
  } else {
    init();
  }
})();
