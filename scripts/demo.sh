#!/usr/bin/env bash
# Install, then detect every nucleus of the sample slide with UD-Net: writes the DSA annotation (with its density
# map), the QuPath GeoJSON, an overlay PNG and the slide summary to out/ (SLIDE=path/to/slide overrides the sample).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
slide="${SLIDE:-../shared/data/wsi/CMU-1-Small-Region.svs}"
mkdir -p out
.venv/bin/python -m plugins UDNetDetection "$slide" out/nuclei.anot \
    --geojson out/nuclei.geojson --overlay out/overlay.png --summary out/summary.json "$@"
echo "wrote out/nuclei.anot, out/nuclei.geojson, out/overlay.png and out/summary.json"
