"""Hostile input at the validator: every string field of the spec and of config.json, spec
files that are not what they claim, internal fields, values that used to be tracebacks.

The field table below is checked against the validator's own field tuples, so a new field
without a hostile case fails `test_every_field_has_a_hostile_case`.
"""
import copy
import os
import subprocess
import sys
import time

import pytest

from tests.lib import collection

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import image as _image_spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._oci import bundle as _oci
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mounts as _spec_mounts
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import rootfs as _spec_rootfs
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import validate as _spec
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import files as _spec_file
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec.validate import SpecError, load_spec

DIGEST = "sha256:" + "a" * 64
RESOLVED = {"format": "oci", "manifest_digest": DIGEST, "config_digest": DIGEST, "rootfs": None,
            "layers": [{"digest": DIGEST, "size": 10, "diff_id": DIGEST, "compression": "gzip",
                        "path": "blobs/sha256/" + "a" * 64,
                        "media_type": "application/vnd.oci.image.layer.v1.tar+gzip"}]}

CONTROL = ["\n", "\r\n", "\t", "\x00", "\x1b", "\x7f", "\x85", "\x9b", "\u2028", "\u2029"]
SEPARATORS = [" ", "#", ","]


def base():
    return {"name": "demo", "rootfs": {"path": "/srv/rootfs"}}


def image_base():
    return {"name": "demo", "rootfs": {"image": {"source": "/srv/image"}}}


def registry_image_base():
    return {"name": "demo", "rootfs": {"image": {"source": "docker://registry.example/team/app:1"}}}


def stored_image_base():
    return {"name": "demo", "rootfs": {"image": {"name": "busybox"}}}


def at(path, value, start=base, extra=None):
    """A spec builder putting `value` at the dotted `path` (a list index as [i])."""
    def build():
        raw = start()
        raw.update(copy.deepcopy(extra or {}))
        node, keys = raw, path.replace("[", ".[").split(".")
        for key, following in zip(keys, keys[1:] + [None]):
            if following is None:
                break
            index = int(following[1:-1]) if following.startswith("[") else None
            node = node.setdefault(key, [] if index is not None else {}) if not key.startswith("[") \
                else node[int(key[1:-1])]
        last = keys[-1]
        if last.startswith("["):
            node[int(last[1:-1])] = value
        else:
            node[last] = value
        return raw
    return build


