#!/usr/bin/env bash
# Debian/Ubuntu packages the document-fraud use case needs: Tesseract with French data (OCR),
# the fonts the certificate generator draws with, and iso-codes (Niger's regions).
# Installs only what is missing; needs root or sudo the first time.
set -euo pipefail
PACKAGES=(tesseract-ocr tesseract-ocr-fra fonts-dejavu-core fonts-liberation2 fonts-sil-andika fonts-dancingscript iso-codes)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "system-deps: install these packages with your system's package manager: ${missing[*]}" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "system-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
