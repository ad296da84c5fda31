// ferrosync's web GUI: a client of the daemon's REST API like any other.
// It logs in for a session cookie, sends the session's CSRF token with
// every change, follows /rest/events (long poll) and re-reads what the
// events say changed. Everything from the API (file names come from
// remote peers) is put in the page as text, never as HTML.
'use strict';

const S = {
  csrf: null,
  status: null,
  pending: { devices: [], folders: [] },
  changes: [],
  since: 0,
  rates: {}, // folder id -> { at, pulled, rate } for the ETA
  view: null, // the open view's refresh function
};

// ---------- helpers ----------

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'text') e.textContent = v;
    else if (k === 'class') e.className = v;
    // Through the CSSOM: the page's CSP refuses style attributes.
    else if (k === 'style') e.style.cssText = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
}

const $ = (id) => document.getElementById(id);

function bytes(n) {
  if (!n) return '0 B';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  const i = Math.min(u.length - 1, Math.floor(Math.log(n) / Math.log(1024)));
  return `${(n / 1024 ** i).toFixed(i ? 1 : 0)} ${u[i]}`;
}

function files(n) {
  return `${n} file${n === 1 ? '' : 's'}`;
}

function when(unix) {
  return unix ? new Date(unix * 1000).toLocaleString() : '—';
}

