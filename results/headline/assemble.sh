#!/bin/bash
# Files the headline runs into results/headline and renders RESULTS.md (run from the repository root).
#
# The headline is each dataset's best faithful setting, chosen on validation in the protocol grid
# (results/protocol-grid/README.md); its runs are trained and collected there first, then filed
# here under the plain model names with `collect --as`, so one run is never trained twice:
#   sports  every prefix, λ_ICL 0.3, per-batch means, the recipes' patience 10   (patience10/)
#   toys    every prefix, the Toys code preset itself                             (prefixes-epyc/)
#   yelp    one sequence per user, epoch-averaged losses (the Yelp code presets)  (epoch-average/)
# A model with no run yet in a setting is left out of that dataset; the folder list below says
# which seeds exist.
set -euo pipefail
G=results/protocol-grid
H=results/headline
file_as() { # MODEL GRID_MODEL_FOLDER: every seed of a grid model, filed as MODEL
  local model=$1 folder=$2
  if compgen -G "$folder/seed-*" > /dev/null; then
    eclsr results collect "$folder"/seed-* --into "$H" --as "$model"
  fi
}
rm -rf "${H:?}"/sports "$H"/toys "$H"/yelp "$H"/MACHINE.json  # rebuilt from the grid every time
file_as sasrec-code  $G/patience10/sports/sasrec-code-prefixes
file_as icl-sr-code  $G/patience10/sports/icl-sr-code-prefixes-icl0.3
file_as ridl-sr-code $G/patience10/sports/ridl-sr-code-prefixes
file_as ecl-sr-code  $G/patience10/sports/ecl-sr-code-prefixes-icl0.3
file_as sasrec-code  $G/prefixes-epyc/toys/sasrec-code-prefixes
file_as icl-sr-code  $G/prefixes-epyc/toys/icl-sr-code-prefixes
file_as ridl-sr-code $G/prefixes-epyc/toys/ridl-sr-code-prefixes
file_as ecl-sr-code  $G/prefixes-epyc/toys/ecl-sr-code-prefixes
file_as sasrec-code  $G/epoch-average/yelp/sasrec-code-epochavg
file_as icl-sr-code  $G/epoch-average/yelp/icl-sr-code-epochavg
file_as ridl-sr-code $G/epoch-average/yelp/ridl-sr-code-epochavg
file_as ecl-sr-code  $G/epoch-average/yelp/ecl-sr-code-epochavg
eclsr results render "$H" --paper results/paper-table3.toml \
  --models sasrec-code,icl-sr-code,ridl-sr-code,ecl-sr-code \
  --pair icl-sr-code:ecl-sr-code --pair ridl-sr-code:ecl-sr-code --out RESULTS.md
