// Pick a landmark's position on a small map: a click fills in latitude and longitude (in
// the tiles' datum, which the form says) and moves the pin. Typing the numbers still works.
(function () {
  "use strict";
  var el = document.getElementById("landmark-map");
  if (!el || !window.L) { return; }
  var form = el.closest("form");
  var map = L.map(el).setView([40.6406, 122.5052], 12);
  var tiles = el.getAttribute("data-tiles");
  if (tiles) { L.tileLayer(tiles, { maxZoom: 19 }).addTo(map); }
  var datum = form.elements.datum;
  var pin = null;

  function showPin() {
    var lat = parseFloat(form.elements.latitude.value);
    var lon = parseFloat(form.elements.longitude.value);
    if (isNaN(lat) || isNaN(lon)) { return; }
    var at = L.latLng(lat, lon);
    if (pin) { pin.setLatLng(at); } else { pin = L.marker(at).addTo(map); }
  }

  if (window.fetch) {
    fetch(el.getAttribute("data-grids-url"), {
      credentials: "same-origin", cache: "no-store", headers: { "Accept": "application/json" }
    }).then(function (r) { return r.ok ? r.json() : null; }).then(function (grids) {
      if (!grids) { return; }
      var layer = L.geoJSON(grids, {
        style: { color: "#555", weight: 1, fillOpacity: 0.03 },
        onEachFeature: function (f, lyr) {
          var span = document.createElement("span");
          span.textContent = f.properties.code + " " + f.properties.name;
          lyr.bindTooltip(span, { sticky: true });
          // Clicking inside a grid also names it in the form when empty (the click then bubbles
          // on to the map, which sets the position).
          lyr.on("click", function () {
            if (!form.elements.grid_code.value) { form.elements.grid_code.value = f.properties.code; }
          });
        }
      }).addTo(map);
      if (layer.getLayers().length) { map.fitBounds(layer.getBounds()); }
    }).catch(function () {});
  }

  map.on("click", function (e) {
    form.elements.latitude.value = e.latlng.lat.toFixed(6);
    form.elements.longitude.value = e.latlng.lng.toFixed(6);
    // The map is drawn in the tiles' datum, so a click is in that datum.
    datum.value = el.getAttribute("data-datum");
    showPin();
  });
  form.elements.latitude.addEventListener("change", showPin);
  form.elements.longitude.addEventListener("change", showPin);
  showPin();
}());
