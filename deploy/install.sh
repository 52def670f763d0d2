#!/usr/bin/env bash
# Install or update mammo-edge on a Raspberry Pi (Raspberry Pi OS Bookworm, 64-bit), a Jetson (JetPack 6) or any
# Debian-like x86_64 box with systemd. Field guide: deploy/README.md.
#
#   sudo ./install.sh                       from an offline archive (mammo-archive): wheels and bundle beside it
#   sudo deploy/install.sh --bundle DIR     from a checkout, with the internet (pip)
#
#   --root DIR     install into DIR as if it were / (an image being prepared, a test): nothing outside DIR is
#                  touched and systemctl is never called
#   --dry-run      print every action, do none of them
#   --bundle DIR   the model bundle (default: the archive's bundle/)
#   --autotune     measure every verified variant, runtime and thread count on this board (minutes) and write the
#                  fastest into the config (the previous file kept as config.toml.bak)
#   --no-start     install and enable the units, but do not (re)start them
#
# Idempotent: running it again updates the code and installs the bundle as a new model version (the live one becomes
# the one `mammo-edge model rollback` returns to); the config and every scan, result and journal are kept.
set -euo pipefail
umask 022

root="" dry_run=0 bundle="" autotune=0 start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a folder}; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --bundle) bundle=${2:?--bundle needs a folder}; shift 2 ;;
        --autotune) autotune=1; shift ;;
        --no-start) start=0; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

here=$(cd "$(dirname "$0")" && pwd)
if [ -d "$here/wheels" ]; then  # an offline archive: everything lies beside this script
    source_kind=archive templates=$here units=$here/systemd
    bundle=${bundle:-$here/bundle}
else  # a checkout: deploy/install.sh
    source_kind=checkout templates=$here units=$here/../systemd
fi

# fail, say, act (every change goes through it: printed always, done unless --dry-run), write_file, apply_units
# shellcheck source=units.sh
. "$here/units.sh"

prefix=/opt/mammo-edge
venv=$root$prefix/venv
config=$root/etc/mammo-edge/config.toml
link=$root/var/lib/mammo-edge/bundle
unit_dir=$root/etc/systemd/system
user=mammo-edge

# --- checks first: nothing is changed until all of them pass ---------------------------------------------------
[ -n "$bundle" ] || fail "no model bundle: give --bundle DIR (a folder written by mammo-convert)"
[ -f "$bundle/manifest.json" ] || fail "$bundle is not a model bundle (no manifest.json)"
if [ -z "$root" ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    fail "run as root (sudo), or give --root DIR to install into a staging folder"
fi
machine=$(uname -m)
case "$machine" in x86_64|aarch64) ;; *) fail "unsupported CPU $machine: mammo-edge runs on x86_64 and aarch64" ;; esac
command -v python3 >/dev/null || fail "python3 is missing: apt-get install python3 python3-venv"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
    fail "Python $(python3 -V 2>&1) is too old: mammo-edge needs 3.10 or newer"
