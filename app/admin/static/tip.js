// The tip page map: the grid outline, its neighbours and the reported point, drawn with
// the vendored Leaflet. Positions arrive already in the tiles' datum (see tip_view.py);
// with no tile URL configured the map has a plain background and fetches nothing.
(function () {
  "use strict";
  var element = document.getElementById("tip-map");
  if (!element || !window.L) { return; }
  var data = JSON.parse(element.getAttribute("data-map") || "{}");
  var tiles = element.getAttribute("data-tiles");
  var layers = [];
  var bounds = L.latLngBounds([]);

  (data.neighbours || []).forEach(function (outline) {
    var layer = L.geoJSON(outline, {
      style: { color: "#8a8f98", weight: 1, fillOpacity: 0.03, dashArray: "4 4" }
    });
    layers.push(layer);
    bounds.extend(layer.getBounds());
  });
  if (data.grid) {
    var grid = L.geoJSON(data.grid, { style: { color: "#1f5fbf", weight: 3, fillOpacity: 0.08 } });
    layers.push(grid);
    bounds = grid.getBounds();
  }
  if (data.point) {
    var at = L.latLng(data.point.lat, data.point.lon);
    if (data.point.accuracy_m) {
      layers.push(L.circle(at, {
        radius: data.point.accuracy_m, color: "#c0392b", weight: 1, fillOpacity: 0.1
      }));
    }
    layers.push(L.circleMarker(at, {
      radius: 8, color: "#ffffff", weight: 2, fillColor: "#c0392b", fillOpacity: 1
    }));
    bounds.extend(at);
  }

  // The view must be set before vector layers are added (Leaflet clips them to it).
  var map = L.map(element, { attributionControl: !!tiles, scrollWheelZoom: false });
  if (bounds.isValid()) {
    map.fitBounds(bounds, { padding: [16, 16], maxZoom: 17 });
  } else {
    map.setView([0, 0], 2);
  }
  if (tiles) {
    L.tileLayer(tiles, { maxZoom: 19, subdomains: "abc" }).addTo(map);
  }
  layers.forEach(function (layer) { layer.addTo(map); });
  element.classList.add("map-ready");
}());
