/* The report form: photos, location, validation, the outbox list, sign-in and the worker.
 * Texts come from the server's catalogue through data-messages on <body>; nothing here
 * writes HTML or inline styles, so the page runs under a strict Content-Security-Policy.
 */
(function () {
  'use strict';

  const Outbox = self.TiplineOutbox;
  const Photos = self.TiplinePhotos;
  const Datum = self.TiplineDatum;
  const body = document.body;
  const MESSAGES = JSON.parse(body.dataset.messages || '{}');
  const LOCALE = body.dataset.locale === 'en' ? 'en' : 'zh-CN';
  const form = document.getElementById('tip-form');
  const MAX_PHOTOS = Number(form.dataset.maxPhotos || 10);
  const TILES = { url: form.dataset.tileUrl || '', datum: form.dataset.tileDatum || 'wgs84' };
  const NUDGE_DEG = 0.0001; // about 10 m: one arrow-key step of the pin
  const STATUS_CHECKS = 20; // follow up at most this many recent tips per visit

  const $ = (id) => document.getElementById(id);
  const state = {
    photos: [], // [{blob, name, preview, shrunk}]
    pending: [], // photo shrinking in progress
    location: null, // {lat, lon, accuracy, source} in WGS-84
    profile: null,
    replacing: null, // key of a failed record being fixed
    submitting: false,
    lastKey: null, // the record the result panel follows
    statuses: {}, // ref -> reporter-side status
  };
  let map = null;
  let marker = null;
  let circle = null;
  let timer = null;

  function msg(key, params) {
    let text = MESSAGES[key] || key;
    for (const [name, value] of Object.entries(params || {})) {
      text = text.split('{' + name + '}').join(String(value));
    }
    return text;
  }

  /* Build an element with text and attributes (never innerHTML). */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === 'text') node.textContent = value;
      else if (name === 'className') node.className = value;
      else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? '' : value);
    }
    for (const child of children) if (child) node.append(child);
    return node;
  }

  /* The server's refusal in the page's language when the catalogue knows its code. */
  function refusal(error) {
    return MESSAGES['web.refused_' + error.code] || error.message;
  }

  function setText(node, text) {
    node.textContent = text || '';
    node.hidden = !text;
  }

  function categoryName(code) {
    const input = form.querySelector('input[name="category"][value="' + CSS.escape(code || '') + '"]');
    return input ? input.closest('label').textContent.trim() : code;
  }

  function when(ms) {
    return new Date(ms).toLocaleString(LOCALE, { dateStyle: 'short', timeStyle: 'short' });
  }

  /* ---------- photos ---------- */

  function addFiles(fileList) {
    const files = Array.from(fileList || []);
    const room = MAX_PHOTOS - state.photos.length - state.pending.length;
    if (files.length > room) setText($('photo-status'), msg('web.photos_too_many', { n: MAX_PHOTOS }));
    for (const file of files.slice(0, Math.max(0, room))) {
      const job = Photos.shrink(file).then((photo) => {
        state.photos.push(photo);
        state.pending = state.pending.filter((j) => j !== job);
        renderPhotos();
      });
      state.pending.push(job);
    }
    renderPhotos();
  }

  function renderPhotos() {
    const list = $('photo-list');
    list.replaceChildren();
    state.photos.forEach((photo, index) => {
      const n = index + 1;
      const label = msg('web.photos_preview', { n });
      const figure = photo.preview
        ? el('img', { src: photo.preview, alt: label, width: 80, height: 80, className: 'thumb' })
        : el('span', { className: 'thumb thumb-raw', text: label });
      list.append(
        el(
          'li',
          { className: 'photo' },
          figure,
          photo.shrunk ? null : el('span', { className: 'hint', text: msg('web.photos_raw') }),
          el('button', {
            type: 'button',
            className: 'button small secondary',
            text: msg('web.photos_remove', { n }),
            onclick: () => {
              state.photos.splice(index, 1);
              renderPhotos();
              $('photo-gallery').focus();
            },
          }),
        ),
      );
    });
    let status = '';
    if (state.pending.length) status = msg('web.photos_processing');
    else if (state.photos.length) status = msg('web.photos_count', { n: state.photos.length });
    $('photo-status').textContent = status;
  }

  /* ---------- location ---------- */

  function display(lat, lon) {
    const [x, y] = Datum.fromWgs84(lon, lat, TILES.datum);
    return [y, x];
  }

  function setLocation(lat, lon, accuracy, source) {
    state.location = { lat, lon, accuracy, source };
    const status =
      source === 'device' && accuracy !== null
        ? msg('web.location_accuracy', { m: Math.round(accuracy) })
        : msg('web.location_moved');
    $('location-status').textContent = status;
    $('location-clear').hidden = false;
    showMap();
    lookupGrid(lat, lon);
  }

  function clearLocation() {
    state.location = null;
    $('location-status').textContent = '';
    setText($('location-grid'), '');
    $('location-clear').hidden = true;
    $('map').hidden = true;
    $('locate').focus();
  }

  function onPinMoved() {
    const at = marker.getLatLng();
    const [lon, lat] = Datum.toWgs84(at.lng, at.lat, TILES.datum);
    if (circle) {
      circle.remove();
      circle = null;
    }
    setLocation(lat, lon, null, 'map');
  }

  function showMap() {
    const box = $('map');
    box.hidden = false;
    if (!self.L) return; // without Leaflet the position still counts; only the map is missing
    const { lat, lon, accuracy, source } = state.location;
    const here = display(lat, lon);
    if (!map) {
      map = L.map(box, { zoomControl: true, keyboard: true, attributionControl: Boolean(TILES.url) });
      map.setView(here, 17); // before the pin: a marker is drawn only on a map with a view
      if (TILES.url) L.tileLayer(TILES.url, { maxZoom: 19 }).addTo(map);
      marker = L.marker(here, {
        draggable: true,
        keyboard: true,
        title: msg('web.location_pin'),
        alt: msg('web.location_pin'),
      }).addTo(map);
      marker.on('dragend', onPinMoved);
      marker.getElement().addEventListener('keydown', nudge);
    } else {
      map.invalidateSize();
      marker.setLatLng(here);
      if (source === 'device') map.setView(here, map.getZoom());
    }
    if (source === 'device' && accuracy) {
      if (circle) circle.setLatLng(here).setRadius(accuracy);
      else circle = L.circle(here, { radius: accuracy, interactive: false, weight: 1 }).addTo(map);
    }
  }

  /* Arrow keys move the focused pin, so the map works without a pointer. */
  function nudge(event) {
    const steps = { ArrowUp: [1, 0], ArrowDown: [-1, 0], ArrowLeft: [0, -1], ArrowRight: [0, 1] };
    const step = steps[event.key];
    if (!step) return;
    event.preventDefault();
    event.stopPropagation();
    const at = marker.getLatLng();
    marker.setLatLng([at.lat + step[0] * NUDGE_DEG, at.lng + step[1] * NUDGE_DEG]);
    onPinMoved();
  }

  async function lookupGrid(lat, lon) {
    const out = $('location-grid');
    setText(out, '');
    if (!navigator.onLine) return;
    try {
      const response = await fetch('/api/v1/grids/lookup?lat=' + lat + '&lon=' + lon, { credentials: 'omit' });
      if (!response.ok) return;
      const grid = await response.json();
      const now = state.location;
      if (now && now.lat === lat && now.lon === lon) setText(out, msg('web.location_grid', { name: grid.name }));
    } catch (e) {
      // The grid name is a courtesy; the server routes the tip either way.
    }
  }

  function locate() {
    const status = $('location-status');
    if (!navigator.geolocation) {
      status.textContent = msg('web.location_unsupported');
      return;
    }
    status.textContent = msg('web.location_locating');
    navigator.geolocation.getCurrentPosition(
      (pos) => setLocation(pos.coords.latitude, pos.coords.longitude, pos.coords.accuracy, 'device'),
      () => {
        status.textContent = msg('web.location_failed');
      },
      { enableHighAccuracy: true, timeout: 20000, maximumAge: 60000 },
    );
  }

  /* ---------- validation and submit ---------- */

  function showErrors(errors) {
    const summary = $('error-summary');
    const list = el('ul');
    for (const [field, text] of errors) {
      const target = field === 'category' ? form.querySelector('input[name="category"]') : $(field);
      list.append(el('li', {}, target ? el('a', { href: '#' + target.id, text }) : text));
      if (target) target.setAttribute('aria-invalid', 'true');
      const slot = $(field + '-error');
      if (slot) setText(slot, text);
    }
    summary.replaceChildren(el('p', { text: msg('web.error_summary') }), list);
    summary.hidden = false;
    summary.focus();
  }

  function clearErrors() {
    $('error-summary').hidden = true;
    for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
    for (const node of form.querySelectorAll('.field-error')) setText(node, '');
  }

  function collect() {
    const chosen = form.querySelector('input[name="category"]:checked');
    const fields = {
      category: chosen ? chosen.value : '',
      description: $('description').value.trim(),
      address: $('address').value.trim(),
    };
    if (state.location) {
      fields.latitude = state.location.lat.toFixed(7);
      fields.longitude = state.location.lon.toFixed(7);
      fields.location_source = state.location.source;
      if (state.location.accuracy !== null) fields.accuracy_m = Math.round(state.location.accuracy);
    }
    if (state.profile && $('anonymous').checked) fields.anonymous = 'true';
    return fields;
  }

  async function submit(event) {
    event.preventDefault();
    if (state.submitting) return; // a double tap must not make two tips
    state.submitting = true;
    try {
      await queueTip();
    } finally {
      state.submitting = false;
    }
  }

  async function queueTip() {
    clearErrors();
    await Promise.all(state.pending);
    const fields = collect();
    const errors = [];
    if (!fields.category) errors.push(['category', msg('web.error_category')]);
    if (!fields.description && !state.photos.length) errors.push(['description', msg('web.error_content')]);
    if (errors.length) {
      showErrors(errors);
      return;
    }
    const photos = state.photos.map((p) => ({ blob: p.blob, name: p.name }));
    const token = state.profile && !fields.anonymous ? state.profile.token : null;
    const item = await Outbox.create(fields, photos, token);
    if (state.replacing) await Outbox.remove(state.replacing);
    state.replacing = null;
    state.lastKey = item.key;
    resetForm();
    await renderQueue();
    $('result').focus();
    await drainNow(true);
  }

  function resetForm() {
    form.reset();
    state.photos = [];
    renderPhotos();
    if (state.location) clearLocation();
  }

  /* ---------- the outbox list and the result panel ---------- */

  function stateText(item) {
    if (item.state === 'failed') return msg('web.queue_state_failed');
    return msg('web.queue_state_' + item.state);
  }

  function details(item) {
    const dl = el('dl', { className: 'facts' });
    const add = (term, value, className) => {
      if (value) dl.append(el('dt', { text: term }), el('dd', { text: value, className }));
    };
    add(msg('web.queue_ref'), item.ref, 'ref');
    add(msg('web.queue_receipt'), item.receipt, 'receipt');
    const status = item.ref && (state.statuses[item.ref] || item.status);
    if (status) add(msg('web.queue_status'), msg('status.' + status), 'status');
    return dl;
  }

  function actions(item) {
    const box = el('div', { className: 'actions' });
    if (item.state === 'failed') {
      box.append(
        el('button', { type: 'button', className: 'button small', text: msg('web.queue_fix'), onclick: () => fix(item.key) }),
        el('button', { type: 'button', className: 'button small secondary', text: msg('web.queue_retry'), onclick: () => retry(item.key) }),
      );
    }
    if (item.state === 'queued') {
      box.append(el('button', { type: 'button', className: 'button small secondary', text: msg('web.queue_retry'), onclick: () => retry(item.key) }));
    }
    if (item.state === 'sent' && item.receipt) {
      box.append(el('a', { className: 'button small secondary', href: '/status?ref=' + encodeURIComponent(item.ref), text: msg('web.queue_follow_up') }));
    }
    if (item.state !== 'sending') {
      const label = item.state === 'sent' ? msg('web.queue_forget') : msg('web.queue_delete');
      box.append(el('button', { type: 'button', className: 'button small secondary', text: label, onclick: () => forget(item) }));
    }
    return box.childElementCount ? box : null;
  }

  function renderItem(item) {
    const photos = item.state === 'sent' ? item.photo_count : item.photos.length;
    return el(
      'li',
      { className: 'item state-' + item.state, 'data-key': item.key },
      el(
        'p',
        { className: 'item-head' },
        el('strong', { text: categoryName(item.fields.category) }),
        ' · ',
        el('time', { datetime: new Date(item.created_at).toISOString(), text: when(item.created_at) }),
        photos ? ' · ' + msg('web.queue_photos', { n: photos }) : null,
      ),
      el('p', { className: 'item-state', text: stateText(item) }),
      item.error ? el('p', { className: 'item-error', text: refusal(item.error) }) : null,
      details(item),
      actions(item),
    );
  }

  function renderResult(item) {
    const panel = $('result');
    if (!item) {
      panel.hidden = true;
      return;
    }
    const lines = [];
    if (item.state === 'sent') {
      lines.push(el('p', { className: 'result-title', text: msg('web.result_sent', { ref: item.ref }) }));
      if (item.receipt) {
        lines.push(details(item), el('p', { className: 'hint', text: msg('web.queue_receipt_hint') }));
      }
    } else if (item.state === 'failed') {
      lines.push(el('p', { className: 'result-title', text: msg('web.result_failed', { message: refusal(item.error) }) }));
    } else {
      lines.push(el('p', { className: 'result-title', text: msg('web.result_queued') }));
    }
    panel.className = 'result result-' + item.state;
    panel.replaceChildren(...lines);
    panel.hidden = false;
  }

  /* Redraw the list, keeping keyboard focus on the same button of the same tip. */
  async function renderQueue() {
    const items = await Outbox.list();
    const list = $('queue');
    const focused = list.contains(document.activeElement) ? document.activeElement : null;
    const where = focused && focused.closest('li');
    const key = where && where.dataset.key;
    const index = where ? Array.from(where.querySelectorAll('button, a')).indexOf(focused) : -1;
    list.replaceChildren(...items.map(renderItem));
    if (key) {
      const again = list.querySelector('li[data-key="' + CSS.escape(key) + '"]');
      const controls = again ? again.querySelectorAll('button, a') : [];
      if (controls.length) controls[Math.min(Math.max(index, 0), controls.length - 1)].focus();
      else $('queue-heading').focus();
    }
    $('queue-empty').hidden = items.length > 0;
    if (state.lastKey) renderResult(items.find((i) => i.key === state.lastKey));
  }

  async function retry(key) {
    await Outbox.retry(key);
    state.lastKey = key;
    await renderQueue();
    await drainNow(true);
  }

  async function forget(item) {
    if (item.state !== 'sent' && !window.confirm(msg('web.queue_delete_confirm'))) return;
    await Outbox.remove(item.key);
    if (state.lastKey === item.key) state.lastKey = null;
    await renderQueue();
  }

  /* Put a refused tip back into the form; sending it again makes a new record and key. */
  async function fix(key) {
    const item = await Outbox.get(key);
    if (!item) return;
    resetForm();
    const chosen = form.querySelector('input[name="category"][value="' + CSS.escape(item.fields.category || '') + '"]');
    if (chosen) chosen.checked = true;
    $('description').value = item.fields.description || '';
    $('address').value = item.fields.address || '';
    $('anonymous').checked = item.fields.anonymous === 'true';
    if (item.fields.latitude && item.fields.longitude) {
      const accuracy = item.fields.accuracy_m ? Number(item.fields.accuracy_m) : null;
      setLocation(Number(item.fields.latitude), Number(item.fields.longitude), accuracy, item.fields.location_source || 'device');
    }
    state.photos = item.photos.map((p) => ({ blob: p.blob, name: p.name, preview: null, shrunk: true }));
    renderPhotos();
    state.replacing = key;
    if (item.error && item.error.errors) {
      const known = Object.entries(item.error.errors).filter(([f]) => $(f) || f === 'category');
      if (known.length) showErrors(known.map(([f, texts]) => [f, [].concat(texts).join(' ')]));
    }
    $('description').focus();
  }

  /* ---------- sending ---------- */

  async function drainNow(force) {
    clearTimeout(timer);
    let result = null;
    try {
      result = await Outbox.drain({ force });
    } finally {
      await renderQueue();
    }
    if (result && result.next_at) {
      timer = setTimeout(() => drainNow(false), Math.max(0, result.next_at - Date.now()) + 50);
    }
  }

  async function refreshStatuses() {
    if (!navigator.onLine) return;
    const sent = (await Outbox.list()).filter((i) => i.state === 'sent').slice(0, STATUS_CHECKS);
    let changed = false;
    for (const item of sent) {
      const headers = {};
      if (item.receipt) headers['X-Tip-Receipt'] = item.receipt;
      else if (state.profile) headers.Authorization = 'Bearer ' + state.profile.token;
      else continue;
      try {
        const response = await fetch('/api/v1/tips/' + encodeURIComponent(item.ref), { headers, credentials: 'omit' });
        if (!response.ok) continue;
        const tip = await response.json();
        if (state.statuses[item.ref] !== tip.status) {
          state.statuses[item.ref] = tip.status;
          changed = true;
        }
      } catch (e) {
        return;
      }
    }
    if (changed) await renderQueue();
  }

  function showConnection() {
    $('offline-banner').hidden = navigator.onLine;
  }

  /* ---------- volunteers' sign-in ---------- */

  async function renderProfile() {
    state.profile = await Outbox.getProfile();
    const signedIn = Boolean(state.profile);
    $('signed-out').hidden = signedIn;
    $('signed-in').hidden = !signedIn;
    $('anonymous-row').hidden = !signedIn;
    $('who').hidden = !signedIn;
    if (!signedIn) return;
    const who = msg('web.signin_as', { pseudonym: state.profile.pseudonym });
    $('who').textContent = who;
    $('signin-who').textContent = who;
    if (!navigator.onLine) return;
    try {
      const response = await fetch('/api/v1/me', {
        headers: { Authorization: 'Bearer ' + state.profile.token },
        credentials: 'omit',
      });
      if (!response.ok) return;
      const me = await response.json();
      if (me.points && me.points.balance !== undefined) {
        setText($('signin-points'), msg('web.signin_points', { balance: me.points.balance }));
      }
    } catch (e) {
      // Points are shown when the server can be reached.
    }
  }

  async function signIn(event) {
    event.preventDefault();
    const error = $('signin-error');
    setText(error, '');
    const code = $('invite').value.trim();
    if (!code) return;
    if (!navigator.onLine) {
      setText(error, msg('web.signin_offline'));
      return;
    }
    try {
      const response = await fetch('/api/v1/reporters', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ invite: code }),
        credentials: 'omit',
      });
      const data = await response.json().catch(() => ({}));
      if (response.status !== 201) {
        const reason = data.code ? refusal(data) : String(response.status);
        setText(error, msg('web.signin_failed', { message: reason }));
        $('invite').focus();
        return;
      }
      await Outbox.setProfile({ token: data.token, pseudonym: data.pseudonym, role: data.role });
      $('invite').value = '';
      await renderProfile();
      $('signin-who').focus();
    } catch (e) {
      setText(error, msg('web.signin_offline'));
    }
  }

  async function signOut() {
    if (!window.confirm(msg('web.signin_signout_confirm'))) return;
    await Outbox.clearProfile();
    setText($('signin-points'), '');
    await renderProfile();
    $('invite').focus();
  }

  /* ---------- wiring ---------- */

  form.addEventListener('submit', submit);
  $('photo-camera').addEventListener('change', (e) => {
    addFiles(e.target.files);
    e.target.value = '';
  });
  $('photo-gallery').addEventListener('change', (e) => {
    addFiles(e.target.files);
    e.target.value = '';
  });
  $('locate').addEventListener('click', locate);
  $('location-clear').addEventListener('click', clearLocation);
  $('signin-form').addEventListener('submit', signIn);
  $('signout').addEventListener('click', signOut);
  window.addEventListener('online', () => {
    showConnection();
    drainNow(true).then(refreshStatuses);
  });
  window.addEventListener('offline', showConnection);
  Outbox.onChange(() => renderQueue());

  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register(body.dataset.serviceWorker, { scope: '/' }).catch(() => {
      // Without a worker the page still queues and sends while it is open.
    });
  }
  showConnection();
  renderProfile()
    .then(() => drainNow(true))
    .then(refreshStatuses);
})();