function duration(s) {
  if (!isFinite(s) || s < 0) return '—';
  if (s < 60) return `${Math.ceil(s)} s`;
  if (s < 3600) return `${Math.ceil(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

function short(id) {
  return (id || '').slice(0, 7);
}

function deviceName(id) {
  const d = (S.status?.devices || []).find((x) => x.id === id);
  return d?.name || short(id);
}

function notice(text, kind = 'info') {
  const n = el('p', { class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null }, text);
  $('notices').append(n);
  setTimeout(() => n.remove(), kind === 'error' ? 10000 : 4000);
}

// ---------- the API ----------

class ApiError extends Error {}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET' && S.csrf) headers['X-CSRF-Token'] = S.csrf;
  const r = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (r.status === 401 && path !== '/rest/login') {
    showLogin();
  }
  if (!r.ok) throw new ApiError(data?.error || `${method} ${path}: HTTP ${r.status}`);
  return data;
}

const enc = encodeURIComponent;

// Runs an action from a button: disabled while it runs, errors shown.
async function act(button, fn, done) {
  if (button) button.disabled = true;
  try {
    const out = await fn();
    if (done) notice(done);
    for (const n of out?.notes || []) notice(n);
    await refresh();
    return out;
  } catch (e) {
    notice(e.message, 'error');
    return undefined;
  } finally {
    if (button) button.disabled = false;
  }
}

// ---------- login ----------

function showLogin() {
  const d = $('dlg-login');
  if (!d.open) d.showModal();
}

$('login-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  try {
    const r = await api('POST', '/rest/login', { password: $('login-password').value });
    S.csrf = r.csrf;
    $('login-password').value = '';
    $('login-error').textContent = '';
    $('dlg-login').close();
    await refresh();
  } catch (e) {
    $('login-error').textContent = e.message;
  }
});

async function logIn() {
  const a = await api('GET', '/rest/auth');
  if (a.logged_in) {
    S.csrf = a.csrf;
    return true;
  }
  if (!a.password_required) {
    const r = await api('POST', '/rest/login', { password: '' });
    S.csrf = r.csrf;
    return true;
  }
  showLogin();
  return false;
}

// ---------- reading ----------

async function refresh() {
  const [status, pending, changes] = await Promise.all([
    api('GET', '/rest/status'),
    api('GET', '/rest/pending'),
    api('GET', '/rest/changes'),
  ]);
  S.status = status;
  S.pending = pending;
  S.changes = changes;
  render();
  if (S.view) await S.view().catch((e) => notice(e.message, 'error'));
}

let queued = null;
function refreshSoon() {
  if (queued) return;
  queued = setTimeout(() => {
    queued = null;
    refresh().catch((e) => notice(e.message, 'error'));
  }, 250);
}

// The event stream: each answer moves `since` on; an error waits and
// retries, so a restarting daemon is picked up again.
async function followEvents() {
  for (;;) {
    try {
      const evs = await api('GET', `/rest/events?since=${S.since}&timeout=30`);
      if (evs.length) {
        S.since = evs[evs.length - 1].id;
        refreshSoon();
      }
    } catch {
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
}

// ---------- rendering ----------

// Cards are redrawn on every refresh; a keyboard user's focus moves to
// the same button of the same card in the new drawing.
function focusKey() {
  const a = document.activeElement;
  const holder = a?.closest?.('[data-folder],[data-device]');
  if (!holder || !$('main').contains(holder)) return null;
  return { testid: holder.dataset.testid, folder: holder.dataset.folder, device: holder.dataset.device, label: a.textContent };
}

function refocus(k) {
  if (!k) return;
  const sel = `[data-testid="${k.testid}"]` + (k.folder ? `[data-folder="${CSS.escape(k.folder)}"]` : `[data-device="${CSS.escape(k.device)}"]`);
  const b = [...document.querySelectorAll(`${sel} button`)].find((x) => x.textContent === k.label);
  if (b) b.focus();
}

function render() {
  const st = S.status;
  if (!st) return;
  const focus = focusKey();
  $('device-name').textContent = `· ${st.name}`;
  document.title = `ferrosync · ${st.name}`;
  renderPending();
  renderFolders(st);
  renderDevices(st);
  renderChanges();
  refocus(focus);
}

function renderPending() {
  const box = $('pending');
  const { devices, folders } = S.pending;
  box.replaceChildren();
  box.hidden = !devices.length && !folders.length;
  for (const d of devices) {
    box.append(el('div', { class: 'prompt', 'data-testid': 'pending-device', 'data-device': d.id },
      el('p', {},
        el('strong', {}, `Device “${d.name || short(d.id)}”`), ' wants to connect',
        d.address ? ` from ${d.address}` : '', '. ',
        el('code', { class: 'device-id' }, d.id)),
      el('div', { class: 'actions' },
        el('button', { class: 'primary', onclick: (e) => act(e.target, () => api('POST', `/rest/pending/devices/${enc(d.id)}/accept`, { name: d.name || null }), 'Device added') }, 'Add device'),
        el('button', { onclick: (e) => act(e.target, () => api('POST', `/rest/pending/devices/${enc(d.id)}/ignore`)) }, 'Ignore'),
        el('button', { onclick: (e) => act(e.target, () => api('DELETE', `/rest/pending/devices/${enc(d.id)}`)) }, 'Dismiss'))));
  }
  for (const f of folders) {
    const q = `device=${enc(f.device)}`;
    box.append(el('div', { class: 'prompt', 'data-testid': 'pending-folder', 'data-folder': f.id },
      el('p', {}, el('strong', {}, deviceName(f.device)), ` offers folder “${f.label || f.id}” (${f.id}).`),
      el('div', { class: 'actions' },
        el('button', { class: 'primary', onclick: () => acceptFolder(f) }, 'Accept…'),
        el('button', { onclick: (e) => act(e.target, () => api('POST', `/rest/pending/folders/${enc(f.id)}/ignore?${q}`)) }, 'Ignore'),
        el('button', { onclick: (e) => act(e.target, () => api('DELETE', `/rest/pending/folders/${enc(f.id)}?${q}`)) }, 'Dismiss'))));
  }
}

const STATE_TEXT = {
  idle: 'Up to date', scanning: 'Scanning', syncing: 'Syncing', paused: 'Paused', error: 'Error',
};

function completion(f) {
  return f.global_bytes ? Math.max(0, Math.min(100, 100 * (f.global_bytes - f.need_bytes) / f.global_bytes)) : 100;
}

// The pull rate from the change of `pulled_bytes` between reads, smoothed.
function eta(f) {
  const now = Date.now() / 1000;
  const r = S.rates[f.id];
  if (r && now > r.at) {
    const inst = Math.max(0, f.pulled_bytes - r.pulled) / (now - r.at);
    r.rate = r.rate ? 0.7 * r.rate + 0.3 * inst : inst;
    r.at = now;
    r.pulled = f.pulled_bytes;
  } else if (!r) {
    S.rates[f.id] = { at: now, pulled: f.pulled_bytes, rate: 0 };
  }
  const rate = S.rates[f.id].rate;
  return { rate, secs: rate > 0 ? f.need_bytes / rate : Infinity };
}

function folderState(f) {
  if (f.paused || f.state === 'paused') return f.hold ? 'Paused: ' + f.hold : 'Paused';
  if (f.error) return 'Error';
  if (f.state === 'idle' && f.need_files > 0) return 'Out of sync';
  return STATE_TEXT[f.state] || f.state;
}

function renderFolders(st) {
  const box = $('folders');
  box.replaceChildren();
  if (!st.folders.length) box.append(el('p', { class: 'muted' }, 'No folders yet. Add one, or accept one a device offers.'));
  for (const f of st.folders) {
    const pct = completion(f);
    const { rate, secs } = eta(f);
    const paused = f.paused || f.state === 'paused';
    const scan = f.scan_progress;
    const state = folderState(f);
    box.append(el('article', { class: `card state-${f.state}${f.error ? ' has-error' : ''}`, 'data-testid': 'folder-card', 'data-folder': f.id },
      el('header', {},
        el('h3', {}, f.id),
        el('span', { class: 'badge', 'data-testid': 'folder-state' }, state)),
      el('p', { class: 'path muted' }, f.path),
      el('div', { class: 'progress', role: 'progressbar', 'aria-label': `${f.id} completion`, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': Math.floor(pct) },
        el('span', { style: `width:${pct}%` })),
      el('p', { class: 'nums' },
        el('span', { 'data-testid': 'folder-percent' }, `${Math.floor(pct)} %`),
        f.need_bytes ? ` · ${bytes(f.need_bytes)} to go` + (rate > 0 ? ` at ${bytes(rate)}/s, about ${duration(secs)}` : '') : ''),
      scan ? el('p', { class: 'muted' }, `Scanning ${scan.files_done}/${scan.files_total} files, ${bytes(scan.bytes_done)} of ${bytes(scan.bytes_total)}`) : null,
      el('dl', { class: 'grid' },
        el('dt', {}, 'Local'), el('dd', {}, `${files(f.local_files)}, ${bytes(f.local_bytes)}`),
        el('dt', {}, 'Global'), el('dd', {}, `${files(f.global_files)}, ${bytes(f.global_bytes)}`),
        el('dt', {}, 'Needed'), el('dd', { 'data-testid': 'folder-need' }, `${files(f.need_files)}, ${bytes(f.need_bytes)}`),
        el('dt', {}, 'Type'), el('dd', {}, f.type),
        el('dt', {}, 'Versioning'), el('dd', { 'data-testid': 'folder-versioning' }, f.versioning),
        el('dt', {}, 'Shared with'), el('dd', {}, f.devices.map(deviceName).join(', ') || 'no one'),
        f.conflicts ? [el('dt', {}, 'Conflicts met'), el('dd', {}, `${f.conflicts} since start`)] : null),
      f.error ? el('p', { class: 'error' }, f.error) : null,
      f.watch_problem ? el('p', { class: 'warn' }, f.watch_problem) : null,
      f.pull_errors.length ? el('p', { class: 'error' }, `${f.pull_errors.length} item(s) failed: `, f.pull_errors.slice(0, 3).map((e) => `${e.name || '(pass)'}: ${e.message}`).join('; ')) : null,
      f.deletes_held ? el('p', { class: 'warn' }, `${f.deletes_held} deletions held until you accept them.`,
        el('button', { onclick: (e) => act(e.target, () => api('POST', `/rest/folders/${enc(f.id)}/accept-deletes`)) }, 'Accept deletions')) : null,
      el('div', { class: 'actions' },
        el('button', { 'data-action': paused ? 'resume' : 'pause', onclick: (e) => act(e.target, () => api('POST', `/rest/folders/${enc(f.id)}/${paused ? 'resume' : 'pause'}`)) }, paused ? 'Resume' : 'Pause'),
        el('button', { 'data-action': 'rescan', onclick: (e) => act(e.target, () => api('POST', `/rest/folders/${enc(f.id)}/rescan`), 'Rescan started') }, 'Rescan'),
        el('button', { 'data-action': 'need', onclick: () => openView(`Out of sync in ${f.id}`, () => viewNeed(f.id)) }, 'Out of sync'),
        el('button', { 'data-action': 'conflicts', onclick: () => openView(`Conflicts in ${f.id}`, () => viewConflicts(f.id)) }, 'Conflicts'),
        el('button', { 'data-action': 'versions', onclick: () => openView(`Versions in ${f.id}`, () => viewVersions(f.id)) }, 'Versions'),
        el('button', { 'data-action': 'ignores', onclick: () => openView(`Ignore patterns of ${f.id}`, () => viewIgnores(f.id), true) }, 'Ignores'),
        el('button', { 'data-action': 'doctor', onclick: () => openView(`Why is ${f.id} not in sync?`, () => viewDoctor(f.id), true) }, 'Why?'),
        el('button', { 'data-action': 'edit', onclick: () => editFolder(f) }, 'Edit'))));
  }
}

function renderDevices(st) {
  const box = $('devices');
  box.replaceChildren();
  if (!st.devices.length) box.append(el('p', { class: 'muted' }, 'No devices yet. Add one with its device ID.'));
  for (const d of st.devices) {
    box.append(el('article', { class: `card ${d.connected ? 'connected' : 'disconnected'}`, 'data-testid': 'device-card', 'data-device': d.id },
      el('header', {},
        el('h3', {}, d.name || short(d.id)),
        el('span', { class: 'badge', 'data-testid': 'device-state' }, d.connected ? 'Connected' : 'Disconnected')),
      el('p', {}, el('code', { class: 'device-id' }, d.id)),
      el('dl', { class: 'grid' },
        d.connected ? [
          el('dt', {}, 'Via'), el('dd', {}, `${(d.transport || '?').toUpperCase()} ${d.address || ''}${d.relay ? ` (relay ${d.relay})` : ''}`),
          el('dt', {}, 'Found by'), el('dd', {}, d.source || '—'),
          el('dt', {}, 'Since'), el('dd', {}, when(d.connected_since)),
        ] : [el('dt', {}, 'Addresses'), el('dd', {}, d.addresses.join(', ') || 'dynamic')],
        el('dt', {}, 'Download'), el('dd', {}, `${bytes(d.in_rate)}/s (${bytes(d.in_bytes_total)} in all)`),
        el('dt', {}, 'Upload'), el('dd', {}, `${bytes(d.out_rate)}/s (${bytes(d.out_bytes_total)} in all)`),
        el('dt', {}, 'Completion'), el('dd', { 'data-testid': 'device-completion' }, `${Math.floor(d.completion)} %`)),
      el('div', { class: 'actions' },
        el('button', { class: 'danger', onclick: (e) => confirm(`Remove device ${d.name || short(d.id)}?`) && act(e.target, () => api('DELETE', `/rest/devices/${enc(d.id)}`)) }, 'Remove'))));
  }
}

function renderChanges() {
  const box = $('changes');
  box.replaceChildren();
  const recent = S.changes.slice(-50).reverse();
  if (!recent.length) box.append(el('li', { class: 'muted' }, 'Nothing changed since the daemon started.'));
  for (const c of recent) {
    box.append(el('li', { 'data-testid': 'change' },
      el('time', {}, when(c.at)), ' ',
      el('span', { class: `tag ${c.action}` }, c.action), ' ',
      el('span', { class: 'name' }, `${c.folder}/${c.name}`), ' ',
      el('span', { class: 'muted' }, c.origin === 'local' ? 'here' : `by ${deviceName(c.origin)}`)));
  }
}

// ---------- dialogs ----------

// Forms in dialogs: [data-close] closes, the error line shows failures.
for (const d of document.querySelectorAll('dialog')) {
  d.addEventListener('click', (e) => {
    if (e.target.closest('[data-close]')) {
      d.close();
    }
  });
  d.addEventListener('close', () => {
    if (d.id === 'dlg-view') S.view = null;
  });
}

function formError(form, text) {
  form.querySelector('.error').textContent = text || '';
}

function submitting(formId, fn) {
  const form = $(formId);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    formError(form, '');
    const button = form.querySelector('[type=submit]');
    button.disabled = true;
    try {
      const out = await fn(form);
      for (const n of out?.notes || []) notice(n);
      form.closest('dialog').close();
      await refresh();
    } catch (e) {
      formError(form, e.message);
    } finally {
      button.disabled = false;
    }
  });
}

$('show-id').addEventListener('click', () => {
  $('my-id').textContent = S.status?.device_id || '';
  $('qr').src = '/rest/id/qr.svg';
  const l = S.status?.listening || [];
  $('my-listen').textContent = l.length ? `Listening on ${l.join(', ')}` : 'Not listening directly (reached through relays or by dialling out).';
  $('dlg-id').showModal();
});

$('copy-id').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText(S.status.device_id);
    notice('Device ID copied');
  } catch {
    const r = document.createRange();
    r.selectNodeContents($('my-id'));
    getSelection().removeAllRanges();
    getSelection().addRange(r);
    notice('Press Ctrl+C to copy the selected ID');
  }
});

$('add-device').addEventListener('click', () => {
  $('device-form').reset();
  formError($('device-form'), '');
  $('dlg-device').showModal();
});

const list = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

submitting('device-form', () => api('POST', '/rest/devices', {
  id: $('device-id').value.trim(),
  name: $('device-name-in').value.trim() || null,
  addresses: list($('device-addresses').value),
}));

$('add-folder').addEventListener('click', () => {
  $('folder-form').reset();
  formError($('folder-form'), '');
  const box = $('folder-share');
  box.replaceChildren(el('legend', {}, 'Share with'));
  for (const d of S.status?.devices || []) {
    box.append(el('label', { class: 'check' }, el('input', { type: 'checkbox', value: d.id, name: 'share' }), ` ${d.name || short(d.id)}`));
  }
  if (!(S.status?.devices || []).length) box.append(el('p', { class: 'muted' }, 'No devices yet.'));
  $('dlg-folder').showModal();
});

submitting('folder-form', (form) => api('POST', '/rest/folders', {
  id: $('folder-id').value.trim(),
  path: $('folder-path').value.trim(),
  create: $('folder-create').checked,
  type: $('folder-type').value,
  versioning: $('folder-versioning').value.trim() || null,
  devices: [...form.querySelectorAll('input[name=share]:checked')].map((i) => i.value),
}));

let editing = null;
function editFolder(f) {
  editing = f.id;
  const form = $('edit-form');
  formError(form, '');
  $('edit-h').textContent = `Edit folder ${f.id}`;
  $('edit-type').value = f.type;
  $('edit-versioning').value = f.versioning;
  const share = $('edit-share');
  share.replaceChildren(el('option', { value: '' }, '(no one new)'));
  for (const d of S.status.devices.filter((d) => !f.devices.includes(d.id))) {
    share.append(el('option', { value: d.id }, d.name || short(d.id)));
  }
  $('dlg-edit').showModal();
}

submitting('edit-form', async () => {
  const out = await api('PATCH', `/rest/folders/${enc(editing)}`, {
    type: $('edit-type').value,
    versioning: $('edit-versioning').value.trim(),
  });
  const device = $('edit-share').value;
  if (device) await api('POST', `/rest/folders/${enc(editing)}/share`, { device });
  return out;
});

$('edit-remove').addEventListener('click', async (e) => {
  if (!confirm(`Stop syncing folder ${editing}? Its files stay on disk.`)) return;
  const out = await act(e.target, () => api('DELETE', `/rest/folders/${enc(editing)}`), 'Folder removed');
  if (out) $('dlg-edit').close();
});

let accepting = null;
function acceptFolder(f) {
  accepting = f;
  const form = $('accept-folder-form');
  formError(form, '');
  $('accept-folder-what').textContent = `${deviceName(f.device)} shares “${f.label || f.id}” (${f.id}) with this device.`;
  $('accept-folder-path').value = '';
  $('dlg-accept-folder').showModal();
}

submitting('accept-folder-form', () => api('POST', `/rest/pending/folders/${enc(accepting.id)}/accept`, {
  device: accepting.device,
  path: $('accept-folder-path').value.trim(),
}));

// ---------- views (one dialog, its body filled by the view) ----------

// Opens the view dialog; `fill` (re)draws its body, and is run again on
// every refresh unless `still` (views with something being typed).
async function openView(title, fill, still) {
  $('view-h').textContent = title;
  $('view-body').replaceChildren(el('p', { class: 'muted' }, 'Loading…'));
  S.view = still ? null : fill;
  const d = $('dlg-view');
  if (!d.open) d.showModal();
  try {
    await fill();
  } catch (e) {
    $('view-body').replaceChildren(el('p', { class: 'error' }, e.message));
  }
}

function table(head, rows) {
  return el('div', { class: 'table-wrap' }, el('table', {},
    el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col' }, h)))),
    el('tbody', {}, rows)));
}

async function viewNeed(id) {
  const [need, st] = await Promise.all([api('GET', `/rest/folders/${enc(id)}/need?limit=500`), api('GET', '/rest/status')]);
  const f = st.folders.find((x) => x.id === id);
  const body = [];
  if (f?.pull_errors.length) {
    body.push(el('h3', {}, 'Failed items'),
      table(['Item', 'Problem'], f.pull_errors.map((e) => el('tr', { 'data-testid': 'failed-item' }, el('td', {}, e.name || '(the pass)'), el('td', {}, `${e.kind}: ${e.message}`)))));
  }
  body.push(el('h3', {}, `Needed here (${need.length})`));
  body.push(need.length ? table(['Item', 'Size', 'Modified', 'From'], need.map((n) => el('tr', { 'data-testid': 'need-item' },
    el('td', {}, n.name + (n.deleted ? ' (deleted)' : '')), el('td', {}, bytes(n.size)), el('td', {}, when(n.modified)),
    el('td', {}, n.from.map(deviceName).join(', ') || 'no connected device has it'))))
    : el('p', { class: 'muted' }, 'Nothing: this folder has everything.'));
  $('view-body').replaceChildren(...body);
}

async function viewConflicts(id) {
  const list = await api('GET', `/rest/folders/${enc(id)}/conflicts`);
  if (!list.length) {
    $('view-body').replaceChildren(el('p', { class: 'muted', 'data-testid': 'no-conflicts' }, 'No conflicts in this folder.'));
    return;
  }
  const resolve = (c, keep) => (e) => act(e.target, () => api('POST', `/rest/folders/${enc(id)}/conflicts/resolve`, { conflict: c.conflict, keep }), 'Conflict resolved');
  $('view-body').replaceChildren(
    el('p', {}, 'Each conflict copy holds the version that lost a concurrent change. Keep the original (the copy is kept as a version), keep the copy (the original is kept as a version), or keep both under clear names.'),
    ...list.map((c) => el('article', { class: 'conflict', 'data-testid': 'conflict', 'data-name': c.original },
      el('h3', {}, c.original),
      el('div', { class: 'sides' },
        el('div', {}, el('h4', {}, 'Original'),
          c.original_exists ? el('p', {}, `${bytes(c.original_size)}, modified ${when(c.original_modified)}`) : el('p', { class: 'muted' }, 'gone')),
        el('div', {}, el('h4', {}, `Conflict copy from ${deviceName(c.device) || c.device}`),
          el('p', {}, `${bytes(c.conflict_size)}, modified ${when(c.conflict_modified)}`),
          el('p', { class: 'muted name' }, c.conflict))),
      el('div', { class: 'actions' },
        el('button', { 'data-keep': 'original', onclick: resolve(c, 'original') }, 'Keep original'),
        el('button', { 'data-keep': 'conflict', onclick: resolve(c, 'conflict') }, 'Keep conflict copy'),
        el('button', { 'data-keep': 'both', onclick: resolve(c, 'both') }, 'Keep both')))));
}

async function viewVersions(id, filter = '') {
  const q = filter ? `?path=${enc(filter)}` : '';
  const versions = await api('GET', `/rest/folders/${enc(id)}/versions${q}`);
  const search = el('input', { id: 'versions-filter', type: 'search', value: filter, placeholder: 'file or directory', 'aria-label': 'Filter by path' });
  const form = el('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); S.view = () => viewVersions(id, search.value.trim()); S.view(); } },
    search, el('button', { type: 'submit' }, 'Show'));
  const restore = (v) => (e) => act(e.target,
    () => api('POST', `/rest/folders/${enc(id)}/restore?path=${enc(v.name)}&at=${v.at}`), `Restored ${v.name}`);
  $('view-body').replaceChildren(form,
    versions.length ? table(['File', 'Kept at', 'Size', ''], versions.map((v) => el('tr', { 'data-testid': 'version', 'data-name': v.name },
      el('td', {}, v.name), el('td', {}, v.at_local || when(v.at)), el('td', {}, bytes(v.size)),
      el('td', {}, el('button', { onclick: restore(v) }, 'Restore')))))
      : el('p', { class: 'muted' }, 'No versions kept' + (filter ? ` under ${filter}` : '') + '.'));
}

async function viewIgnores(id) {
  const ig = await api('GET', `/rest/folders/${enc(id)}/ignores`);
  const text = el('textarea', { id: 'ignores-text', rows: 12, spellcheck: 'false', 'aria-label': 'Ignore patterns, one per line' });
  text.value = ig.text;
  const err = el('p', { class: 'error', role: 'alert', 'data-testid': 'ignores-error' });
  const save = el('button', { class: 'primary', type: 'submit' }, 'Save');
  const form = el('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      err.textContent = '';
      save.disabled = true;
      try {
        const r = await api('PUT', `/rest/folders/${enc(id)}/ignores`, { text: text.value });
        notice(`Saved: ${r.patterns.length} pattern(s)`);
      } catch (x) {
        err.textContent = x.message;
      } finally {
        save.disabled = false;
      }
    },
  },
  el('p', { class: 'hint' }, 'Syncthing’s .stignore syntax: one pattern per line, ! to include, // for comments, #include FILE.'),
  text, err, el('div', { class: 'actions' }, save));
  $('view-body').replaceChildren(form);
}

async function viewDoctor(id, path = '') {
  const q = `?folder=${enc(id)}` + (path ? `&path=${enc(path)}` : '');
  const [d] = await api('GET', `/rest/doctor${q}`);
  const input = el('input', { type: 'text', value: path, placeholder: 'a file (optional)', 'aria-label': 'File to ask about' });
  const form = el('form', { class: 'inline', onsubmit: (e) => { e.preventDefault(); viewDoctor(id, input.value.trim()); } },
    input, el('button', { type: 'submit' }, 'Ask'));
  $('view-body').replaceChildren(form,
    d.in_sync ? el('p', { class: 'ok', 'data-testid': 'doctor-ok' }, `${path || 'The folder'} is in sync.`) : null,
    el('ul', { class: 'findings' }, d.findings.map((f) => el('li', { 'data-code': f.code },
      el('strong', {}, f.message), f.hint ? el('p', { class: 'hint' }, f.hint) : null))));
}

// ---------- start ----------

async function start() {
  try {
    if (await logIn()) await refresh();
  } catch (e) {
    notice(e.message, 'error');
  }
  followEvents();
  // Rates and ETAs move without events.
  setInterval(() => { if (S.csrf) refresh().catch(() => {}); }, 3000);
}

start();
