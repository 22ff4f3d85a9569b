#!/bin/bash
# Renders the protocol grid from its committed run files (run from the repository root).
set -e
G=results/protocol-grid
eclsr results render $G/headline $G/positions-from-end $G/prefixes $G/sampled-softmax $G/prefixes-epyc $G/authors-settings $G/authors-settings-p10 $G/small-batch $G/no-dropout $G/random-batches $G/epoch-average \
  --baseline headline/sasrec-code \
  --models headline/sasrec-code,small-batch/sasrec-code-b48,small-batch/sasrec-code-b48-unbucketed,small-batch/sasrec-code-b48-epochavg,random-batches/sasrec-code-seq-random,epoch-average/sasrec-code-epochavg,epoch-average/icl-sr-code-epochavg,epoch-average/ridl-sr-code-epochavg,epoch-average/ecl-sr-code-epochavg,epoch-average/ecl-sr-code-epochavg-icl0.3,no-dropout/sasrec-code-b48-nodrop,no-dropout/sasrec-code-prefixes-nodrop,positions-from-end/sasrec-code,prefixes/sasrec-code-prefixes,prefixes-epyc/sasrec-code-prefixes,sampled-softmax/sasrec-code-sampled256,sampled-softmax/sasrec-code-prefixes-sampled256,headline/ecl-sr-code,positions-from-end/ecl-sr-code,authors-settings/ecl-sr-code-authors,authors-settings-p10/ecl-sr-code-authors,authors-settings-p10/ecl-sr-code-authors-icl0.3,authors-settings-p10/ecl-sr-code-authors-icl0.3-gen0.2,prefixes-epyc/ecl-sr-code-prefixes,prefixes-epyc/ecl-sr-code-prefixes-icl0.3,prefixes-epyc/ecl-sr-code-prefixes-icl0.3-ridscaled,prefixes-epyc/ecl-sr-code-prefixes-paperaux,prefixes-epyc/icl-sr-code-prefixes,prefixes-epyc/icl-sr-code-prefixes-icl0.3,prefixes-epyc/ridl-sr-code-prefixes \
  --pair prefixes-epyc/sasrec-code-prefixes:prefixes-epyc/ecl-sr-code-prefixes \
  --pair prefixes-epyc/sasrec-code-prefixes:prefixes-epyc/ecl-sr-code-prefixes-icl0.3 \
  --pair prefixes-epyc/sasrec-code-prefixes:prefixes-epyc/ecl-sr-code-prefixes-icl0.3-ridscaled \
  --pair prefixes-epyc/ecl-sr-code-prefixes-icl0.3:prefixes-epyc/ecl-sr-code-prefixes-icl0.3-ridscaled \
  --pair prefixes-epyc/ecl-sr-code-prefixes-icl0.3:prefixes-epyc/ecl-sr-code-prefixes-paperaux \
  --pair prefixes-epyc/icl-sr-code-prefixes:prefixes-epyc/ecl-sr-code-prefixes \
  --pair prefixes-epyc/ridl-sr-code-prefixes:prefixes-epyc/ecl-sr-code-prefixes \
  --pair headline/ecl-sr-code:prefixes-epyc/ecl-sr-code-prefixes \
  --pair prefixes/sasrec-code-prefixes:sampled-softmax/sasrec-code-prefixes-sampled256 \
  --pair headline/ecl-sr-code:prefixes-epyc/sasrec-code-prefixes \
  --pair small-batch/sasrec-code-b48:prefixes-epyc/sasrec-code-prefixes \
  --pair small-batch/sasrec-code-b48:small-batch/sasrec-code-b48-unbucketed \
  --pair small-batch/sasrec-code-b48:small-batch/sasrec-code-b48-epochavg \
  --pair small-batch/sasrec-code-b48-unbucketed:small-batch/sasrec-code-b48-epochavg \
  --pair headline/sasrec-code:random-batches/sasrec-code-seq-random \
  --pair headline/sasrec-code:epoch-average/sasrec-code-epochavg \
  --pair prefixes/sasrec-code-prefixes:epoch-average/sasrec-code-epochavg \
  --pair random-batches/sasrec-code-seq-random:epoch-average/sasrec-code-epochavg \
  --pair epoch-average/sasrec-code-epochavg:epoch-average/ecl-sr-code-epochavg \
  --pair epoch-average/sasrec-code-epochavg:epoch-average/ecl-sr-code-epochavg-icl0.3 \
  --pair epoch-average/icl-sr-code-epochavg:epoch-average/ecl-sr-code-epochavg \
  --pair epoch-average/ridl-sr-code-epochavg:epoch-average/ecl-sr-code-epochavg \
  --pair epoch-average/ecl-sr-code-epochavg:authors-settings-p10/ecl-sr-code-authors \
  --pair authors-settings-p10/ecl-sr-code-authors:authors-settings-p10/ecl-sr-code-authors-icl0.3 \
  --pair authors-settings-p10/ecl-sr-code-authors-icl0.3:authors-settings-p10/ecl-sr-code-authors-icl0.3-gen0.2 \
  --pair no-dropout/sasrec-code-b48-nodrop:no-dropout/sasrec-code-prefixes-nodrop \
  --out $G/RESULTS.md
eclsr results render $G/seen-excluded --baseline sasrec-code-prefixes \
  --models sasrec-code,sasrec-code-b48,sasrec-code-b48-unbucketed,sasrec-code-b48-epochavg,sasrec-code-seq-random,sasrec-code-epochavg,icl-sr-code-epochavg,ridl-sr-code-epochavg,ecl-sr-code-epochavg,ecl-sr-code-epochavg-icl0.3,sasrec-code-prefixes,ecl-sr-code-prefixes,ecl-sr-code-prefixes-icl0.3,ecl-sr-code-prefixes-icl0.3-ridscaled,ecl-sr-code-prefixes-paperaux,icl-sr-code-prefixes,icl-sr-code-prefixes-icl0.3,ridl-sr-code-prefixes \
  --out $G/SEEN-EXCLUDED.md
eclsr results render $G/patience10 $G/random-batches $G/learning-rate $G/model-size --baseline patience10/sasrec-code-prefixes \
  --models patience10/sasrec-code-prefixes,random-batches/sasrec-code-prefixes-unbucketed,learning-rate/sasrec-code-prefixes-lr5e-4,learning-rate/sasrec-code-prefixes-lr3e-4,model-size/sasrec-code-prefixes-h128,model-size/sasrec-code-prefixes-h128-lr5e-4,model-size/sasrec-code-prefixes-h128-lr3e-4,patience10/icl-sr-code-prefixes-icl0.3,patience10/ridl-sr-code-prefixes,patience10/ecl-sr-code-prefixes-icl0.3,random-batches/sasrec-code-seq-random \
  --out $G/PATIENCE10.md
# Where along the history length ECL-SR gains (reads the datasets: set ECLSR_DATA_DIR)
eclsr results render $G/prefixes-epyc --baseline sasrec-code-prefixes \
  --models sasrec-code-prefixes,ecl-sr-code-prefixes,ecl-sr-code-prefixes-icl0.3 \
  --pair sasrec-code-prefixes:ecl-sr-code-prefixes-icl0.3 --pair sasrec-code-prefixes:ecl-sr-code-prefixes \
  --by-length 5,6,8,12,20 --out $G/BY-LENGTH.md
