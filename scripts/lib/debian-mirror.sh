# shellcheck shell=bash
# Sourced by scripts/slurm-testbed and scripts/container-image (bash).
#
# debian_mirror: the Debian archive debootstrap fetches from: DASKLAUNCH_DEBIAN_MIRROR, else the
# host's own (its main archive, not the security one), else deb.debian.org. No trailing slash.
debian_mirror() {
    local uri=${DASKLAUNCH_DEBIAN_MIRROR:-}
    [[ -n $uri ]] || uri=$(awk 'tolower($1) == "uris:" && $2 ~ /\/debian\/?$/ {print $2; exit}' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [[ -n $uri ]] || uri=$(awk '$1 == "deb" && !/security/ {for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n 1 || true)
    uri=${uri:-http://deb.debian.org/debian}
    echo "${uri%/}"
}
