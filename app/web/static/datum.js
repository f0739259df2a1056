/* Map datums for the form's map: a port of app/grids/datum.py (tests compare the two).
   Positions are kept in WGS-84 (what phones report and the API takes); only the pin
   shown on GCJ-02 or BD-09 tiles is converted, and converted back when it is dragged. */
(function (global) {
  'use strict';
  const A = 6378245.0; // Krasovsky 1940
  const EE = 0.00669342162296594323;
  const X_PI = (Math.PI * 3000.0) / 180.0;
  const INVERSE_TOLERANCE_DEG = 1e-10;
  const INVERSE_MAX_STEPS = 30;

  function outOfChina(lon, lat) {
    return !(lon > 73.66 && lon < 135.05 && lat > 3.86 && lat < 53.55);
  }

  function shiftLat(x, y) {
    let ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * Math.sqrt(Math.abs(x));
    ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
    ret += ((20.0 * Math.sin(y * Math.PI) + 40.0 * Math.sin((y / 3.0) * Math.PI)) * 2.0) / 3.0;
    ret += ((160.0 * Math.sin((y / 12.0) * Math.PI) + 320 * Math.sin((y * Math.PI) / 30.0)) * 2.0) / 3.0;
    return ret;
  }

  function shiftLon(x, y) {
    let ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * Math.sqrt(Math.abs(x));
    ret += ((20.0 * Math.sin(6.0 * x * Math.PI) + 20.0 * Math.sin(2.0 * x * Math.PI)) * 2.0) / 3.0;
    ret += ((20.0 * Math.sin(x * Math.PI) + 40.0 * Math.sin((x / 3.0) * Math.PI)) * 2.0) / 3.0;
    ret += ((150.0 * Math.sin((x / 12.0) * Math.PI) + 300.0 * Math.sin((x / 30.0) * Math.PI)) * 2.0) / 3.0;
    return ret;
  }

  function wgs84ToGcj02(lon, lat) {
    if (outOfChina(lon, lat)) return [lon, lat];
    let dlat = shiftLat(lon - 105.0, lat - 35.0);
    let dlon = shiftLon(lon - 105.0, lat - 35.0);
    const radlat = (lat / 180.0) * Math.PI;
    let magic = Math.sin(radlat);
    magic = 1 - EE * magic * magic;
    const sqrtmagic = Math.sqrt(magic);
    dlat = (dlat * 180.0) / (((A * (1 - EE)) / (magic * sqrtmagic)) * Math.PI);
    dlon = (dlon * 180.0) / ((A / sqrtmagic) * Math.cos(radlat) * Math.PI);
    return [lon + dlon, lat + dlat];
  }

  function gcj02ToWgs84(lon, lat) {
    if (outOfChina(lon, lat)) return [lon, lat];
    let wlon = lon;
    let wlat = lat;
    for (let i = 0; i < INVERSE_MAX_STEPS; i++) {
      const [glon, glat] = wgs84ToGcj02(wlon, wlat);
      const elon = glon - lon;
      const elat = glat - lat;
      wlon -= elon;
      wlat -= elat;
      if (Math.abs(elon) < INVERSE_TOLERANCE_DEG && Math.abs(elat) < INVERSE_TOLERANCE_DEG) break;
    }
    return [wlon, wlat];
  }

  function gcj02ToBd09(lon, lat) {
    const z = Math.sqrt(lon * lon + lat * lat) + 0.00002 * Math.sin(lat * X_PI);
    const theta = Math.atan2(lat, lon) + 0.000003 * Math.cos(lon * X_PI);
    return [z * Math.cos(theta) + 0.0065, z * Math.sin(theta) + 0.006];
  }

  function bd09ToGcj02(lon, lat) {
    const x = lon - 0.0065;
    const y = lat - 0.006;
    const z = Math.sqrt(x * x + y * y) - 0.00002 * Math.sin(y * X_PI);
    const theta = Math.atan2(y, x) - 0.000003 * Math.cos(x * X_PI);
    return [z * Math.cos(theta), z * Math.sin(theta)];
  }

  /* WGS-84 [lon, lat] → the tiles' datum. */
  function fromWgs84(lon, lat, datum) {
    if (datum === 'gcj02') return wgs84ToGcj02(lon, lat);
    if (datum === 'bd09') return gcj02ToBd09(...wgs84ToGcj02(lon, lat));
    return [lon, lat];
  }

  /* The tiles' datum [lon, lat] → WGS-84. */
  function toWgs84(lon, lat, datum) {
    if (datum === 'gcj02') return gcj02ToWgs84(lon, lat);
    if (datum === 'bd09') return gcj02ToWgs84(...bd09ToGcj02(lon, lat));
    return [lon, lat];
  }

  global.TiplineDatum = { fromWgs84, toWgs84, wgs84ToGcj02, gcj02ToWgs84, gcj02ToBd09, bd09ToGcj02 };
})(self);
