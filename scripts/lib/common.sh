# Shared by the scripts in scripts/: where things are, and how comet calls mpirun.

COMET_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The Debian packages comet builds and runs on.
COMET_PACKAGES=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config)

comet_missing_packages() {
    local package
    for package in "${COMET_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || echo "$package"
    done
}

# mpirun flags for one workstation or a hostfile: ranks may outnumber cores, each
# rank's threads may use any core, and root may run the job (as in CI). Extra
# launcher flags (e.g. --hostfile hosts) come from COMET_MPIRUN_ARGS.
comet_mpirun() {
    local ranks="$1"
    shift
    local flags=(--oversubscribe --bind-to none -n "$ranks")
    if [ "$(id -u)" = 0 ]; then flags+=(--allow-run-as-root); fi
    # shellcheck disable=SC2206
    flags+=(${COMET_MPIRUN_ARGS:-})
    mpirun "${flags[@]}" "$@"
}

comet_bin() {
    (cd "$COMET_ROOT" && swift build -c release --show-bin-path)
}
