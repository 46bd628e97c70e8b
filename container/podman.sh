# Sourced by the container scripts: podman's settings, and Debian base images made with
# debootstrap from the mirror that apt already uses, so that nothing is pulled from a registry.

export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers.conf}"

# The URIs of apt's own sources, one a line.
apt_sources() {
    local file
    for file in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
        if [ -f "$file" ]; then
            awk '/^URIs:/ {for (i = 2; i <= NF; i++) print $i}
                 /^deb / {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) {print $i; break}}' "$file"
        fi
    done
}
# The Debian archive and security mirrors among them.
apt_mirror() { apt_sources | grep -v -- -security | sed -n 1p; }
apt_security_mirror() { apt_sources | grep -- -security | sed -n 1p || true; }

# import_debian_base SUITE IMAGE: a minimal Debian SUITE (bookworm, sid) as the podman image
# IMAGE, unless it is there already.
import_debian_base() {
    local suite=$1 image=$2 mirror rootfs
    podman image exists "$image" && return 0
    mirror=$(apt_mirror)
    rootfs=$(mktemp -d /var/tmp/bidsqc-rootfs.XXXXXX)
    debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >/dev/null
    if [ "$suite" = sid ]; then
        # The mirror may serve a dated snapshot of sid.
        echo 'Acquire::Check-Valid-Until "false";' > "$rootfs/etc/apt/apt.conf.d/99snapshot"
    else
        echo "deb $mirror $suite-updates main" >> "$rootfs/etc/apt/sources.list"
        local security
        security=$(apt_security_mirror)
        [ -z "$security" ] || echo "deb $security $suite-security main" >> "$rootfs/etc/apt/sources.list"
    fi
    tar --numeric-owner -C "$rootfs" -c . | podman import --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
    rm -rf "$rootfs"
}

# The bidsqc version, as the package states it.
bidsqc_version() {
    sed -n 's/^__version__ = "\(.*\)"/\1/p' "$(dirname "${BASH_SOURCE[0]}")/../bidsqc/__about__.py"
}
