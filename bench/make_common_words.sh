#!/bin/sh
# Rebuild generation/quality/common_words.txt.gz (the dictionary's lower-case words, read by
# generation.quality.text.common_words) from Debian's wamerican package, without installing it.
set -e
tmp=$(mktemp -d)
cd "$tmp"
apt-get download wamerican
dpkg -x wamerican_*.deb root
cd - >/dev/null
grep -x "[a-z][a-z-]*" "$tmp/root/usr/share/dict/american-english" | sort -u \
    | gzip -9 -n > generation/quality/common_words.txt.gz
rm -rf "$tmp"
