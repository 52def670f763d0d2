#!/usr/bin/env bash
# Install or update mammo-edge on a Raspberry Pi / Jetson (Debian-based, systemd). Run as root from a checkout:
#   sudo deploy/install.sh BUNDLE_DIR [--autotune]   # install, or update code and model in place
# Idempotent: re-running updates the code and the bundle, keeps the configuration and every scan folder.
# --autotune measures every verified variant, runtime and thread count on this board (a few minutes for the 224 px
# hybrid) and writes the fastest into /etc/mammo-edge/config.toml (the previous file kept as config.toml.bak).
set -euo pipefail

bundle=${1:?usage: deploy/install.sh BUNDLE_DIR [--autotune] (a folder written by mammo-convert)}
autotune=${2:-}
here=$(cd "$(dirname "$0")/.." && pwd)
prefix=/opt/mammo-edge

id -u mammo-edge >/dev/null 2>&1 || useradd --system --home /var/lib/mammo-edge --shell /usr/sbin/nologin mammo-edge
install -d -o mammo-edge -g mammo-edge -m 0750 /var/lib/mammo-edge /var/lib/mammo-edge/state \
    /var/lib/mammo-edge/outbox
install -d -o mammo-edge -g mammo-edge -m 0770 /srv/mammo-edge /srv/mammo-edge/inbox /srv/mammo-edge/results \
    /srv/mammo-edge/archive /srv/mammo-edge/quarantine
install -d -m 0755 /etc/mammo-edge "$prefix"

python3 -m venv "$prefix/venv"
"$prefix/venv/bin/pip" install --quiet --upgrade pip
if ! "$prefix/venv/bin/pip" install --quiet "$here[edge]"; then
    # No LiteRT wheel for this board: the alternative runtime (needs numpy < 2).
    "$prefix/venv/bin/pip" install --quiet 'numpy<2' tflite-runtime pillow opencv-python-headless pydicom watchdog \
        pynetdicom highdicom
    "$prefix/venv/bin/pip" install --quiet --no-deps "$here"
fi
cp "$here/README.md" "$prefix/README.md"

# The model: staged beside the live one and swapped by rename, after it verified on this device.
staged=/var/lib/mammo-edge/bundle.new
rm -rf "$staged" && cp -r "$bundle" "$staged"
[ -f /etc/mammo-edge/config.toml ] || install -m 0644 "$here/deploy/config.toml" /etc/mammo-edge/config.toml
"$prefix/venv/bin/mammo-edge" check-config --config /etc/mammo-edge/config.toml --bundle "$staged" >/dev/null
rm -rf /var/lib/mammo-edge/bundle.old
[ -d /var/lib/mammo-edge/bundle ] && mv /var/lib/mammo-edge/bundle /var/lib/mammo-edge/bundle.old
mv "$staged" /var/lib/mammo-edge/bundle
chown -R mammo-edge:mammo-edge /var/lib/mammo-edge/bundle
if [ "$autotune" = "--autotune" ]; then
    "$prefix/venv/bin/mammo-bench" autotune /var/lib/mammo-edge/bundle --write-config /etc/mammo-edge/config.toml
fi

install -m 0644 "$here/systemd/mammo-edge.service" /etc/systemd/system/mammo-edge.service
systemctl daemon-reload
systemctl enable mammo-edge.service
systemctl restart mammo-edge.service
systemctl --no-pager status mammo-edge.service | head -n 5

# The DICOM units, each on only when the config asks for it ([dicom] enabled, [dicom.forward] host), each allowed
# only its own peers by a drop-in written from the config.
for role in listen forward; do
    unit=mammo-edge-$([ "$role" = listen ] && echo dicom || echo forward).service
    install -m 0644 "$here/systemd/$unit" "/etc/systemd/system/$unit"
    if dropin=$("$prefix/venv/bin/mammo-edge" network-dropin "$role" --config /etc/mammo-edge/config.toml 2>/dev/null); then
        install -d -m 0755 "/etc/systemd/system/$unit.d"
        printf '%s' "$dropin" > "/etc/systemd/system/$unit.d/network.conf"
        systemctl daemon-reload
        systemctl enable "$unit"
        systemctl restart "$unit"
    else
        systemctl disable --now "$unit" 2>/dev/null || true
    fi
done
echo "installed; logs: journalctl -u mammo-edge -f; status: $prefix/venv/bin/mammo-edge status --config /etc/mammo-edge/config.toml"