# field (as in the validator's tuples) -> (where the value goes, a valid value, the error path,
# what is refused besides control characters, extra spec, start).
# `refuse`: "word" (control chars, ' ', '#', ','), "path" (control chars), "free" (NUL only),
# "other" (not a string field: any hostile string is refused).
FIELDS = {
    ("top", "version"): ("version", 1, "version", "other", {}, base),
    ("top", "name"): ("name", "web", "name", "word", {}, base),
    ("top", "hostname"): ("hostname", "web.example", "hostname", "word", {}, base),
    ("top", "state_dir"): ("state_dir", "/var/lib/x", "state_dir", "path+,", {}, base),
    ("top", "run_dir"): ("run_dir", "/run/x", "run_dir", "path+,", {}, base),
    ("rootfs", "path"): ("rootfs.path", "/srv/rootfs", "rootfs.path", "path", {}, base),
    ("rootfs", "overlay"): ("rootfs.overlay", True, "rootfs.overlay", "other", {}, base),
    ("rootfs", "readonly"): ("rootfs.readonly", True, "rootfs.readonly", "other", {}, base),
    ("rootfs", "propagation"): ("rootfs.propagation", "rslave", "rootfs.propagation", "word", {}, base),
    ("image", "name"): ("rootfs.image.name", "busybox", "rootfs.image.name", "word", {},
                        stored_image_base),
    ("image", "source"): ("rootfs.image.source", "/srv/image", "rootfs.image.source", "path", {},
                          image_base),
    ("image", "format"): ("rootfs.image.format", "oci", "rootfs.image.format", "word", {}, image_base),
    ("image", "tag"): ("rootfs.image.tag", "latest", "rootfs.image.tag", "word", {}, image_base),
    ("image", "digest"): ("rootfs.image.digest", DIGEST, "rootfs.image.digest", "word", {},
                          image_base),
    ("image", "platform"): ("rootfs.image.platform", "linux/amd64", "rootfs.image.platform", "word",
                            {}, image_base),
    ("image", "store"): ("rootfs.image.store", "/var/lib/s", "rootfs.image.store", "path+,", {},
                         image_base),
    ("image", "auth_file"): ("rootfs.image.auth_file", "/root/auth.json", "rootfs.image.auth_file", "path",
                             {}, registry_image_base),
    ("image", "ca_cert"): ("rootfs.image.ca_cert", "/etc/ca.pem", "rootfs.image.ca_cert", "path", {},
                           registry_image_base),
    ("image", "tls_verify"): ("rootfs.image.tls_verify", False, "rootfs.image.tls_verify", "other", {},
                              registry_image_base),
    ("image", "pull"): ("rootfs.image.pull", "always", "rootfs.image.pull", "word", {}, registry_image_base),
    ("image", "limits"): ("rootfs.image.limits.bytes", 1 << 30, "rootfs.image.limits.bytes", "other", {},
                          image_base),
    ("namespaces", "type"): ("namespaces[0].type", "mount", "namespaces[0].type", "word",
                             {"namespaces": [{}]}, base),
    ("namespaces", "path"): ("namespaces[1].path", "/proc/1/ns/net", "namespaces[1].path", "path",
                             {"namespaces": ["mount", {"type": "net"}]}, base),
    ("mounts", "target"): ("mounts[0].target", "/data", "mounts[0].target", "path",
                           {"mounts": [{"type": "tmpfs"}]}, base),
    ("mounts", "type"): ("mounts[0].type", "tmpfs", "mounts[0].type", "word",
                         {"mounts": [{"target": "/data"}]}, base),
    ("mounts", "source"): ("mounts[0].source", "/srv/data", "mounts[0].source", "path",
                           {"mounts": [{"target": "/data", "type": "bind"}]}, base),
    ("mounts", "options"): ("mounts[0].options[0]", "nosuid", "mounts[0].options[0]", "word",
                            {"mounts": [{"target": "/data", "type": "tmpfs", "options": [""]}]}, base),
    ("volumes", "type"): ("volumes[0].type", "tmpfs", "volumes[0].type", "word",
                          {"volumes": [{"target": "/data"}]}, base),
    ("volumes", "source"): ("volumes[0].source", "/srv/data", "volumes[0].source", "path",
                            {"volumes": [{"target": "/data"}]}, base),
    ("volumes", "target"): ("volumes[0].target", "/data", "volumes[0].target", "path",
                            {"volumes": [{"type": "tmpfs"}]}, base),
    ("volumes", "readonly"): ("volumes[0].readonly", True, "volumes[0].readonly", "other",
                              {"volumes": [{"target": "/data"}]}, base),
    ("volumes", "recursive"): ("volumes[0].recursive", True, "volumes[0].recursive", "other",
                               {"volumes": [{"target": "/data", "source": "/s"}]}, base),
    ("volumes", "propagation"): ("volumes[0].propagation", "rslave", "volumes[0].propagation", "word",
                                 {"volumes": [{"target": "/data", "source": "/s"}]}, base),
    ("volumes", "options"): ("volumes[0].options[0]", "nosuid", "volumes[0].options[0]", "word",
                             {"volumes": [{"target": "/data", "options": [""]}]}, base),
    ("volumes", "size"): ("volumes[0].size", "64m", "volumes[0].size", "word",
                          {"volumes": [{"target": "/data"}]}, base),
    ("volumes", "mode"): ("volumes[0].mode", "1777", "volumes[0].mode", "word",
                          {"volumes": [{"target": "/data"}]}, base),
    ("volumes", "create"): ("volumes[0].create", True, "volumes[0].create", "other",
                            {"volumes": [{"target": "/data", "source": "/s"}]}, base),
    ("devices", "path"): ("devices[0].path", "/dev/fuse", "devices[0].path", "path",
                          {"devices": [{"type": "c", "major": 10, "minor": 229}]}, base),
    ("devices", "type"): ("devices[0].type", "c", "devices[0].type", "word",
                          {"devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]}, base),
    ("devices", "major"): ("devices[0].major", 10, "devices[0].major", "other",
                           {"devices": [{"path": "/dev/fuse", "minor": 229}]}, base),
    ("devices", "minor"): ("devices[0].minor", 229, "devices[0].minor", "other",
                           {"devices": [{"path": "/dev/fuse", "major": 10}]}, base),
    ("devices", "mode"): ("devices[0].mode", "0666", "devices[0].mode", "word",
                          {"devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]}, base),
    ("devices", "uid"): ("devices[0].uid", 0, "devices[0].uid", "other",
                         {"devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]}, base),
    ("devices", "gid"): ("devices[0].gid", 0, "devices[0].gid", "other",
                         {"devices": [{"path": "/dev/fuse", "major": 10, "minor": 229}]}, base),
    ("etc", "hosts"): ("etc.hosts", True, "etc.hosts", "other", {}, base),
    ("etc", "hostname"): ("etc.hostname", True, "etc.hostname", "other", {}, base),
    ("etc", "resolv_conf"): ("etc.resolv_conf", True, "etc.resolv_conf", "other", {}, base),
    ("etc", "extra_hosts"): ("etc.extra_hosts[0].names[0]", "db", "etc.extra_hosts[0].names[0]",
                             "word", {"etc": {"extra_hosts": [{"address": "10.0.0.1", "names": [""]}]}},
                             base),
    ("extra_hosts", "address"): ("etc.extra_hosts[0].address", "10.0.0.1",
                                 "etc.extra_hosts[0].address", "word",
                                 {"etc": {"extra_hosts": [{"names": ["db"]}]}}, base),
    ("extra_hosts", "names"): ("etc.extra_hosts[0].names[0]", "db", "etc.extra_hosts[0].names[0]",
                               "word", {"etc": {"extra_hosts": [{"address": "::1", "names": [""]}]}},
                               base),
    ("dns", "nameservers"): ("dns.nameservers[0]", "10.0.0.53", "dns.nameservers[0]", "word",
                             {"dns": {"nameservers": [""]}}, base),
    ("dns", "search"): ("dns.search[0]", "example.com", "dns.search[0]", "word",
                        {"dns": {"search": [""]}}, base),
    ("dns", "options"): ("dns.options[0]", "ndots:2", "dns.options[0]", "word",
                         {"dns": {"options": [""]}}, base),
    ("top", "masked_paths"): ("masked_paths[0]", "/proc/kcore", "masked_paths[0]", "path",
                              {"masked_paths": [""]}, base),
    ("top", "add_masked_paths"): ("add_masked_paths[0]", "/proc/x", "add_masked_paths[0]", "path",
                                  {"add_masked_paths": [""]}, base),
    ("top", "readonly_paths"): ("readonly_paths[0]", "/proc/sys", "readonly_paths[0]", "path",
                                {"readonly_paths": [""]}, base),
    ("top", "add_readonly_paths"): ("add_readonly_paths[0]", "/proc/y", "add_readonly_paths[0]",
                                    "path", {"add_readonly_paths": [""]}, base),
    ("process", "args"): ("process.args[0]", "sh", "process.args[0]", "free",
                          {"process": {"args": [""]}}, base),
    ("process", "env"): ("process.env[0]", "A=1", "process.env[0]", "free",
                         {"process": {"env": [""]}}, base),
    ("process", "cwd"): ("process.cwd", "/srv", "process.cwd", "path", {}, base),
    ("process", "user"): ("process.user", "1000:1000", "process.user", "word", {}, base),
}
# Sections whose fields are each covered through their own rows above.
SECTIONS_COVERED_BY_ROWS = ("rootfs", "image", "namespaces", "mounts", "volumes", "devices", "etc",
                            "dns", "process")

FIELD_TUPLES = {
    "top": _spec.TOP_FIELDS, "rootfs": _spec_rootfs.ROOTFS_FIELDS, "image": _spec_rootfs.IMAGE_FIELDS,
    "namespaces": _spec.NAMESPACE_FIELDS, "mounts": _spec_mounts.MOUNT_FIELDS, "volumes": _spec_mounts.VOLUME_FIELDS,
    "devices": _spec_mounts.DEVICE_FIELDS, "etc": _spec.ETC_FIELDS, "extra_hosts": _spec.EXTRA_HOST_FIELDS,
    "dns": _spec.DNS_FIELDS, "process": _spec.PROCESS_FIELDS,
}


def test_every_field_has_a_hostile_case():
    missing = [(section, field) for section, fields in FIELD_TUPLES.items() for field in fields
               if (section, field) not in FIELDS
               and not (section in ("top", "rootfs") and field in SECTIONS_COVERED_BY_ROWS)]
    assert missing == []


def hostile_values(valid, refuse):
    """(value, refused?) pairs for one field."""
    text = valid if isinstance(valid, str) else str(valid)
    if refuse == "free":   # kept verbatim, but for NUL (a bare NAME is no env entry)
        return [(text + ch, ch == "\x00") for ch in CONTROL]
    cases = [(ch, True) for ch in CONTROL] + [(text + ch, True) for ch in CONTROL]
    cases += [("\n" + text, True)]
    seps = {"word": SEPARATORS, "path": [], "path+,": [","], "other": SEPARATORS}
    cases += [(text + sep + "x", True) for sep in seps[refuse]]
    return cases


def load(raw):
    resolved = RESOLVED if isinstance(raw.get("rootfs"), dict) and "image" in raw["rootfs"] else None
    return load_spec(raw, resolved_image=resolved)


def field_cases():
    for key, (path, valid, where, refuse, extra, start) in sorted(FIELDS.items()):
        for value, refused in hostile_values(valid, refuse):
            yield pytest.param(path, value, where, refused, extra, start,
                               id="%s.%s-%r" % (key[0], key[1], value))


@pytest.mark.parametrize("key", sorted(FIELDS), ids=lambda k: "%s.%s" % k)
def test_the_valid_value_of_each_row_validates(key):
    path, valid, _where, _refuse, extra, start = FIELDS[key]
    load(at(path, valid, start, extra)())


@pytest.mark.parametrize("path, value, where, refused, extra, start", list(field_cases()))
def test_hostile_string_in_every_field(path, value, where, refused, extra, start):
    raw = at(path, value, start, extra)()
    if not refused:
        spec = load(raw)
        section, field = where.split(".")[0], where.split(".")[1].split("[")[0]
        assert value in spec[section][field]
        return
    with pytest.raises(SpecError) as info:
        load(raw)
    assert where in dict(info.value.errors), info.value.errors


# --- config.json -----------------------------------------------------------------------------

def config():
    return {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
            "process": {"args": ["sh"], "env": ["PATH=/bin"], "cwd": "/"},
            "linux": {"namespaces": [{"type": "mount"}, {"type": "uts"}]},
            "mounts": [{"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                        "options": ["nosuid"]}]}


CONFIG_FIELDS = {
    "hostname": ("hostname", "web", False),
    "root.path": ("root.path", "rootfs", False),
    "process.args": ("process.args[0]", "sh", True),
    "process.env": ("process.env[0]", "PATH=/bin", True),
    "process.cwd": ("process.cwd", "/srv", False),
    "mounts.destination": ("mounts[0].destination", "/data", False),
    "mounts.type": ("mounts[0].type", "tmpfs", False),
    "mounts.source": ("mounts[0].source", "tmpfs", False),
    "mounts.options": ("mounts[0].options[0]", "nosuid", False),
    "linux.namespaces.type": ("linux.namespaces[1].type", "uts", False),
    "linux.namespaces.path": ("linux.namespaces[1].path", "/proc/1/ns/uts", False),
    "linux.maskedPaths": ("linux.maskedPaths[0]", "/proc/kcore", False),
    "linux.readonlyPaths": ("linux.readonlyPaths[0]", "/proc/sys", False),
    "linux.rootfsPropagation": ("linux.rootfsPropagation", "rslave", False),
    "linux.devices.path": ("linux.devices[0].path", "/dev/fuse", False),
    "linux.devices.type": ("linux.devices[0].type", "c", False),
}


def put(doc, path, value):
    keys = path.replace("[", ".[").split(".")
    node = doc
    for key, following in zip(keys, keys[1:]):
        if key.startswith("["):
            node = node[int(key[1:-1])]
        elif following.startswith("["):
            node = node.setdefault(key, [])
            while len(node) <= int(following[1:-1]):
                node.append({} if "." in path.split(following, 1)[1] else "")
        else:
            node = node.setdefault(key, {})
    if keys[-1].startswith("["):
        node[int(keys[-1][1:-1])] = value
    else:
        node[keys[-1]] = value


def config_cases():
    for name, (path, valid, free) in sorted(CONFIG_FIELDS.items()):
        for value, refused in hostile_values(valid, "free" if free else "path"):
            yield pytest.param(path, value, refused, id="%s-%r" % (name, value))


def import_and_load(doc):
    raw, _warnings = _oci.import_config(doc, "/bundle")
    return load_spec(raw, base_dir="/bundle")


@pytest.mark.parametrize("path, value, refused", list(config_cases()))
def test_hostile_string_in_every_config_field(path, value, refused):
    doc = config()
    if path.startswith("linux.devices"):
        doc["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    put(doc, path, value)
    if not refused:
        import_and_load(doc)
        return
    with pytest.raises(SpecError) as info:
        import_and_load(doc)
    assert path in dict(info.value.errors), info.value.errors


def test_config_option_with_newline_is_refused_naming_it(tmp_path):
    doc = config()
    doc["mounts"][0]["options"] = ["nosuid\n/ /mnt none rbind"]
    (tmp_path / "config.json").write_text(__import__("json").dumps(doc))
    with pytest.raises(SpecError) as info:
        _oci.spec_from_bundle(str(tmp_path))
    assert "mounts[0].options[0]" in dict(info.value.errors)


def test_config_keys_with_newlines_do_not_reach_warnings():
    doc = config()
    doc["process"]["evil\nkey"] = 1
    raw, warnings = _oci.import_config(doc, "/bundle", lenient=True)
    assert warnings and not any("\n" in w for w in warnings)


def test_config_json_duplicate_keys_and_depth_are_refused(tmp_path):
    (tmp_path / "config.json").write_text('{"ociVersion": "1.0.2", "ociVersion": "1.0.2"}')
    with pytest.raises(SpecError, match="twice"):
        _oci.spec_from_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(SpecError, match="deep"):
        _oci.spec_from_bundle(str(tmp_path))


def test_config_user_ids_are_checked():
    for uid in (-1, 2 ** 32, "0\n", True):
        doc = config()
        doc["process"]["user"] = {"uid": uid, "gid": 0}
        with pytest.raises(SpecError) as info:
            import_and_load(doc)
        assert "process.user.uid" in dict(info.value.errors)


def test_bad_annotation_is_refused_not_a_traceback():
    doc = config()
    doc["annotations"] = {_oci.ANNOTATION: '{"dns": [1], "etc": "x", "mounts": -1}'}
    with pytest.raises(SpecError) as info:
        import_and_load(doc)
    assert any(path.startswith("annotations.") for path in dict(info.value.errors))


# --- spec files ------------------------------------------------------------------------------

def quick(func, *args):
    start = time.monotonic()
    with pytest.raises(SpecError) as info:
        func(*args)
    assert time.monotonic() - start < 1.0
    return str(info.value)


def test_duplicate_key_is_refused_naming_key_and_line():
    message = quick(_spec_file.load_text, b"name: a\nrootfs: {path: /r}\nname: b\n", "s.yaml")
    assert "'name'" in message and "line 3" in message


def test_duplicate_key_in_a_nested_mapping_is_refused():
    assert "'path'" in quick(_spec_file.load_text, b"rootfs: {path: /r, path: /s}\n", "s.yaml")


def test_merge_keys_may_be_overridden():
    data = _spec_file.load_text(b"a: &a {x: 1}\nb: {<<: *a, x: 2}\n", "s.yaml")
    assert data["b"] == {"x": 2}


def test_non_utf8_is_a_clear_error():
    message = quick(_spec_file.load_text, b"name: \xff\xfe\n", "s.yaml")
    assert "not UTF-8" in message and "s.yaml" in message


def test_deep_nesting_is_refused_quickly():
    assert "deep" in quick(_spec_file.load_text, b"a: " + b"[" * 2000 + b"]" * 2000, "s.yaml")
    assert "deep" in quick(_spec_file.load_text, b"a:\n" + b"".join(
        b" " * i + b"- \n" for i in range(1, 300)), "s.yaml")


def test_alias_bomb_is_refused_quickly():
    lines = [b'a0: &a0 ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 12):
        lines.append(b"a%d: &a%d [%s]" % (i, i, b",".join([b"*a%d" % (i - 1)] * 10)))
    assert "aliases expanded" in quick(_spec_file.load_text, b"\n".join(lines), "bomb.yaml")


def test_recursive_alias_is_refused():
    assert "deep" in quick(_spec_file.load_text, b"a: &a [*a]\n", "s.yaml")


def test_load_spec_bounds_a_module_dict_too():
    shared = ["x"] * 10
    for _level in range(8):
        shared = [shared] * 10
    assert "aliases expanded" in quick(load_spec, {"name": "a", "rootfs": {"path": "/r"}, "x": shared})
    deep = {}
    node = deep
    for _level in range(2000):
        node["a"] = {}
        node = node["a"]
    assert "deep" in quick(load_spec, {"name": "a", "rootfs": {"path": "/r"}, "x": deep})


def test_cli_read_spec_uses_the_spec_file_loader(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_bytes(b"name: a\nname: b\nrootfs: {path: /r}\n")
    cli = os.path.join(collection.REPO_ROOT, "scripts", "containerfs")
    proc = subprocess.run([sys.executable, cli, "validate", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "twice" in proc.stderr, proc.stderr
    path.write_bytes(b"name: \xff\n")
    proc = subprocess.run([sys.executable, cli, "validate", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "UTF-8" in proc.stderr and "Traceback" not in proc.stderr


# --- internal fields -------------------------------------------------------------------------

def test_resolved_from_a_user_spec_is_an_unknown_field():
    raw = image_base()
    raw["rootfs"]["image"]["resolved"] = copy.deepcopy(RESOLVED)
    with pytest.raises(SpecError) as info:
        load_spec(raw, resolved_image=RESOLVED)
    assert "unknown field" in dict(info.value.errors)["rootfs.image.resolved"]


def test_resolved_from_a_user_spec_is_refused_by_the_image_loader():
    raw = image_base()
    raw["rootfs"]["image"]["resolved"] = copy.deepcopy(RESOLVED)
    with pytest.raises(SpecError) as info:
        _image_spec.load(raw)
    assert "rootfs.image.resolved" in dict(info.value.errors)


def test_resolved_through_the_internal_channel_lands_in_the_spec():
    spec = load_spec(image_base(), resolved_image=RESOLVED)
    assert spec["rootfs"]["image"]["resolved"] == RESOLVED


def bad_layer(**change):
    resolved = copy.deepcopy(RESOLVED)
    resolved["layers"][0].update(change)
    return resolved


@pytest.mark.parametrize("resolved", [
    bad_layer(compression="touch /tmp/pwn;"),
    bad_layer(compression="gzip\n"),
    bad_layer(size="1; rm -rf /"),
    bad_layer(size=-1),
    bad_layer(size=True),
    bad_layer(digest="sha256:" + "a" * 63),
    bad_layer(digest=DIGEST + "\n"),
    bad_layer(diff_id="sha256:../../etc"),
    bad_layer(path="../../etc/shadow"),
    bad_layer(path="/etc/shadow"),
    bad_layer(path="blobs/x\n"),
    bad_layer(media_type="x\ny"),
    bad_layer(extra="x"),
    dict(RESOLVED, format="auto"),
    dict(RESOLVED, format="oci\n"),
    dict(RESOLVED, manifest_digest="x"),
    dict(RESOLVED, rootfs="relative"),
    dict(RESOLVED, layers="x"),
    dict(RESOLVED, layers=["x"]),
], ids=lambda r: repr(r)[:60])
def test_bad_internal_resolved_values_are_refused(resolved):
    with pytest.raises(SpecError) as info:
        load_spec(image_base(), resolved_image=resolved)
    assert "rootfs.image" in dict(info.value.errors)


# --- tracebacks become field errors ----------------------------------------------------------

def errors_of(raw, **kw):
    with pytest.raises(SpecError) as info:
        load_spec(raw, **kw)
    return dict(info.value.errors)


@pytest.mark.parametrize("extra, where", [
    ({"namespaces": [{"type": ["mount"]}]}, "namespaces[0].type"),
    ({"namespaces": [[1]]}, "namespaces[0]"),
    ({"namespaces": [{"type": {"a": 1}}]}, "namespaces[0].type"),
    ({"mounts": ["x"]}, "mounts[0]"),
    ({"volumes": [5]}, "volumes[0]"),
    ({"volumes": [{"target": 5}]}, "volumes[0].target"),
    ({"devices": [None]}, "devices[0]"),
    ({"etc": {"extra_hosts": [["x"]]}}, "etc.extra_hosts[0]"),
    ({1: "x"}, "1"),
    ({"process": {"env": {"A": {"b": 1}}}}, "process.env.A"),
    ({"process": {"env": {"A": True}}}, "process.env.A"),
    ({"devices": [{"path": "/dev/x", "major": -1, "minor": 0}]}, "devices[0].major"),
    ({"devices": [{"path": "/dev/x", "major": 1, "minor": -1}]}, "devices[0].minor"),
    ({"devices": [{"path": "/dev/x", "major": 2 ** 12, "minor": 0}]}, "devices[0].major"),
    ({"devices": [{"path": "/dev/x", "major": 2 ** 40, "minor": 0}]}, "devices[0].major"),
    ({"devices": [{"path": "/dev/x", "major": 1, "minor": 2 ** 20}]}, "devices[0].minor"),
    ({"devices": [{"path": "/dev/x", "major": 1, "minor": 1, "uid": -1}]}, "devices[0].uid"),
    ({"devices": [{"path": "/dev/x", "major": 1, "minor": 1, "gid": 2 ** 32 - 1}]}, "devices[0].gid"),
    ({"process": {"user": "1" * 20}}, "process.user"),
    ({"process": {"user": 2 ** 32 - 1}}, "process.user"),
    ({"process": {"user": "\u0661\u0662"}}, "process.user"),
    ({"process": {"user": "1000\n"}}, "process.user"),
    ({"process": {"user": -1}}, "process.user"),
])
def test_former_tracebacks_are_field_errors(extra, where):
    raw = base()
    raw.update(extra)
    assert where in errors_of(raw)


def test_largest_ids_and_device_numbers_validate():
    raw = base()
    raw["devices"] = [{"path": "/dev/x", "major": 2 ** 12 - 1, "minor": 2 ** 20 - 1,
                       "uid": 2 ** 32 - 2, "gid": 2 ** 32 - 2}]
    raw["process"] = {"user": "%d:%d" % (2 ** 32 - 2, 2 ** 32 - 2)}
    spec = load_spec(raw)
    assert spec["process"]["uid"] == 2 ** 32 - 2


def test_image_volumes_with_non_string_targets_are_no_traceback():
    raw = {"name": "a", "volumes": [{"target": 5}], "mounts": [{"target": ["x"]}]}
    _image_spec._image_volumes(raw, ["/data"])   # no AttributeError: the validator reports them
    assert [v["target"] for v in raw["volumes"][1:]] == ["/data"]
    assert "volumes[0].target" in errors_of(raw)


def test_image_config_of_the_wrong_types_is_left_out():
    meta = {"config": {"Entrypoint": "sh", "Cmd": [1], "Env": ["A=1"], "WorkingDir": 5,
                       "User": ["0"], "Volumes": {"/a": {}, "/b": None}}}
    assert _image_spec._config_of(meta) == {"Env": ["A=1"], "Volumes": ["/a", "/b"]}


def test_image_volumes_build_no_path_from_a_bad_name():
    raw = {"name": "../../evil", "volumes": []}
    _image_spec._image_volumes(raw, ["/data"])
    assert raw["volumes"] == []


# --- option words ------------------------------------------------------------------------------

@pytest.mark.parametrize("options, where", [
    (["nosuid\n/ /mnt none rbind"], "volumes[0].options[0]"),
    (["nosuid size=1m"], "volumes[0].options[0]"),
    (["nosuid\tsize=1m"], "volumes[0].options[0]"),
    (["size=1m,nosuid"], "volumes[0].options[0]"),
    (["#x"], "volumes[0].options[0]"),
    (["a\\b"], "volumes[0].options[0]"),
    (['a"b'], "volumes[0].options[0]"),
    (["a'b"], "volumes[0].options[0]"),
    ([""], "volumes[0].options[0]"),
    (["nosuid", "\u00a0"], "volumes[0].options[1]"),
])
def test_option_words_must_be_one_word(options, where):
    raw = base()
    raw["volumes"] = [{"target": "/data", "options": options}]
    assert where in errors_of(raw)


def test_readonly_volume_with_rw_word_is_refused():
    for word in ("rw", "rrw"):
        raw = base()
        raw["volumes"] = [{"target": "/data", "readonly": True, "options": ["nosuid", word]}]
        assert "contradicts readonly" in errors_of(raw)["volumes[0].options[1]"]


def test_two_propagation_words_are_refused():
    raw = base()
    raw["mounts"] = [{"target": "/data", "type": "bind", "source": "/s",
                      "options": ["rbind", "shared", "private"]}]
    assert "mounts[0].options[2]" in errors_of(raw)


def test_volume_propagation_word_must_agree_with_the_field():
    raw = base()
    raw["volumes"] = [{"target": "/data", "source": "/s", "propagation": "rslave",
                       "options": ["shared"]}]
    assert "mounts" not in errors_of(raw) and "volumes[0].options[0]" in errors_of(raw)
    raw["volumes"] = [{"target": "/data", "source": "/s", "options": ["shared"]}]
    assert "volumes[0].options[0]" in errors_of(raw)   # the default is rprivate
    raw["volumes"] = [{"target": "/data", "source": "/s", "propagation": "rslave",
                       "options": ["rslave"]}]
    load_spec(raw)


# --- regexes match whole strings -----------------------------------------------------------------

@pytest.mark.parametrize("extra, where", [
    ({"name": "web\n"}, "name"),
    ({"hostname": "web\n"}, "hostname"),
    ({"etc": {"extra_hosts": [{"address": "10.0.0.1\n", "names": ["db"]}]}},
     "etc.extra_hosts[0].address"),
    ({"etc": {"extra_hosts": [{"address": "10.0.0.1", "names": ["db\n"]}]}},
     "etc.extra_hosts[0].names[0]"),
    ({"etc": {"extra_hosts": [{"address": "\u0661.2.3.4", "names": ["db"]}]}},
     "etc.extra_hosts[0].address"),
    ({"process": {"env": ["A\n=1"]}}, "process.env[0]"),
    ({"volumes": [{"target": "/t", "size": "1m\n"}]}, "volumes[0].size"),
    ({"volumes": [{"target": "/t", "mode": "0755\n"}]}, "volumes[0].mode"),
    ({"volumes": [{"target": "/t", "source": "/srv\n/etc"}]}, "volumes[0].source"),
    ({"devices": [{"path": "/dev/x", "major": 1, "minor": 1, "mode": "0666\n"}]}, "devices[0].mode"),
])
def test_trailing_newline_does_not_pass_a_pattern(extra, where):
    raw = base()
    raw.update(extra)
    assert where in errors_of(raw)


def test_args_and_env_values_keep_newlines_verbatim():
    raw = base()
    raw["process"] = {"args": ["sh", "-c", "echo a\necho b\t\x1b"], "env": ["A=x\ny", "B=\u2028"]}
    spec = load_spec(raw)
    assert spec["process"]["args"][2] == "echo a\necho b\t\x1b"
    assert spec["process"]["env"][-2:] == ["A=x\ny", "B=\u2028"] or "A=x\ny" in spec["process"]["env"]


def test_a_hostile_spec_directory_does_not_reach_relative_paths():
    raw = {"name": "a", "rootfs": {"path": "rootfs"}, "volumes": [{"source": "data", "target": "/d"}]}
    errors = errors_of(raw, base_dir="/tmp/a\n/etc")
    assert "rootfs.path" in errors and "volumes[0].source" in errors


@pytest.mark.parametrize("path, value", [
    ("linux.devices[0].type", "x"), ("linux.devices[0].path", "dev/x"), ("linux.maskedPaths[0]", "proc"),
    ("linux.rootfsPropagation", "sideways"), ("linux.namespaces[1].path", "ns"),
])
def test_config_errors_name_the_config_field(path, value):
    doc = config()
    doc["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]
    put(doc, path, value)
    with pytest.raises(SpecError) as info:
        _oci.import_config(doc, "/bundle")
    assert path in dict(info.value.errors)
