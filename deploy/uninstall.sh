#!/usr/bin/env bash
# Remove mammo-edge: the units, the code and the installed models. Scans, results, quarantine, the journal, the
# outbox and the config are KEPT unless --purge is given (they are the clinic's records). Field guide:
# deploy/README.md.
#
#   sudo deploy/uninstall.sh [--root DIR] [--dry-run] [--purge]
set -euo pipefail

root="" dry_run=0 purge=0
while [ $# -gt 0 ]; do
    case "$1" in
        --root) root=${2:?--root needs a folder}; shift 2 ;;
        --dry-run) dry_run=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) sed -n '2,6p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
# fail and act (printed always, done unless --dry-run): the installer's own helpers, beside this script
# shellcheck source=units.sh
. "$(cd "$(dirname "$0")" && pwd)/units.sh"
if [ -z "$root" ] && [ "$dry_run" = 0 ] && [ "$(id -u)" != 0 ]; then
    fail "run as root (sudo), or give --root DIR"
fi

units=(mammo-edge.service mammo-edge-dicom.service mammo-edge-forward.service mammo-edge-web.service)
unit_dir=$root/etc/systemd/system
if [ -z "$root" ]; then
    act systemctl disable --now "${units[@]}" || true
fi
for unit in "${units[@]}"; do
    act rm -rf "$unit_dir/$unit" "$unit_dir/$unit.d" "$unit_dir/multi-user.target.wants/$unit"
done
[ -z "$root" ] && act systemctl daemon-reload
act rm -rf "$root/opt/mammo-edge" "$root/var/lib/mammo-edge/models" "$root/var/lib/mammo-edge/bundle" \
    "$root/var/lib/mammo-edge/bundle.previous"
if [ "$purge" = 1 ]; then
    act rm -rf "$root/srv/mammo-edge" "$root/var/lib/mammo-edge" "$root/etc/mammo-edge"
    if [ -z "$root" ]; then
        id -u mammo-edge >/dev/null 2>&1 && act userdel mammo-edge
    elif [ -f "$root/etc/passwd" ] && grep -q '^mammo-edge:' "$root/etc/passwd"; then
        act userdel --root "$(cd "$root" && pwd)" mammo-edge
    fi
    echo "== removed mammo-edge and all its data"
else
    echo "== removed mammo-edge; kept the scans and results ($root/srv/mammo-edge), the journal and outbox" \
        "($root/var/lib/mammo-edge) and the config ($root/etc/mammo-edge): --purge removes them too"
fi
