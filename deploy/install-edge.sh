#!/usr/bin/env bash
# Install the alumon edge agent as a systemd service on a plant gateway (Debian 12 or similar; run as root).
#
#   deploy/install-edge.sh --site SITE.yaml --credentials CRED.env --ca CA.crt [--root DIR] [--no-start]
#
#   --site         the gateway's copy of the site file (see deploy/README.md "Edge gateway")
#   --credentials  the gateway's MQTT credential, OUT/credentials/edge-SITE.env from `alumon broker config`
#   --ca           the CA that signed the broker's certificate (deploy/pki/ca.crt from make-certs.sh)
#   --root DIR     stage everything under DIR (an image build, a test) without creating the user, building the
#                  venv or touching systemd
#   --no-start     install and enable, but do not start the service now
#
# Result: user `alumon` (no login, home /var/lib/alumon), /etc/alumon root:alumon 0750 with site.yaml (0640),
# ca.crt (0644) and edge.env (root-only 0600: systemd reads it before dropping privileges), the venv in
# /opt/alumon, and alumon-edge.service enabled. The spool lives in /var/lib/alumon/spool (systemd StateDirectory).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
site="" creds="" ca="" root="" start=1
while [[ $# -gt 0 ]]; do
  case "$1" in
    --site) site=${2:?--site needs a value}; shift 2 ;;
    --credentials) creds=${2:?--credentials needs a value}; shift 2 ;;
    --ca) ca=${2:?--ca needs a value}; shift 2 ;;
    --root) root=${2:?--root needs a value}; shift 2 ;;
    --no-start) start=0; shift ;;
    -h|--help) usage 0 ;;
    *) echo "install-edge.sh: unknown argument $1" >&2; usage ;;
  esac
done
[[ -n $site && -n $creds && -n $ca ]] || usage
for f in "$site" "$creds" "$ca"; do [[ -f $f ]] || { echo "install-edge.sh: $f: no such file" >&2; exit 2; }; done
repo=$(cd "$(dirname "$0")/.." && pwd)
staged=$([[ -n $root ]] && echo 1 || echo 0)
if [[ $staged == 0 && $(id -u) != 0 ]]; then
  echo "install-edge.sh: run as root (it creates a system user and a systemd service)" >&2
  exit 1
fi

etc=$root/etc/alumon
owner=(-o root -g alumon)  # the agent reads its config through its group, and cannot change it
if [[ $staged == 1 ]]; then
  owner=()  # no user `alumon` in a staging tree: modes only
else
  id -u alumon >/dev/null 2>&1 ||
    useradd --system --user-group --home-dir /var/lib/alumon --no-create-home --shell /usr/sbin/nologin alumon
fi

umask 077  # nothing below is world-readable by accident, even between creating and chmod
install -d -m 0750 "${owner[@]}" "$etc"
install -m 0640 "${owner[@]}" "$site" "$etc/site.yaml"
install -m 0644 "${owner[@]}" "$ca" "$etc/ca.crt"
install -m 0600 "$creds" "$etc/edge.env"
install -d -m 0755 "$root/etc/systemd/system"
install -m 0644 "$repo/deploy/systemd/alumon-edge.service" "$root/etc/systemd/system/alumon-edge.service"

if [[ $staged == 1 ]]; then
  echo "staged under $root (no user, venv or systemd changes)"
  exit 0
fi

if [[ ! -x /opt/alumon/bin/alumon ]]; then
  python3 -m venv /opt/alumon
fi
# Runtime dependencies at the tested versions (the lock also pins dev tools; the constraint skips those).
/opt/alumon/bin/pip install --quiet --disable-pip-version-check --constraint "$repo/requirements.lock" "$repo"

# Check the site file with its credential loaded, as the service will (the values stay out of argv and logs).
( set -a; . "$etc/edge.env"; set +a; /opt/alumon/bin/alumon config check "$etc/site.yaml" )

systemctl daemon-reload
if [[ $start == 1 ]]; then
  systemctl enable --now alumon-edge.service
  systemctl --no-pager --lines=5 status alumon-edge.service || true
else
  systemctl enable alumon-edge.service
fi
echo "installed: journalctl -u alumon-edge -f shows the agent's log"
