// Live refresh of the triage queue: every 10 s ask which tips arrived since the page
// was drawn, and show a banner (urgent ones by reference) instead of reloading under
// the user's thumb. Text is set with textContent only: nothing from the server is HTML.
(function () {
  "use strict";
  var banner = document.getElementById("live-banner");
  if (!banner || !window.fetch) { return; }
  var url = banner.getAttribute("data-url");
  var since = banner.getAttribute("data-since") || "0";
  var textNew = banner.getAttribute("data-text-new");
  var textUrgent = banner.getAttribute("data-text-urgent");
  var text = banner.querySelector(".live-text");
  var refs = banner.querySelector(".live-refs");
  var PERIOD_MS = 10000;
  var timer = null;

  function show(data) {
    if (!data || !data.new) { return; }
    var message = textNew.replace("{n}", String(data.new));
    if (data.urgent && data.urgent.length) {
      message += " " + textUrgent.replace("{n}", String(data.urgent.length));
    }
    text.textContent = message;
    while (refs.firstChild) { refs.removeChild(refs.firstChild); }
    (data.urgent || []).forEach(function (tip) {
      var link = document.createElement("a");
      link.href = tip.url;
      link.className = "badge prio-urgent";
      link.textContent = tip.ref + (tip.category ? " · " + tip.category : "");
      refs.appendChild(link);
    });
    banner.hidden = false;
    banner.classList.toggle("has-urgent", !!(data.urgent && data.urgent.length));
  }

  function poll() {
    fetch(url + "?since=" + encodeURIComponent(since), {
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      cache: "no-store"
    }).then(function (response) {
      if (response.status === 401) { stop(); window.location.reload(); return null; }
      return response.ok ? response.json() : null;
    }).then(show).catch(function () { /* offline for a moment: try again next time */ });
  }

  function start() { if (timer === null) { timer = window.setInterval(poll, PERIOD_MS); } }
  function stop() { if (timer !== null) { window.clearInterval(timer); timer = null; } }

  document.addEventListener("visibilitychange", function () {
    if (document.hidden) { stop(); } else { poll(); start(); }
  });
  start();
}());
