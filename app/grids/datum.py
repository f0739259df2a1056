"""Convert points between WGS-84, GCJ-02 ("Mars" coordinates) and BD-09 (Baidu).

Phones and GPS receivers report WGS-84; maps published in China are drawn in
GCJ-02 (Amap, Tencent, Apple in China) or BD-09 (Baidu). Around the reference
city the GCJ-02 shift is about 470 m, more than half a grid cell, so a point
must be put into the datum its layer was drawn in before the lookup.

The forward formulas are the widely published ones (Krasovsky 1940 ellipsoid,
as in the coordtransform library); points outside China's rough bounding box
are left unchanged by GCJ-02. GCJ-02 has no closed-form inverse, so
`gcj02_to_wgs84` iterates the forward formula until it reproduces its input.
"""

from __future__ import annotations

import math

CRS_WGS84 = "wgs84"
CRS_GCJ02 = "gcj02"
CRS_BD09 = "bd09"
CRS_NAMES = (CRS_WGS84, CRS_GCJ02, CRS_BD09)

# Krasovsky 1940: semi-major axis and first eccentricity squared.
_A = 6378245.0
_EE = 0.00669342162296594323
_X_PI = math.pi * 3000.0 / 180.0

# An exact inverse is wanted to well below a millimetre; 1e-7 degrees is about 1 cm.
_INVERSE_TOLERANCE_DEG = 1e-10
_INVERSE_MAX_STEPS = 30


def out_of_china(lon: float, lat: float) -> bool:
    """Return whether GCJ-02 leaves the point unchanged (outside China's bounding box)."""
    return not (73.66 < lon < 135.05 and 3.86 < lat < 53.55)


def _shift_lat(x: float, y: float) -> float:
    ret = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (160.0 * math.sin(y / 12.0 * math.pi) + 320 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    return ret


def _shift_lon(x: float, y: float) -> float:
    ret = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    ret += (20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)) * 2.0 / 3.0
    ret += (20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)) * 2.0 / 3.0
    ret += (150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    return ret


def _gcj_offset(lon: float, lat: float) -> tuple[float, float]:
    """Return the GCJ-02 shift (dlon, dlat) in degrees for a WGS-84 point inside China."""
    dlat = _shift_lat(lon - 105.0, lat - 35.0)
    dlon = _shift_lon(lon - 105.0, lat - 35.0)
    radlat = lat / 180.0 * math.pi
    magic = math.sin(radlat)
    magic = 1 - _EE * magic * magic
    sqrtmagic = math.sqrt(magic)
    dlat = (dlat * 180.0) / ((_A * (1 - _EE)) / (magic * sqrtmagic) * math.pi)
    dlon = (dlon * 180.0) / (_A / sqrtmagic * math.cos(radlat) * math.pi)
    return dlon, dlat


def wgs84_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """Return the GCJ-02 position of a WGS-84 point (unchanged outside China)."""
    if out_of_china(lon, lat):
        return lon, lat
    dlon, dlat = _gcj_offset(lon, lat)
    return lon + dlon, lat + dlat


def gcj02_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Return the WGS-84 point whose GCJ-02 position is (lon, lat), by fixed-point iteration.

    The published one-step inverse is off by centimetres to a few metres
    (up to ~5 m across China); each iteration here gains about four orders of
    magnitude, so three or four steps reach the tolerance.
    """
    if out_of_china(lon, lat):
        return lon, lat
    wlon, wlat = lon, lat
    for _ in range(_INVERSE_MAX_STEPS):
        glon, glat = wgs84_to_gcj02(wlon, wlat)
        elon, elat = glon - lon, glat - lat
        wlon -= elon
        wlat -= elat
        if abs(elon) < _INVERSE_TOLERANCE_DEG and abs(elat) < _INVERSE_TOLERANCE_DEG:
            break
    return wlon, wlat


def gcj02_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """Return the BD-09 position of a GCJ-02 point."""
    z = math.sqrt(lon * lon + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _X_PI)
    return z * math.cos(theta) + 0.0065, z * math.sin(theta) + 0.006


def bd09_to_gcj02(lon: float, lat: float) -> tuple[float, float]:
    """Return the GCJ-02 position of a BD-09 point (the published closed form, good to ~1e-6°)."""
    x = lon - 0.0065
    y = lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    return z * math.cos(theta), z * math.sin(theta)


def wgs84_to_bd09(lon: float, lat: float) -> tuple[float, float]:
    """Return the BD-09 position of a WGS-84 point."""
    return gcj02_to_bd09(*wgs84_to_gcj02(lon, lat))


def bd09_to_wgs84(lon: float, lat: float) -> tuple[float, float]:
    """Return the WGS-84 position of a BD-09 point."""
    return gcj02_to_wgs84(*bd09_to_gcj02(lon, lat))


def to_layer_datum(lon: float, lat: float, crs: str) -> tuple[float, float]:
    """Convert an incoming WGS-84 point into the datum a grid layer was drawn in."""
    if crs == CRS_WGS84:
        return lon, lat
    if crs == CRS_GCJ02:
        return wgs84_to_gcj02(lon, lat)
    if crs == CRS_BD09:
        return wgs84_to_bd09(lon, lat)
    raise ValueError(f"unknown datum {crs!r}; expected one of {', '.join(CRS_NAMES)}")
