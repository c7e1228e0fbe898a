// gridsight inspector app's service worker: the shell (page, script, style, manifest, icon)
// is cached so the app opens without a network; the list of orders is fetched from the
// network first and the last answer is kept for when there is none. Updates are not
// cached here: the page keeps them in its own queue and sends them when it is back online.
"use strict";

const SHELL = "gridsight-inspector-shell-v1";
const DATA = "gridsight-inspector-data-v1";
const FILES = ["/inspector/", "/inspector/app.js", "/inspector/app.css", "/inspector/manifest.webmanifest", "/inspector/icon.svg"];

self.addEventListener("install", (e) => {
  e.waitUntil(caches.open(SHELL).then((c) => c.addAll(FILES)).then(() => self.skipWaiting()));
});

self.addEventListener("activate", (e) => {
  e.waitUntil(
    caches.keys()
      .then((keys) => Promise.all(keys.filter((k) => k !== SHELL && k !== DATA).map((k) => caches.delete(k))))
      .then(() => self.clients.claim()),
  );
});

self.addEventListener("fetch", (e) => {
  const url = new URL(e.request.url);
  if (e.request.method !== "GET" || url.origin !== location.origin) return;
  if (FILES.includes(url.pathname)) {
    // The shell: the network when there is one (a new version), else the cache.
    e.respondWith(
      fetch(e.request)
        .then((r) => { const copy = r.clone(); caches.open(SHELL).then((c) => c.put(e.request, copy)); return r; })
        .catch(() => caches.match(e.request)),
    );
  } else if (url.pathname === "/inspector/api/orders" || url.pathname === "/inspector/api/me"
             || /^\/inspector\/api\/orders\/[^/]+$/.test(url.pathname)
             || /^\/inspector\/api\/orders\/[^/]+\/(snapshot|report)\.jpg$/.test(url.pathname)) {
    // The last orders and their pictures, for a phone without a network.
    e.respondWith(
      fetch(e.request)
        .then((r) => {
          if (r.ok) { const copy = r.clone(); caches.open(DATA).then((c) => c.put(e.request, copy)); }
          return r;
        })
        .catch(() => caches.match(e.request).then((r) => r || Response.error())),
    );
  }
});
