# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""rootfs.image fields of a registry source (``docker://HOST[:PORT]/REPO[:TAG|@DIGEST]``).

A spec never holds a password: ``auth_file`` names a containers-auth.json / docker
config.json on the host where the container is set up, read when the layers are fetched
(by the image store, or by the generated script at run time). ``ca_cert`` and
``tls_verify`` say how TLS is checked (the image module's ``ca_cert`` and
``validate_certs``, registry.REGISTRY_ARGUMENT_SPEC). ``pull`` says when the registry is
asked again (see _spec.image).

Private to the collection; may change without notice.
"""

import os

from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import registry as _registry

REGISTRY_FIELDS = ("auth_file", "ca_cert", "tls_verify", "pull")
# missing: an image the store holds for this reference is used without the network (a
# no-op converge never reaches the registry); always: the tag is resolved again.
PULL_POLICIES = ("missing", "always")
DEFAULT_PULL = "missing"


def check_registry(c, image, source):
    """The normalised registry options of rootfs.image ({auth_file, ca_cert, tls_verify}),
    or None when `source` is no registry reference (its registry fields are then refused)
    or missing. `pull` is checked and left out: it steers the loading of the spec only, so
    changing it changes no plan."""
    out = {"auth_file": None, "ca_cert": None, "tls_verify": True}
    for key in ("auth_file", "ca_cert"):
        value = image.get(key)
        if value is None or not c.text("rootfs.image." + key, value):
            continue
        if not value.startswith("/"):
            c.error("rootfs.image." + key, "must be an absolute path on the host where the container "
                    "is set up, got %r" % value)
        else:
            out[key] = os.path.normpath(value)
    if image.get("tls_verify") is not None and c.typed("rootfs.image.tls_verify", image["tls_verify"],
                                                       (bool,), "a boolean"):
        out["tls_verify"] = image["tls_verify"]
    pull = image.get("pull")
    if pull is not None and c.text("rootfs.image.pull", pull) and pull not in PULL_POLICIES:
        c.error("rootfs.image.pull", "must be one of %s, got %r" % (", ".join(PULL_POLICIES), pull))
    if _registry.is_reference(source):
        return out
    if source is not None:      # (no source at all is reported as such)
        for key in REGISTRY_FIELDS:
            if image.get(key) is not None:
                c.error("rootfs.image." + key, "goes with a registry source "
                        "(docker://HOST[:PORT]/REPO[:TAG|@DIGEST])")
    return None


def options_of(image):
    """registry.RegistryOptions of a (raw) rootfs.image: what the image store is given."""
    return _registry.options_from_params({
        "auth_file": image.get("auth_file"), "ca_cert": image.get("ca_cert"),
        "validate_certs": image.get("tls_verify") is not False})