python3 -c 'import venv, ensurepip' 2>/dev/null || fail "python3 cannot make virtual environments: apt-get install python3-venv"
python=$(python3 -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
# The variant a new config serves: int8 when the fidelity gate verified it for this model, else the next best.
variant=$(python3 - "$bundle/manifest.json" 2>/dev/null <<'PICK' || true
import json, sys
files = json.load(open(sys.argv[1]))["files"].values()
shipped = [entry["variant"] for entry in files if entry["role"] == "classifier"]
print(next(v for v in ("int8", "float16", "dynamic", "float32") if v in shipped))
PICK
)
[ -n "$variant" ] || fail "$bundle/manifest.json names no classifier the fidelity gate verified"
if [ "$source_kind" = archive ]; then
    read -r archive_machine archive_python < <(python3 -c 'import json, sys
about = json.load(open(sys.argv[1])); print(about["machine"], about["python"])' "$here/ARCHIVE.json")
    [ "$archive_machine" = "$machine" ] ||
        fail "this archive is for $archive_machine, this machine is $machine: build one with mammo-archive --machine $machine"
    [ "$archive_python" = "$python" ] ||
        fail "this archive is for Python $archive_python, this machine has $python: build one with mammo-archive --python $python"
    python3 - "$here" <<'CHECK' || fail "the archive is damaged (a wheel's sha256 differs from ARCHIVE.json): copy it again"
import hashlib, json, pathlib, sys
here = pathlib.Path(sys.argv[1])
wheels = json.loads((here / "ARCHIVE.json").read_text())["wheels"]
sys.exit(any(hashlib.sha256((here / "wheels" / n).read_bytes()).hexdigest() != h for n, h in wheels.items()))
CHECK
fi
target=$root/
while [ ! -d "$target" ]; do target=$(dirname "$target"); done
need_mb=$(( $(du -sm "$bundle" | cut -f1) * 2 + 900 ))  # the venv (~600 MB unpacked), two model versions, headroom
free_mb=$(df -Pm "$target" | awk 'NR == 2 {print $4}')
[ "$free_mb" -ge "$need_mb" ] || fail "only $free_mb MB free on $target; the install needs $need_mb MB"
say "checks passed: $machine, Python $python, $free_mb MB free, installing from the $source_kind into ${root:-/}"

# --- the service user and its folders --------------------------------------------------------------------------
owner=()
if [ -z "$root" ]; then
    id -u "$user" >/dev/null 2>&1 ||
        act useradd --system --home /var/lib/mammo-edge --shell /usr/sbin/nologin "$user"
    owner=(-o "$user" -g "$user")
elif [ -f "$root/etc/passwd" ]; then  # an image with its own users: the user is made there, files owned by its ids
    grep -q "^$user:" "$root/etc/passwd" ||
        act useradd --root "$(cd "$root" && pwd)" --system --home /var/lib/mammo-edge --shell /usr/sbin/nologin "$user"
    uid=$(awk -F: -v u="$user" '$1 == u {print $3}' "$root/etc/passwd")
    gid=$(awk -F: -v u="$user" '$1 == u {print $4}' "$root/etc/passwd")
    [ -n "$uid" ] && owner=(-o "$uid" -g "$gid")
else
    say "no $root/etc/passwd: folders stay owned by $(id -un); the image's first boot must chown them to $user"
fi
act install -d "${owner[@]}" -m 0750 "$root/var/lib/mammo-edge" "$root/var/lib/mammo-edge/state" \
    "$root/var/lib/mammo-edge/outbox"
act install -d "${owner[@]}" -m 0770 "$root/srv/mammo-edge" "$root/srv/mammo-edge/inbox" \
    "$root/srv/mammo-edge/results" "$root/srv/mammo-edge/archive" "$root/srv/mammo-edge/quarantine"
act install -d -m 0755 "$root/etc/mammo-edge" "$root$prefix" "$unit_dir"

# --- the code: a virtual environment with the edge extra only (no TensorFlow) ------------------------------------
[ -x "$venv/bin/python" ] || act python3 -m venv "$venv"
if [ "$source_kind" = archive ]; then
    act "$venv/bin/pip" install --quiet --no-index --find-links "$here/wheels" -c "$here/constraints.txt" \
        "mammo-edge[edge]"
    wheel=$(ls "$here"/wheels/mammo_edge-*.whl)
    wheel_sha=$(sha256sum "$wheel" | cut -d' ' -f1)
    if [ "$(cat "$venv/mammo-edge-wheel.sha256" 2>/dev/null)" = "$wheel_sha" ]; then
        say "the program is this archive's already (wheel sha256 ${wheel_sha:0:12}): left as it is"
    else  # the same version number may carry new code: reinstall, then remember which wheel it was
        act "$venv/bin/pip" install --quiet --no-index --no-deps --force-reinstall "$wheel"
        if [ "$dry_run" = 0 ]; then echo "$wheel_sha" >"$venv/mammo-edge-wheel.sha256"; fi
    fi
else
    act "$venv/bin/pip" install --quiet -c "$here/constraints.txt" "$here/..[edge]"
    act "$venv/bin/pip" install --quiet --no-deps --force-reinstall "$here/.."
fi
act install -m 0644 "$templates/README.md" "$root$prefix/README.md"

# --- the config: from the commented template, kept if present ----------------------------------------------------
if [ -f "$config" ]; then
    say "kept the existing $config"
else
    act install -m 0644 "$templates/config.toml" "$config"
    if [ "$variant" != int8 ]; then  # the template serves int8, which the gate refused for this model
        act sed -i "s/^variant = \"int8\"/variant = \"$variant\"/" "$config"
    fi
fi

# --- the web app's certificate: made once, self-signed, when it serves beyond loopback and none is configured -------
cert_dir=$root/etc/mammo-edge/tls
web_needs_certificate() {  # [web] enabled on an address beyond loopback, without a certificate of its own
    "$venv/bin/python" - "$config" <<'PY'
import sys
from edge_app.config import is_loopback, read_toml
web = read_toml(sys.argv[1]).get("web", {})
needed = web.get("enabled") and not is_loopback(web.get("bind_address", "127.0.0.1")) and not web.get("tls_cert")
sys.exit(0 if needed else 1)
PY
}
if [ "$dry_run" = 0 ] && web_needs_certificate; then
    if [ ! -f "$cert_dir/device.pem" ]; then
        act install -d -m 0750 "${owner[@]}" "$cert_dir"
        act openssl req -x509 -newkey rsa:3072 -sha256 -days 825 -nodes -subj "/CN=$(hostname -f 2>/dev/null || hostname)" \
            -keyout "$cert_dir/device.key" -out "$cert_dir/device.pem"
        act chmod 0640 "$cert_dir/device.key"
        if [ ${#owner[@]} -gt 0 ]; then act chown "${owner[1]}:${owner[3]}" "$cert_dir/device.key" "$cert_dir/device.pem"; fi
    fi
    act sed -i "s|^tls_cert = \"\"|tls_cert = \"/etc/mammo-edge/tls/device.pem\"|; s|^tls_key = \"\"|tls_key = \"/etc/mammo-edge/tls/device.key\"|" "$config"
    say "the web app serves HTTPS with a self-signed device certificate: $cert_dir/device.pem (replace it with the clinic's)"
fi

# --- the model: verified (hashes, schema, self-test) and linked as a new version; a bad bundle stops here ----------
edge=("$venv/bin/mammo-edge")
located=(--config "$config" --bundle "$link")
act "${edge[@]}" model install "$bundle" "${located[@]}" --no-restart
if [ "$autotune" = 1 ]; then
    act "$venv/bin/mammo-bench" autotune "$link" --write-config "$config"
fi

# --- the units: the analysis service always; each network unit only when the config asks for it -----------------
for unit in mammo-edge.service mammo-edge-dicom.service mammo-edge-forward.service mammo-edge-web.service; do
    act install -m 0644 "$units/$unit" "$unit_dir/$unit"
done
act install -m 0755 "$here/units.sh" "$root$prefix/units.sh"  # run again when the config changes
apply_units "$root" "${edge[0]}" "$config" "$start"

# --- the end: the effective config, and the self-test on the bundle's own sample plus one scan -------------------
act "${edge[@]}" check-config "${located[@]}"
act "${edge[@]}" selftest "${located[@]}"
if [ -z "$root" ] && [ "$start" = 1 ] && [ "$dry_run" = 0 ]; then
    systemctl --no-pager --lines=0 status mammo-edge.service || true
fi
say "installed; health: systemctl status mammo-edge; logs: journalctl -u mammo-edge -f;" \
    "counts: $prefix/venv/bin/mammo-edge status"
