/* Tipline's service worker: keeps the form's shell for offline use and sends queued tips.
 * Rendered by app/web/views.py with the shell's content version, so any change to the
 * form's files installs a new worker and a fresh cache.
 */
'use strict';

const VERSION = {{ version|tojson }};
const CACHE = 'tipline-shell-' + VERSION;
const SHELL = {{ shell|tojson }};
const PAGES = new Set(['/report', '/status']);
const STATIC_PREFIXES = ['/web/static/', '/static/vendor/leaflet/', '/report/manifest.webmanifest'];
// On a weak signal a page that does not answer soon is served from the cache instead.
const NAVIGATION_TIMEOUT_MS = 4000;

importScripts({{ outbox_url|tojson }});

self.addEventListener('install', (event) => {
  event.waitUntil(
    caches.open(CACHE).then((cache) => cache.addAll(SHELL)).then(() => self.skipWaiting()),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    caches
      .keys()
      .then((keys) =>
        Promise.all(
          keys.filter((k) => k.startsWith('tipline-shell-') && k !== CACHE).map((k) => caches.delete(k)),
        ),
      )
      .then(() => self.clients.claim()),
  );
});

/* The page from the network when it answers in time (and keep it), else the cached copy;
   a server error (5xx: the database away, a restart) also falls back to the cached copy,
   whose queue keeps tips until the server is back. */
function networkFirst(request, key) {
  return caches.open(CACHE).then(
    (cache) =>
      new Promise((resolve, reject) => {
        let settled = false;
        const fromCache = () =>
          cache.match(key).then((hit) => {
            if (hit && !settled) {
              settled = true;
              resolve(hit);
            }
            return hit;
          });
        const timer = setTimeout(fromCache, NAVIGATION_TIMEOUT_MS);
        fetch(request).then(
          (response) => {
            clearTimeout(timer);
            if (response.ok) cache.put(key, response.clone());
            if (response.status >= 500) {
              fromCache().then((hit) => {
                if (!hit && !settled) {
                  settled = true;
                  resolve(response);
                }
              });
            } else if (!settled) {
              settled = true;
              resolve(response);
            }
          },
          (error) => {
            clearTimeout(timer);
            fromCache().then((hit) => {
              if (!hit && !settled) {
                settled = true;
                reject(error);
              }
            });
          },
        );
      }),
  );
}

/* Versioned files never change under one URL: the cache answers, the network fills gaps. */
async function cacheFirst(request) {
  const cache = await caches.open(CACHE);
  const hit = await cache.match(request);
  if (hit) return hit;
  const response = await fetch(request);
  if (response.ok) cache.put(request, response.clone());
  return response;
}

self.addEventListener('fetch', (event) => {
  const request = event.request;
  if (request.method !== 'GET') return;
  const url = new URL(request.url);
  if (url.origin !== self.location.origin) return;
  if (PAGES.has(url.pathname) && request.mode === 'navigate') {
    event.respondWith(networkFirst(request, url.pathname));
  } else if (STATIC_PREFIXES.some((prefix) => url.pathname.startsWith(prefix))) {
    event.respondWith(cacheFirst(request));
  }
});

/* Background Sync: the browser wakes the worker when the connection returns. A rejected
   promise asks the browser to try again later, while tips are still waiting. */
self.addEventListener('sync', (event) => {
  if (event.tag !== TiplineOutbox.SYNC_TAG) return;
  event.waitUntil(
    TiplineOutbox.drain({ force: true }).then((result) => {
      if (result.pending) throw new Error('tips are still waiting');
    }),
  );
});
