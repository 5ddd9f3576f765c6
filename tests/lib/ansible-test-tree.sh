# Sourced by tests/sanity and tests/integration-targets (from the repository root, as root
# or not): what both need to run ansible-test offline on the working tree.
# shellcheck shell=sh

# ansible_test_offline: ansible-test --venv bootstraps pip with get-pip.py downloaded from
# ci-files.testing.ansible.com (ansible/ansible#77304), which this network cannot reach; a
# cached copy is used instead. This stand-in installs pip from ensurepip, then the pinned
# pip from the machine's index (in a clean environment: ensurepip sets
# PIP_CONFIG_FILE=/dev/null). The file name follows the pip version pinned by ansible-test
# (24.2 in ansible-core 2.19).
ansible_test_offline() {
    _cache=${HOME:-/root}/.ansible/test/cache
    [ ! -f "$_cache/get_pip_24_2.py" ] || return 0
    mkdir -p "$_cache"
    cat > "$_cache/get_pip_24_2.py" <<'EOF'
import os, subprocess, sys
args = [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]
subprocess.check_call([sys.executable, '-m', 'ensurepip', '--upgrade'])
env = dict(os.environ); env.pop('PIP_CONFIG_FILE', None); env.pop('ENSUREPIP_OPTIONS', None)
sys.exit(subprocess.call([sys.executable, '-m', 'pip', 'install'] + args, env=env))
EOF
}

# collection_tree DEST: copy the working tree (tracked files plus new, not ignored ones;
# files deleted in the working tree but still in the index are skipped) to
# DEST/ansible_collections/fromscratch/containerfs, a git tree of its own as ansible-test
# wants; set COLLECTION to that path.
collection_tree() {
    COLLECTION=$1/ansible_collections/fromscratch/containerfs
    mkdir -p "$COLLECTION"
    # shellcheck disable=SC2016 # the inner sh expands "$f"
    git ls-files -z --cached --others --exclude-standard | (
        xargs -0 sh -c 'for f; do if [ -e "$f" ] || [ -L "$f" ]; then printf "%s\0" "$f"; fi; done' sh
    ) | tar --null --no-recursion -T - -cf - | tar -C "$COLLECTION" -xf -
    (cd "$COLLECTION" && git init -q && git add -A)
}
