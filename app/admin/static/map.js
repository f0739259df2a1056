// The map of open tips: grid outlines and tip points from the server, already in the
// datum of the tiles; a click on a point opens the tip. Supervisors place a tip that has
// no location by choosing it in the list and clicking the map, then confirming.
// Text from the server is only ever set with textContent, never as HTML.
(function () {
  "use strict";
  var el = document.getElementById("map");
  if (!el || !window.L || !window.fetch) { return; }
  var COLOURS = { urgent: "#c62828", high: "#ef6c00", normal: "#1565c0", low: "#607d8b" };
  var note = document.getElementById("map-note");
  var map = L.map(el, { zoomControl: true }).setView([40.6406, 122.5052], 12);
  var tiles = el.getAttribute("data-tiles");
  if (tiles) { L.tileLayer(tiles, { maxZoom: 19 }).addTo(map); }

  function getJSON(url) {
    return fetch(url, {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (r) {
      if (!r.ok) { throw new Error(String(r.status)); }
      return r.json();
    });
  }

  function label(text) {
    var span = document.createElement("span");
    span.textContent = text;
    return span;
  }

  var tipUrl = el.getAttribute("data-tip-url");
  getJSON(el.getAttribute("data-grids-url")).then(function (grids) {
    var layer = L.geoJSON(grids, {
      style: { color: "#555", weight: 1, fill: true, fillOpacity: 0.03 },
      onEachFeature: function (f, lyr) {
        lyr.bindTooltip(label(f.properties.code + " " + f.properties.name), { sticky: true });
      }
    }).addTo(map);
    if (layer.getLayers().length) { map.fitBounds(layer.getBounds()); }
    layer.bringToBack();
  }).catch(function () {});

  getJSON(el.getAttribute("data-tips-url")).then(function (tips) {
    L.geoJSON(tips, {
      pointToLayer: function (f, latlng) {
        var p = f.properties;
        var marker = L.circleMarker(latlng, {
          radius: p.priority === "urgent" ? 9 : 7,
          color: "#fff", weight: 2, fillOpacity: 0.9,
          fillColor: COLOURS[p.priority] || COLOURS.normal
        });
        marker.bindTooltip(label(p.ref + " · " + p.label));
        marker.on("click", function () { window.location.href = tipUrl.replace("T-XXXXXX", p.ref); });
        return marker;
      }
    }).addTo(map);
    if (tips.truncated && note) { note.textContent = el.getAttribute("data-text-truncated"); }
  }).catch(function () {});

  // Placing a tip that has no location.
  var form = document.getElementById("place-form");
  if (!form) { return; }
  var placeUrl = el.getAttribute("data-place-url");
  var status = form.querySelector(".place-status");
  var confirmButton = form.querySelector("button[type=submit]");
  var pin = null;
  var placing = null;

  function stop() {
    placing = null;
    form.hidden = true;
    confirmButton.disabled = true;
    if (pin) { map.removeLayer(pin); pin = null; }
    el.classList.remove("placing");
  }

  Array.prototype.forEach.call(document.querySelectorAll(".place-start"), function (button) {
    button.addEventListener("click", function () {
      stop();
      placing = button.getAttribute("data-ref");
      form.action = placeUrl.replace("T-XXXXXX", placing);
      status.textContent = el.getAttribute("data-text-placing").replace("{ref}", placing);
      form.hidden = false;
      el.classList.add("placing");
      el.scrollIntoView({ block: "nearest" });
    });
  });
  form.querySelector(".place-cancel").addEventListener("click", stop);

  map.on("click", function (e) {
    if (!placing) { return; }
    if (pin) { pin.setLatLng(e.latlng); } else { pin = L.marker(e.latlng).addTo(map); }
    form.elements.latitude.value = e.latlng.lat.toFixed(6);
    form.elements.longitude.value = e.latlng.lng.toFixed(6);
    confirmButton.disabled = false;
  });
}());
