#!/bin/sh
# The one-line installer of parallelix-node, the ParalleliX node operator's CLI and daemon:
#
#     curl -fsSL https://parallelix.io/install.sh | sh
#     curl -fsSL https://parallelix.io/install.sh | sh -s -- --yes --model llama3.2
#     sh install.sh --help
#
# It checks the machine, installs the CLI into an environment of its own (~/.parallelix/venv,
# linked into ~/.local/bin), sets up Ollama when it is missing (after asking) and pulls the
# model, then runs `parallelix-node verify` and prints the next steps. Running it again
# upgrades in place; --uninstall removes it. The node home (~/.parallelix: key, config, outbox)
# is never touched, except by --purge, which asks first.
#
# POSIX sh: runs under dash, bash --posix and the macOS /bin/sh. Everything is in functions
# and `main` runs on the last line, so a download cut short runs nothing.

set -u

OLLAMA_INSTALLER_URL="https://ollama.com/install.sh"
OLLAMA_MAC_DOWNLOAD="https://ollama.com/download/Ollama.dmg"
MIN_FREE_KB=1048576                      # 1 GiB for the environment, the log and the outbox
PATH_MARKER="# added by the parallelix-node installer"

say() { printf '%s\n' "$*"; }
step() { printf '\n==> %s\n' "$*"; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
usage_error() { printf 'error: %s; see: sh install.sh --help\n' "$*" >&2; exit 2; }
has() { command -v "$1" >/dev/null 2>&1; }

usage() {
    cat <<EOF
Install parallelix-node, the ParalleliX node operator's CLI and daemon, with Ollama.

usage: sh install.sh [options]        (piped: curl -fsSL URL | sh -s -- [options])

  --yes, -y        answer yes to every question (install Ollama; --purge's confirmation)
  --no-ollama      do not install Ollama or pull a model
  --model NAME     the model to pull (default: llama3.2)
  --bin-dir DIR    where to link parallelix-node (default: ~/.local/bin)
  --modify-path    add the bin folder to PATH in ~/.profile (and ~/.bashrc, ~/.zshrc if present)
  --pipx           install with pipx instead of ~/.parallelix/venv
  --uv             install with uv tool instead of ~/.parallelix/venv
  --uninstall      stop and remove the service, the environment and the link; keep the node home
  --purge          --uninstall, and also delete the node home with its key (asks first)
  --help, -h       show this help

environment:
  PARALLELIX_NODE_SPEC   what to install: a version (0.2.0), a wheel or a source folder
                         (default: the latest parallelix-node from the package index)
  PARALLELIX_HOME        the node home (default: ~/.parallelix)
  PARALLELIX_PYTHON      the Python to use (default: the newest python3.1x >= 3.10 on PATH)
  OLLAMA_HOST            where Ollama answers (default: http://127.0.0.1:11434)
EOF
}

parse_args() {
    assume_yes=0 no_ollama=0 model=llama3.2 bin_dir="$HOME/.local/bin" modify_path=0
    method=venv uninstall=0 purge=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --yes|-y) assume_yes=1 ;;
            --no-ollama) no_ollama=1 ;;
            --model) [ $# -ge 2 ] || usage_error "--model needs a name"; model=$2; shift ;;
            --model=*) model=${1#--model=} ;;
            --bin-dir) [ $# -ge 2 ] || usage_error "--bin-dir needs a folder"; bin_dir=$2; shift ;;
            --bin-dir=*) bin_dir=${1#--bin-dir=} ;;
            --modify-path) modify_path=1 ;;
            --pipx) method=pipx ;;
            --uv) method=uv ;;
            --uninstall) uninstall=1 ;;
            --purge) uninstall=1 purge=1 ;;
            --help|-h) usage; exit 0 ;;
            *) usage_error "unknown option $1" ;;
        esac
        shift
    done
    [ -n "$model" ] || usage_error "--model needs a name"
    case "$model" in *[!A-Za-z0-9._:/-]*) usage_error "--model $model is not a model name" ;; esac
    case "$bin_dir" in /*) ;; *) usage_error "--bin-dir must be an absolute path" ;; esac
    node_home=${PARALLELIX_HOME:-$HOME/.parallelix}
    venv="$HOME/.parallelix/venv"
    link="$bin_dir/parallelix-node"
}

# ------------------------------------------------------------------ 1. the machine

check_platform() {
    os=$(uname -s) arch=$(uname -m) wsl=0
    case "$os" in
        Linux)
            case "$(uname -r)" in
                *microsoft*WSL2*|*Microsoft*WSL2*) wsl=1 ;;
                *[Mm]icrosoft*) die "this is WSL 1, which cannot run the node; convert the" \
                    "distribution to WSL 2 from Windows (wsl --set-version <distro> 2) and run this again" ;;
            esac ;;
        Darwin) ;;
        *) die "unsupported operating system: $os; parallelix-node runs on Linux (x86_64, arm64)," \
               "macOS and Windows through WSL 2" ;;
    esac
    case "$arch" in
        x86_64|amd64) arch=x86_64 ;;
        aarch64|arm64) arch=arm64 ;;
        *) die "unsupported processor: $arch on $os; parallelix-node runs on x86_64 and arm64" ;;
    esac
    platform="$os $arch"
    [ "$wsl" = 1 ] && platform="WSL2 (Linux $arch)"
    [ "$os" = Darwin ] && platform="macOS $arch"
    say "Machine:  $platform"
}

python_package_hint() {
    if [ "$os" = Darwin ]; then
        say "brew install python@3.12 (or the installer from https://www.python.org/downloads/)"
        return
    fi
    # shellcheck source=/dev/null  # the distribution's file: ID and ID_LIKE name it
    ids=$( (. /etc/os-release 2>/dev/null && printf '%s %s' "${ID:-}" "${ID_LIKE:-}") )
    case " $ids " in
        *" debian "*|*" ubuntu "*) say "sudo apt-get install -y python3 python3-venv" ;;
        *" fedora "*|*" rhel "*|*" centos "*|*" amzn "*) say "sudo dnf install -y python3.11" ;;
        *" arch "*) say "sudo pacman -S --needed python" ;;
        *" suse "*|*" opensuse "*) say "sudo zypper install -y python311" ;;
        *" alpine "*) say "sudo apk add python3" ;;
        *) say "your distribution's python3 package (3.10 or newer), or https://www.python.org/downloads/" ;;
    esac
}

# Succeeds when $1 is Python >= 3.10 with venv and ensurepip (Debian splits them off).
python_ok() {
    "$1" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 10))' >/dev/null 2>&1
}

check_python() {
    python=
    if [ "$method" != venv ]; then
        return  # pipx and uv bring their own Python handling
    fi
    for candidate in ${PARALLELIX_PYTHON:-} python3.13 python3.12 python3.11 python3.10 python3; do
        if has "$candidate" && python_ok "$candidate"; then
            python=$(command -v "$candidate")
            break
        fi
    done
    if [ -z "$python" ]; then
        if ! has python3; then
            die "Python 3.10 or newer is needed and none was found on PATH; install it:" \
                "$(python_package_hint)"
        elif python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
            die "$(python3 --version 2>&1) cannot make virtual environments (venv or ensurepip" \
                "is missing); install it: $(python_package_hint)"
        fi
        die "Python 3.10 or newer is needed and python3 is $(python3 --version 2>&1); install" \
            "it: $(python_package_hint)"
    fi
    say "Python:   $("$python" --version 2>&1) ($python)"
}

check_disk() {
    where=$HOME
    free_kb=$(df -Pk "$where" 2>/dev/null | awk 'NR == 2 { print $4 }')
    case "$free_kb" in
        ''|*[!0-9]*) say "Disk:     could not measure the free space under $where; going on" ;;
        *)
            if [ "$free_kb" -lt "$MIN_FREE_KB" ]; then
                die "only $((free_kb / 1024)) MiB free under $where; parallelix-node needs 1 GiB" \
                    "(and a model several more): free some space and run this again"
            fi
            say "Disk:     $((free_kb / 1048576)) GiB free under $where" ;;
    esac
}

# Sets $spec, what pip (or pipx, uv) installs.
choose_spec() {
    spec=${PARALLELIX_NODE_SPEC:-parallelix-node}
    case "$spec" in
        parallelix-node) ;;
        [0-9]*)
            case "$spec" in *[!0-9A-Za-z.+!-]*) die "PARALLELIX_NODE_SPEC=$spec is not a version" ;; esac
            spec="parallelix-node==$spec" ;;
        /*|./*|../*|~*|*.whl)
            [ -e "$spec" ] || die "PARALLELIX_NODE_SPEC=$spec: no such file or folder"
            case "$spec" in /*) ;; *) spec="$(cd "$(dirname "$spec")" && pwd)/$(basename "$spec")" ;; esac ;;
        *) die "PARALLELIX_NODE_SPEC=$spec must be a version, a wheel or a source folder" ;;
    esac
}

# Reads a yes/no answer from the terminal, even when this script comes through a pipe.
ask() {
    if [ "$assume_yes" = 1 ]; then
        return 0
    fi
    if ! (: </dev/tty) 2>/dev/null; then
        return 2
    fi
    printf '%s [Y/n] ' "$1" >/dev/tty
    read -r answer </dev/tty || answer=n
    case "$answer" in ''|[Yy]|[Yy][Ee][Ss]) return 0 ;; *) return 1 ;; esac
}

# Decides the Ollama step before anything is installed, and fetches what it needs then,
# so that a failed download stops with nothing installed.
plan_ollama() {
    ollama_plan=none
    if [ "$no_ollama" = 1 ]; then
        say "Ollama:   skipped (--no-ollama)"
        return
    fi
    if has ollama; then
        say "Ollama:   $(command -v ollama)"
        ollama_plan=present
        return
    fi
    if [ "$os" = Darwin ] && ! has brew; then
        say "Ollama:   not installed, and there is no Homebrew to install it with"
        ollama_plan=manual
        return
    fi
    ask "Ollama is not installed. Install it now?"
    case $? in
        0) ;;
        1) say "Ollama:   not installed (you said no)"; ollama_plan=declined; return ;;
        *) die "Ollama is not installed and there is no terminal to ask: run again with --yes" \
               "to install it, or --no-ollama to skip it" ;;
    esac
    if [ "$os" = Darwin ]; then
        say "Ollama:   will be installed with Homebrew"
        ollama_plan=brew
        return
    fi
    ollama_script="$workdir/ollama-install.sh"
    if has curl; then
        curl -fsSL "$OLLAMA_INSTALLER_URL" -o "$ollama_script" ||
            die "could not download Ollama's installer from $OLLAMA_INSTALLER_URL (curl exit $?);" \
                "check the network and run this again, or install Ollama yourself and use --no-ollama"
    elif has wget; then
        wget -q "$OLLAMA_INSTALLER_URL" -O "$ollama_script" ||
            die "could not download Ollama's installer from $OLLAMA_INSTALLER_URL (wget exit $?);" \
                "check the network and run this again, or install Ollama yourself and use --no-ollama"
    else
        die "neither curl nor wget is installed, and Ollama's installer must be downloaded:" \
            "install curl, or install Ollama yourself and use --no-ollama"
    fi
    say "Ollama:   will be installed by Ollama's own installer ($OLLAMA_INSTALLER_URL)"
    ollama_plan=script
}

# ------------------------------------------------------------------ 2. the CLI

install_cli() {
    fresh=0
    case "$method" in
        venv) install_venv ;;
        pipx)
            has pipx || die "--pipx was given but pipx is not installed"
            PIPX_BIN_DIR=$bin_dir pipx install --force "$spec" ||
                die "pipx could not install $spec (see its message above)" ;;
        uv)
            has uv || die "--uv was given but uv is not installed"
            UV_TOOL_BIN_DIR=$bin_dir uv tool install --force "$spec" ||
                die "uv could not install $spec (see its message above)" ;;
    esac
    "$link" version >/dev/null 2>&1 ||
        die "$link does not run after installing; run it to see why, then run this again"
    say "Installed: $("$link" version) at $link"
}

install_venv() {
    if [ -e "$link" ] && [ ! -L "$link" ]; then
        die "$link exists and is not a link this installer made; move it aside or use --bin-dir"
    fi
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c '' 2>/dev/null; then
        step "Upgrading parallelix-node in $venv (your node home $node_home is kept)"
    else
        step "Installing parallelix-node into $venv"
        rm -rf "$venv"
        fresh=1
        if ! { mkdir -p "$(dirname "$venv")" && chmod 700 "$(dirname "$venv")" &&
               "$python" -m venv "$venv"; }; then
            rm -rf "$venv"
            die "could not create a virtual environment at $venv with $python (see above)"
        fi
    fi
    if ! "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$spec"; then
        [ "$fresh" = 1 ] && rm -rf "$venv"
        die "pip could not install $spec (see its message above); nothing was linked, run this" \
            "again once the cause is fixed"
    fi
    if ! "$venv/bin/parallelix-node" version >/dev/null 2>&1; then
        [ "$fresh" = 1 ] && rm -rf "$venv"
        die "parallelix-node was installed but does not run; nothing was linked"
    fi
    mkdir -p "$bin_dir" || die "cannot create $bin_dir; choose another with --bin-dir"
    ln -sf "$venv/bin/parallelix-node" "$link" || die "cannot link $link"
}

profile_files() {
    say "$HOME/.profile"
    for f in "$HOME/.bashrc" "$HOME/.zshrc"; do
        [ -f "$f" ] && say "$f"
    done
}

check_path() {
    case ":$PATH:" in
        *":$bin_dir:"*) return ;;
    esac
    if [ "$modify_path" = 1 ]; then
        for f in $(profile_files); do
            # shellcheck disable=SC2016  # $PATH is for the shell that reads the profile
            grep -qF "$PATH_MARKER" "$f" 2>/dev/null ||
                printf 'export PATH="%s:$PATH"  %s\n' "$bin_dir" "$PATH_MARKER" >>"$f"
        done
        say "Added $bin_dir to PATH in $(profile_files | tr '\n' ' ')(open a new shell to use it)"
    else
        say "$bin_dir is not on your PATH; add it (and put the line in ~/.profile):"
        say "    export PATH=\"$bin_dir:\$PATH\""
        say "or run this again with --modify-path."
    fi
}

# ------------------------------------------------------------------ 3. Ollama

sudo_cmd() {
    if [ "$(id -u)" = 0 ]; then
        "$@"
    elif has sudo; then
        sudo "$@"
    else
        die "\`$*\` needs root and sudo is not installed; run it as root, then run this again"
    fi
}

systemd_running() {
    has systemctl || return 1
    case "$(systemctl is-system-running 2>/dev/null)" in
        running|degraded|starting|initializing|maintenance) return 0 ;;
        *) return 1 ;;
    esac
}

ollama_answers() {
    "$link" models >/dev/null 2>&1
}

wait_for_ollama() {
    tries=0
    while [ "$tries" -lt 15 ]; do
        ollama_answers && return 0
        tries=$((tries + 1))
        sleep 1
    done
    return 1
}

start_ollama() {
    if [ "$os" = Darwin ] && has brew; then
        brew services start ollama || die "brew services start ollama failed (see above)"
    elif systemd_running && systemctl cat ollama.service >/dev/null 2>&1; then
        sudo_cmd systemctl enable --now ollama ||
            die "could not start Ollama's service; see: journalctl -u ollama"
    else
        mkdir -p "$HOME/.ollama"
        nohup ollama serve >"$HOME/.ollama/serve.log" 2>&1 &
        say "Started ollama serve in the background (log: ~/.ollama/serve.log); it will not"
        say "come back after a reboot until it runs as a service."
    fi
}

setup_ollama() {
    case "$ollama_plan" in
        none|declined) return ;;
        manual)
            step "Ollama"
            say "Download Ollama for macOS from $OLLAMA_MAC_DOWNLOAD, open it once, then run:"
            say "    parallelix-node models pull $model"
            return ;;
        script)
            step "Installing Ollama with its own installer"
            sh "$ollama_script" || die "Ollama's installer failed (see above); fix what it says," \
                "or install Ollama yourself, and run this again"
            has ollama || die "Ollama's installer finished but ollama is not on PATH; open a new" \
                "shell and run this again" ;;
        brew)
            step "Installing Ollama with Homebrew"
            brew install ollama || die "brew install ollama failed (see above); fix it and run this again" ;;
    esac
    step "Making sure Ollama answers"
    # Ollama's installer starts its service itself: give it time before starting one.
    if [ "$ollama_plan" = script ] && wait_for_ollama; then
        :
    elif ! ollama_answers; then
        start_ollama
        wait_for_ollama || die "Ollama does not answer at ${OLLAMA_HOST:-http://127.0.0.1:11434};" \
            "start it (ollama serve) and run this again"
    fi
    say "Ollama answers at ${OLLAMA_HOST:-http://127.0.0.1:11434}"
    step "Pulling $model"
    "$link" models pull "$model" || die "could not pull $model (see above); run" \
        "parallelix-node models pull $model once the cause is fixed"
}

# ------------------------------------------------------------------ 4. verify, next steps

finish() {
    step "parallelix-node verify"
    "$link" verify || true
    step "Next steps"
    if [ -f "$node_home/node.key" ]; then
        say "  1. your node key is already there ($node_home/node.key): parallelix-node status"
    else
        say "  1. parallelix-node init               make the node key; it prints its nodeKeyHash"
    fi
    say "  2. register that nodeKeyHash in the ParalleliX Console with your staking wallet: node id N"
    say "  3. parallelix-node start --node-id N  or, to run it 24/7:"
    say "     parallelix-node service install --node-id N"
    if [ "$wsl" = 1 ] && ! systemd_running; then
        say "  WSL2 is running without systemd, which service install needs: add the two lines"
        say "  [boot] and systemd=true to /etc/wsl.conf, run wsl --shutdown in Windows, reopen."
    fi
}

# ------------------------------------------------------------------ uninstall

service_files() {
    if [ "$os" = Darwin ]; then
        user_file="$HOME/Library/LaunchAgents/io.parallelix.node.plist"
        system_file=/Library/LaunchDaemons/io.parallelix.node.plist
    else
        user_file="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user/parallelix-node.service"
        system_file=/etc/systemd/system/parallelix-node.service
    fi
}

do_uninstall() {
    if [ "$purge" = 1 ] && [ -d "$node_home" ]; then
        ask "Delete $node_home with the node key, config and outbox? There is no undo."
        case $? in
            0) ;;
            1) die "kept $node_home; nothing was removed" ;;
            *) die "--purge deletes the node key and there is no terminal to ask: run again with" \
                   "--purge --yes to confirm" ;;
        esac
    fi
    service_files
    cli=
    [ -x "$venv/bin/parallelix-node" ] && cli="$venv/bin/parallelix-node"
    [ -z "$cli" ] && has parallelix-node && cli=$(command -v parallelix-node)
    if [ -f "$system_file" ]; then
        [ "$(id -u)" = 0 ] || die "a system-wide service is installed ($system_file); remove it" \
            "first: sudo ${cli:-parallelix-node} service uninstall --system"
        [ -n "$cli" ] || die "$system_file is installed but parallelix-node is gone; remove it by hand"
        "$cli" service uninstall --system --home "$node_home" || die "could not remove the system service (see above)"
    fi
    if [ -f "$user_file" ]; then
        [ -n "$cli" ] || die "$user_file is installed but parallelix-node is gone; remove it by hand"
        "$cli" service uninstall --user --home "$node_home" || die "could not remove the user service (see above)"
    fi
    if [ -L "$link" ]; then
        rm -f "$link"
        say "Removed $link"
    fi
    if [ -d "$venv" ]; then
        rm -rf "$venv"
        say "Removed $venv"
    fi
    has pipx && pipx list --short 2>/dev/null | grep -q '^parallelix-node ' &&
        pipx uninstall parallelix-node
    has uv && uv tool list 2>/dev/null | grep -q '^parallelix-node ' &&
        uv tool uninstall parallelix-node
    for f in $(profile_files); do
        if [ -f "$f" ] && grep -qF "$PATH_MARKER" "$f"; then
            # grep exits 1 when no other line is left: the profile then becomes empty.
            grep -vF "$PATH_MARKER" "$f" >"$f.parallelix-tmp"
            mv "$f.parallelix-tmp" "$f"
            say "Removed the PATH line from $f"
        fi
    done
    if [ "$purge" = 1 ]; then
        rm -rf "$node_home" "$HOME/.parallelix"
        say "Deleted $node_home"
    elif [ -d "$node_home" ]; then
        say "Kept $node_home (node key, config, outbox); --purge deletes it"
    fi
    say "parallelix-node is uninstalled. Ollama and its models are left as they are."
}

main() {
    parse_args "$@"
    check_platform
    if [ "$uninstall" = 1 ]; then
        do_uninstall
        return
    fi
    check_python
    check_disk
    choose_spec
    workdir=$(mktemp -d) || die "cannot create a temporary folder"
    trap 'rm -rf "$workdir"' EXIT
    trap 'exit 130' INT TERM
    plan_ollama
    install_cli
    check_path
    setup_ollama
    finish
}

main "$@"
