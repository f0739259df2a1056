#!/bin/sh
# Install from Debian what the benchmarks need beside the venv: wrk (load), ImageMagick
# (the photo peer) and PostGIS (the grid-lookup peer). Safe to rerun: installs only what is missing.
set -eu
want=""
command -v wrk >/dev/null 2>&1 || want="$want wrk"
# /usr/bin/convert specifically: a `convert` earlier on PATH may be a stand-in, not ImageMagick.
[ -x /usr/bin/convert ] || want="$want imagemagick"
dpkg-query -W -f='${Status}' postgresql-15-postgis-3 2>/dev/null | grep -q "ok installed" \
  || want="$want postgresql-15-postgis-3"
if [ -z "$want" ]; then
  echo "bench/setup.sh: wrk, ImageMagick and PostGIS already installed"
  exit 0
fi
echo "bench/setup.sh: installing$want"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# Another apt run may hold the lock: wait for it rather than fail.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086  # $want is a word list on purpose
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $want
