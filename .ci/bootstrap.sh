#!/usr/bin/env bash
# Installs the system packages the tests need when they are missing:
# Mosquitto (the real broker the tests start), the venv module, a C
# compiler (and OpenSSL's headers) for the Cython modules, and Chromium with
# its WebDriver (the web console's browser tests; never a browser a Python
# package downloads).  Uses apt-get as root, or sudo.
set -euo pipefail

missing=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)  # the partner's capture in the ledger tests
python3 -c "import ensurepip, venv" >/dev/null 2>&1 || missing+=(python3-venv)
command -v cc >/dev/null 2>&1 || missing+=(gcc)
python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
    || missing+=(python3-dev)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -f /usr/include/openssl/sha.h ] || missing+=(libssl-dev)  # the compiled link hash (gateway/ledger/_linkhash.pyx)

if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "please install: ${missing[*]}" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
echo "installing ${missing[*]} with apt-get" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
