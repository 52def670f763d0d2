#!/usr/bin/env bash
# The device's systemd units as its config asks: the analysis service always; the DICOM listener, the forwarder and
# the web app each only when the config enables it, with the drop-in that lets it reach its peers (`mammo-edge
# network-dropin`); the others disabled. install.sh sources this file (its helpers and apply_units) and installs it
# as /opt/mammo-edge/units.sh, which is run again whenever the config changed (the Ansible role does):
#
#   sudo /opt/mammo-edge/units.sh [--root DIR] [--dry-run] [--no-start]
#
#   --root DIR     a staging root: the links systemctl enable would make, nothing outside DIR, systemctl never called
#   --no-start     enable and disable, but do not (re)start
#
# The unit files themselves are installed by install.sh.

fail() { echo "${0##*/}: $*" >&2; exit 2; }
say() { echo "== $*"; }
# Every change goes through `act`: printed always, done unless --dry-run.
act() {
    if [ "$dry_run" = 1 ]; then echo "would run: $*"; else echo "+ $*"; "$@"; fi
}
write_file() {  # write_file MODE TARGET < content
    if [ "$dry_run" = 1 ]; then echo "would write: $2 (mode $1)"; cat >/dev/null; return; fi
    echo "+ write $2"
    local temporary
    temporary=$(mktemp "$(dirname "$2")/.install.XXXXXX")
    cat >"$temporary" && chmod "$1" "$temporary" && mv -f "$temporary" "$2"
}

apply_units() {  # apply_units ROOT PROGRAM CONFIG START (START=1: restart the enabled units)
    local root=$1 edge=$2 config=$3 start=$4
    local unit_dir=$root/etc/systemd/system role unit dropin
    local enable=(mammo-edge.service) off=()
    for role in listen forward web; do
        unit=mammo-edge-$(case $role in listen) echo dicom ;; *) echo "$role" ;; esac).service
        if [ "$dry_run" = 1 ]; then
            echo "would write: $unit_dir/$unit.d/network.conf and enable $unit, if the config enables it"
        elif dropin=$("$edge" network-dropin "$role" --config "$config" 2>/dev/null); then
            act install -d -m 0755 "$unit_dir/$unit.d"
            printf '%s' "$dropin" | write_file 0644 "$unit_dir/$unit.d/network.conf"
            enable+=("$unit")
        else
            say "$unit stays off (the config does not enable it)"
            off+=("$unit")
        fi
    done
    if [ -n "$root" ]; then  # what `systemctl enable` and `disable` do, by hand: the image starts these at boot
        act install -d -m 0755 "$unit_dir/multi-user.target.wants"
        for unit in "${enable[@]}"; do
            act ln -sfn "/etc/systemd/system/$unit" "$unit_dir/multi-user.target.wants/$unit"
        done
        for unit in "${off[@]}"; do
            act rm -f "$unit_dir/multi-user.target.wants/$unit"
        done
    else
        act systemctl daemon-reload
        act systemctl enable "${enable[@]}"
        for unit in "${off[@]}"; do
            act systemctl disable --now "$unit" 2>/dev/null || true
        done
        if [ "$start" = 1 ]; then act systemctl restart "${enable[@]}"; fi
    fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then  # run, not sourced
    set -euo pipefail
    root="" dry_run=0 start=1
    while [ $# -gt 0 ]; do
        case "$1" in
            --root) root=${2:?--root needs a folder}; shift 2 ;;
            --dry-run) dry_run=1; shift ;;
            --no-start) start=0; shift ;;
            -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
            *) fail "unknown argument $1 (see --help)" ;;
        esac
    done
    if [ -z "$root" ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
        fail "run as root (sudo), or give --root DIR"
    fi
    apply_units "$root" "$root/opt/mammo-edge/venv/bin/mammo-edge" "$root/etc/mammo-edge/config.toml" "$start"
fi
