/* The outbox: tips kept on this phone (IndexedDB) until the server has them, sent exactly once.
 *
 * Loaded by the page and by the service worker (importScripts), so it touches no DOM.
 * Each tip is one record keyed by its Idempotency-Key (crypto.randomUUID): every retry
 * sends the same key, so a retry after a lost response gets the original answer back
 * instead of making a second tip. States: queued → sending → sent | failed (a 4xx other
 * than 408/429: kept with the server's message so the volunteer can fix and resend).
 * A Web Lock keeps the page and the worker from sending at the same time.
 */
(function (global) {
  'use strict';

  const DB_NAME = 'tipline';
  const DB_VERSION = 1;
  const ITEMS = 'outbox';
  const PROFILE = 'profile';
  const PROFILE_KEY = 'reporter';
  const LOCK = 'tipline-outbox';
  const SYNC_TAG = 'tipline-outbox';
  const TIPS_URL = '/api/v1/tips';
  const BASE_DELAY_MS = 2000;
  const MAX_DELAY_MS = 5 * 60 * 1000;
  const PENDING = new Set(['queued', 'sending']);
  const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('tipline-outbox') : null;

  let dbPromise = null;

  function openDb() {
    if (!dbPromise) {
      dbPromise = new Promise((resolve, reject) => {
        const request = indexedDB.open(DB_NAME, DB_VERSION);
        request.onupgradeneeded = () => {
          const db = request.result;
          if (!db.objectStoreNames.contains(ITEMS)) db.createObjectStore(ITEMS, { keyPath: 'key' });
          if (!db.objectStoreNames.contains(PROFILE)) db.createObjectStore(PROFILE);
        };
        request.onsuccess = () => resolve(request.result);
        request.onerror = () => reject(request.error);
      });
    }
    return dbPromise;
  }

  function done(request) {
    return new Promise((resolve, reject) => {
      request.onsuccess = () => resolve(request.result);
      request.onerror = () => reject(request.error);
    });
  }

  async function read(storeName, fn) {
    const db = await openDb();
    return done(fn(db.transaction(storeName, 'readonly').objectStore(storeName)));
  }

  /* Resolve only once the write is on disk ("strict"): a tip is never reported saved before it is. */
  async function write(storeName, fn) {
    const db = await openDb();
    await new Promise((resolve, reject) => {
      const tx = db.transaction(storeName, 'readwrite', { durability: 'strict' });
      fn(tx.objectStore(storeName));
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
      tx.onabort = () => reject(tx.error || new Error('transaction aborted'));
    });
    if (channel) channel.postMessage({ type: 'changed' });
  }

  function list() {
    return read(ITEMS, (store) => store.getAll()).then((items) =>
      items.sort((a, b) => b.created_at - a.created_at),
    );
  }

  function get(key) {
    return read(ITEMS, (store) => store.get(key));
  }

  function put(item) {
    return write(ITEMS, (store) => store.put(item)).then(() => item);
  }

  function remove(key) {
    return write(ITEMS, (store) => store.delete(key));
  }

  function getProfile() {
    return read(PROFILE, (store) => store.get(PROFILE_KEY)).then((p) => p || null);
  }

  function setProfile(profile) {
    return write(PROFILE, (store) => store.put(profile, PROFILE_KEY));
  }

  function clearProfile() {
    return write(PROFILE, (store) => store.delete(PROFILE_KEY));
  }

  /* A random (version 4) UUID; crypto.randomUUID exists only in secure contexts. */
  function newKey() {
    if (global.crypto.randomUUID) return global.crypto.randomUUID();
    const b = global.crypto.getRandomValues(new Uint8Array(16));
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
    return [hex.slice(0, 8), hex.slice(8, 12), hex.slice(12, 16), hex.slice(16, 20), hex.slice(20)].join('-');
  }

  /* Make a new outbox record; it is sent by drain(). */
  function create(fields, photos, token) {
    // Ask the browser not to evict this origin's storage under pressure: queued tips live here.
    if (global.navigator.storage && global.navigator.storage.persist) {
      global.navigator.storage.persist().catch(() => {});
    }
    return put({
      key: newKey(),
      created_at: Date.now(),
      fields,
      photos, // [{blob, name}]
      token: token || null, // the same credentials on every retry, or the key would change scope
      state: 'queued',
      attempts: 0,
      next_at: 0,
      ref: null,
      receipt: null,
      grid: null,
      error: null,
    });
  }

  /* Ask the browser to wake the worker when the connection returns (where Background Sync exists). */
  async function requestSync() {
    try {
      const registration = global.registration || (global.navigator.serviceWorker &&
        (await global.navigator.serviceWorker.getRegistration()));
      if (registration && registration.sync) await registration.sync.register(SYNC_TAG);
    } catch (e) {
      // No Background Sync here: the page retries on 'online' and on the next visit.
    }
  }

  function retryAfterMs(response) {
    const value = response.headers.get('Retry-After');
    if (!value) return 0;
    const seconds = Number(value);
    if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
    const date = Date.parse(value);
    return Number.isFinite(date) ? Math.max(0, date - Date.now()) : 0;
  }

  async function retryLater(item, waitMs, reason) {
    item.attempts += 1;
    const backoff = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** (item.attempts - 1));
    item.next_at = Date.now() + Math.max(waitMs, backoff + Math.random() * 0.25 * backoff);
    item.state = 'queued';
    item.last_problem = reason;
    await put(item);
    await requestSync();
    return reason;
  }

  function formOf(item) {
    const body = new FormData();
    for (const [name, value] of Object.entries(item.fields)) {
      if (value !== '' && value !== null && value !== undefined) body.append(name, String(value));
    }
    for (const photo of item.photos) body.append('photos', photo.blob, photo.name);
    return body;
  }

  /* Send one record; answer 'sent', 'failed', 'retry' (server busy) or 'offline'. */
  async function send(item) {
    item.state = 'sending';
    await put(item);
    const headers = { 'Idempotency-Key': item.key };
    if (item.token) headers.Authorization = 'Bearer ' + item.token;
    let response;
    try {
      response = await fetch(TIPS_URL, {
        method: 'POST',
        body: formOf(item),
        headers,
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch (e) {
      return retryLater(item, 0, 'offline');
    }
    let data = {};
    try {
      data = await response.json();
    } catch (e) {
      data = {};
    }
    if (response.ok && data.ref) {
      item.state = 'sent';
      item.ref = data.ref;
      item.receipt = data.receipt || null;
      item.grid = data.grid ? data.grid.name : null;
      item.status = data.status || null;
      item.sent_at = Date.now();
      item.photo_count = item.photos.length;
      // Once the server holds the tip, the phone keeps only what the list shows.
      item.photos = [];
      item.fields = { category: item.fields.category };
      item.token = null;
      item.error = null;
      await put(item);
      return 'sent';
    }
    if (response.status === 408 || response.status === 429 || response.status >= 500) {
      return retryLater(item, retryAfterMs(response), 'retry');
    }
    item.state = 'failed';
    item.error = {
      status: response.status,
      code: data.code || null,
      message: data.message || String(response.status),
      errors: data.errors || {},
    };
    await put(item);
    return 'failed';
  }

  /* Send every due record, oldest first; stop at the first sign of being offline.
     `force` says the connection may be back: records that failed for want of one go now,
     while a busy server's Retry-After and backoff are still honoured. */
  async function drainLocked(force) {
    const items = (await list()).filter((i) => PENDING.has(i.state)).reverse();
    for (const item of items) {
      const due = item.next_at <= Date.now() || (force && item.last_problem === 'offline');
      if (!due) continue;
      if ((await send(item)) === 'offline') break;
    }
    const left = (await list()).filter((i) => PENDING.has(i.state));
    return {
      pending: left.length,
      next_at: left.length ? Math.min(...left.map((i) => i.next_at)) : null,
    };
  }

  function drain(options) {
    const force = Boolean(options && options.force);
    const locks = global.navigator && global.navigator.locks;
    if (locks) return locks.request(LOCK, () => drainLocked(force));
    return drainLocked(force);
  }

  /* Put a failed or waiting record back in line with the same key, to be sent now. */
  async function retry(key) {
    const item = await get(key);
    if (!item || item.state === 'sent') return;
    item.state = 'queued';
    item.next_at = 0;
    item.error = null;
    await put(item);
  }

  function onChange(listener) {
    if (channel) channel.addEventListener('message', listener);
  }

  global.TiplineOutbox = {
    SYNC_TAG,
    create,
    list,
    get,
    put,
    remove,
    retry,
    drain,
    requestSync,
    onChange,
    getProfile,
    setProfile,
    clearProfile,
  };
})(self);
