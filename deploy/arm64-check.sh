#!/usr/bin/env bash
# The Arm path without a board: a Raspberry Pi OS Bookworm userland (Debian 12 arm64, built by debootstrap, run by
# qemu-user-static), the offline aarch64 archive installed in it with no network, then the bundle's self-test and all
# of its fidelity images on Arm, compared with x86 (this machine, same bundle) and with Keras float.
# Writes benchmarks/results/arm64-fidelity.json. Not part of `make test`: on 2 cores, the arm64 root takes 3 minutes,
# the install 2, and the 384 images 6 (int8) and 36 (float32) under emulation; VARIANTS=int8 runs only int8:
#
#   make arm64-check BUNDLE=demo-out/bundle      (root; needs the internet for debootstrap and the wheels)
set -euo pipefail

bundle=$(cd "${1:?usage: deploy/arm64-check.sh BUNDLE [WORKDIR]}" && pwd)
work=${2:-/var/tmp/mammo-edge-arm64}
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/benchmarks/results/arm64-fidelity.json
rootfs=$work/rootfs
variants=${VARIANTS:-int8 float32}
[ "$(id -u)" = 0 ] || { echo "arm64-check: run as root (debootstrap, chroot, binfmt_misc)" >&2; exit 2; }

if ! command -v qemu-aarch64-static >/dev/null || ! command -v debootstrap >/dev/null; then
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-user-static debootstrap \
        binfmt-support >/dev/null
fi
mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || update-binfmts --enable qemu-aarch64

mkdir -p "$work"
started=$(date +%s)
if [ ! -x "$rootfs/usr/bin/python3" ]; then
    rm -rf "$rootfs"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$rootfs" \
        http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1
fi
rootfs_s=$(( $(date +%s) - started ))

archive=$work/mammo-edge-arm64.tar.gz
"$repo/.venv/bin/mammo-archive" "$bundle" --machine aarch64 --python 3.11 --out "$archive"
rm -rf "$rootfs/tmp/package" "$rootfs/target" && mkdir -p "$rootfs/tmp/package"
tar xf "$archive" -C "$rootfs/tmp/package"
mount -t proc proc "$rootfs/proc"
trap 'umount "$rootfs/proc"' EXIT
inside() { unshare --net -- chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

started=$(date +%s)
inside uname -m | grep -qx aarch64
inside bash /tmp/package/mammo-edge-arm64/install.sh --root /target | tee "$work/install.log"
install_s=$(( $(date +%s) - started ))

for variant in $variants; do
    located=(--config /target/etc/mammo-edge/config.toml --bundle /target/var/lib/mammo-edge/bundle --variant "$variant")
    inside /target/opt/mammo-edge/venv/bin/mammo-edge selftest "${located[@]}" --all --json "/tmp/arm-$variant.json"
    cp "$rootfs/tmp/arm-$variant.json" "$work/arm-$variant.json"
    : > "$work/empty.toml"  # the built-in defaults
    "$repo/.venv-edge/bin/mammo-edge" selftest --config "$work/empty.toml" --bundle "$bundle" --variant "$variant" --all \
        --json "$work/x86-$variant.json" >/dev/null
done

"$repo/.venv/bin/python" - "$work" "$bundle" "$out" "$rootfs_s" "$install_s" $variants <<'COMPOSE'
import json, sys
from pathlib import Path

import numpy as np

work, bundle, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
rootfs_s, install_s, variants = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6:]
limit = json.loads((bundle / "report.json").read_text())["thresholds"]["min_agreement"]
rows = {}
for variant in variants:
    arm = json.loads((work / f"arm-{variant}.json").read_text())
    x86 = json.loads((work / f"x86-{variant}.json").read_text())
    a, b = np.array(arm["probabilities"]), np.array(x86["probabilities"])
    threshold = arm["threshold"]
    rows[variant] = {
        "images": arm["images"],
        "runtime": arm["runtime"],
        "agreement": arm["agreement"],
        "max_abs_prob_diff": arm["max_abs_prob_diff"],
        "against_x86": {
            "agreement": float(np.mean((a >= threshold) == (b >= threshold))),
            "max_abs_prob_diff": float(np.max(np.abs(a - b))),
            "x86_runtime": x86["runtime"],
        },
        "x86_against_keras": {"agreement": x86["agreement"], "max_abs_prob_diff": x86["max_abs_prob_diff"]},
        "selftest_passed": arm["passed"],
        "gate_passed": arm["agreement"] >= limit,
    }
first = rows[variants[0]]
result = {
    "machine": json.loads((work / f"arm-{variants[0]}.json").read_text())["machine"],
    "how": "Debian 12 (bookworm) arm64 userland by debootstrap, run under qemu-user-static on x86_64",
    "model": json.loads((work / f"arm-{variants[0]}.json").read_text())["model"],
    "variant": variants[0],
    "agreement": first["agreement"],
    "max_abs_prob_diff": first["max_abs_prob_diff"],
    "min_agreement": limit,
    "variants": rows,
    "install": {"offline": True, "archive": "mammo-archive --machine aarch64 --python 3.11", "seconds": install_s},
    "rootfs_seconds": rootfs_s,
    "command": "make arm64-check BUNDLE=demo-out/bundle",
}
out.write_text(json.dumps(result, indent=2) + "\n")
print(json.dumps({k: v for k, v in result.items() if k != "variants"}, indent=2))
for variant, row in rows.items():
    print(variant, json.dumps(row))
COMPOSE
