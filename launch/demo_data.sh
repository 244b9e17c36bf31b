#!/usr/bin/env bash
# The bundled example data, made from data/corpora (public domain; data/corpora/NOTICE) into DIR:
#   DIR/tokenizer/tokenizer.json   a byte-level BPE tokenizer, 2,048 ids, EXAONE special tokens,
#                                  trained on both texts
#   DIR/data/kjv-genesis           KJV Genesis (English) as token shards with a manifest
#   DIR/data/constitution-ko       the Korean constitution, one document per line
# each dataset verified against the tokenizer. Used by launch/demo.sh and launch/finetune_example.sh.
#   launch/demo_data.sh DIR
set -euo pipefail
case "${1:-}" in ""|-h|--help) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
cd "$(dirname "$0")/.."
DIR=$1
EXATRAIN=${EXATRAIN:-build/bin/exatrain}
rm -rf "$DIR/tokenizer" "$DIR/data"
mkdir -p "$DIR/tokenizer" "$DIR/data"
echo "== tokenizer: byte-level BPE, 2048 ids, on data/corpora (English + Korean)"
"$EXATRAIN" tokenizer train --vocab-size 2048 --output "$DIR/tokenizer/tokenizer.json" --no-progress \
  data/corpora/kjv-genesis.txt data/corpora/constitution-of-korea.txt
echo "== datasets: token shards with manifests"
"$EXATRAIN" data prepare --tokenizer "$DIR/tokenizer/tokenizer.json" --input data/corpora/kjv-genesis.txt \
  --format text --output "$DIR/data/kjv-genesis" --name kjv-genesis --license LicenseRef-PublicDomain \
  --source "King James Bible, Genesis (Debian bible-kjv-text); data/corpora/NOTICE"
"$EXATRAIN" data prepare --tokenizer "$DIR/tokenizer/tokenizer.json" \
  --input data/corpora/constitution-of-korea.txt --format lines --output "$DIR/data/constitution-ko" \
  --name constitution-ko --license LicenseRef-PublicDomain \
  --source "Constitution of the Republic of Korea (konlpy); data/corpora/NOTICE"
for d in kjv-genesis constitution-ko; do
  "$EXATRAIN" data verify "$DIR/data/$d" --tokenizer "$DIR/tokenizer/tokenizer.json"
done
