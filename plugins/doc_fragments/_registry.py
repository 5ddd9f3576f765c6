# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
# Private to the collection; may change without notice.


class ModuleDocFragment(object):
    """How a module reaches an OCI registry (module_utils/_image/registry.py
    REGISTRY_ARGUMENT_SPEC holds the same options)."""

    DOCUMENTATION = r"""
options:
  username:
    description:
      - User name for the registry of a C(docker://) source (with O(password)).
    type: str
  password:
    description:
      - Password or token for O(username).
    type: str
  auth_file:
    description:
      - A containers-auth.json or docker config.json whose C(auths) give the registry
        credentials (the most specific key wins).
    type: path
  ca_cert:
    description:
      - PEM CA certificate(s) to verify the registry's TLS certificate (default the system CAs).
    type: path
  validate_certs:
    description:
      - V(false) accepts any certificate and plain HTTP (local or self-signed registries).
    type: bool
    default: true
"""
