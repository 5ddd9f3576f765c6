# -*- coding: utf-8 -*-
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mount option words: the one table the validator, the plan, the renderers and the
OCI importer/exporter share (runc keeps the same knowledge in specconv's mountFlags).

Private to the collection; may change without notice.
"""

# word -> (MS_* flag name, True if the word clears the flag)
FLAG_WORDS = {
    "ro": ("MS_RDONLY", False),
    "rw": ("MS_RDONLY", True),
    "nosuid": ("MS_NOSUID", False),
    "suid": ("MS_NOSUID", True),
    "nodev": ("MS_NODEV", False),
    "dev": ("MS_NODEV", True),
    "noexec": ("MS_NOEXEC", False),
    "exec": ("MS_NOEXEC", True),
    "sync": ("MS_SYNCHRONOUS", False),
    "async": ("MS_SYNCHRONOUS", True),
    "dirsync": ("MS_DIRSYNC", False),
    "remount": ("MS_REMOUNT", False),
    "mand": ("MS_MANDLOCK", False),
    "nomand": ("MS_MANDLOCK", True),
    "atime": ("MS_NOATIME", True),
    "noatime": ("MS_NOATIME", False),
    "diratime": ("MS_NODIRATIME", True),
    "nodiratime": ("MS_NODIRATIME", False),
    "relatime": ("MS_RELATIME", False),
    "norelatime": ("MS_RELATIME", True),
    "strictatime": ("MS_STRICTATIME", False),
    "nostrictatime": ("MS_STRICTATIME", True),
    "bind": ("MS_BIND", False),
    "rbind": ("MS_BIND|MS_REC", False),
    "silent": ("MS_SILENT", False),
    "loud": ("MS_SILENT", True),
}

PROPAGATION_WORDS = (
    "private", "rprivate", "slave", "rslave", "shared", "rshared", "unbindable", "runbindable",
)

# Recursive attribute words (mount_setattr(AT_RECURSIVE)); runc and crun accept them.
RECURSIVE_WORDS = (
    "rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
    "rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rnoatime", "ratime",
    "rstrictatime", "rnostrictatime",
)

# Words that only mean something to the runtime, never to mount(2).
RUNTIME_WORDS = ("tmpcopyup", "idmap", "ridmap", "copy-symlink", "src-nofollow", "dest-nofollow")

# Filesystem types the plan knows how to mount.
FILESYSTEM_TYPES = ("proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "bind", "none")


# Per-mount flags that mountinfo shows (its 6th field) and a plan can ask for.
CHECKED_FLAGS = ("ro", "nosuid", "nodev", "noexec")
# What a read-only bind keeps of the filesystem under it (a bind remount sets exactly the
# flags it is given); the script's inherited_flags carries the same list.
INHERITED_FLAGS = ("nosuid", "nodev", "noexec")


def is_bind(options):
    return "bind" in options or "rbind" in options


# ---------------------------------------------------------------------------------------
# The typed form: option words parsed once, at plan time. Back-ends read its fields and
# turn it back into words (`words`) only for a command line or an fstab line.
# ---------------------------------------------------------------------------------------

def parse(options):
    """Option words -> the typed form, a JSON-able dict:

    bind         None, "bind" or "rbind" (recursive bind)
    set, clear   flag words that set / clear a mount flag (MS_*), the last word for a flag
                 winning, as in an option string ("ro,rw" is rw: clear ["rw"])
    recursive    the r* attribute words (rro, rnosuid...), the last per attribute
    propagation  one propagation word, or None (the last one given)
    data         everything else: filesystem data (size=, mode=, newinstance, lowerdir=...)
    """
    typed = empty()
    for word in options:
        if word in ("bind", "rbind"):
            typed["bind"] = "rbind" if "rbind" in (word, typed["bind"]) else "bind"
        elif word in FLAG_WORDS:
            _set_flag(typed, word)
        elif word in RECURSIVE_WORDS:
            attribute = _recursive_attribute(word)
            typed["recursive"] = [w for w in typed["recursive"] if _recursive_attribute(w) != attribute] + [word]
        elif word in PROPAGATION_WORDS:
            typed["propagation"] = word
        else:
            typed["data"].append(word)
    return typed


def empty():
    return {"bind": None, "set": [], "clear": [], "recursive": [], "propagation": None, "data": []}


def _set_flag(typed, word):
    flag, clears = FLAG_WORDS[word]
    typed["set"] = [w for w in typed["set"] if FLAG_WORDS[w][0] != flag]
    typed["clear"] = [w for w in typed["clear"] if FLAG_WORDS[w][0] != flag]
    typed["clear" if clears else "set"].append(word)


def _recursive_attribute(word):
    """rro and rrw name one attribute (MS_RDONLY), as do rnosuid and rsuid..."""
    return FLAG_WORDS[word[1:]][0]


def with_flags(typed, *words):
    """A copy of `typed` with flag words applied after its own (the last word wins)."""
    out = copy_of(typed)
    for word in words:
        _set_flag(out, word)
    return out


def without_flags(typed, *words):
    """A copy of `typed` where the flags of `words` are left as the kernel's default."""
    out = copy_of(typed)
    flags = set(FLAG_WORDS[w][0] for w in words)
    out["set"] = [w for w in out["set"] if FLAG_WORDS[w][0] not in flags]
    out["clear"] = [w for w in out["clear"] if FLAG_WORDS[w][0] not in flags]
    return out


def copy_of(typed):
    return dict((key, list(value) if isinstance(value, list) else value) for key, value in typed.items())


def is_readonly(typed):
    return "ro" in typed["set"]


def checked_flags(typed):
    """The per-mount flags of CHECKED_FLAGS this typed form sets (what mountinfo shows)."""
    return [w for w in CHECKED_FLAGS if w in typed["set"]]


def words(typed):
    """The one way back to option words, for `mount -o` and fstab: bind word, flags set,
    flags cleared, recursive attributes, data, propagation ("defaults" when empty)."""
    out = ([typed["bind"]] if typed["bind"] else []) + typed["set"] + typed["clear"]
    out += typed["recursive"] + typed["data"]
    out += [typed["propagation"]] if typed["propagation"] else []
    return out


def option_string(typed):
    return ",".join(words(typed)) or "defaults"


def unshare_propagation(word):
    """unshare(1) --propagation takes slave, shared, private or unchanged and always acts
    recursively: the word for a recursive propagation word of the plan."""
    return word[1:] if word.startswith("r") else word


def calls(typed):
    """The typed form as the mount(2) calls mount(8) makes of it, in order: the mount itself
    (a bind carries no flags: the kernel ignores them on a new bind); then, when there are
    any, a bind remount with the flags and recursive attributes; then the propagation. An
    applier that mounts through a descriptor makes each follow-up call on a descriptor
    opened after the mount before it (one opened before still names the mount below)."""
    if typed.get("bind") and "remount" not in typed["set"]:
        out = [dict(empty(), bind=typed["bind"])]
        if typed["set"] or typed["clear"] or typed["recursive"]:
            out.append(dict(empty(), bind="bind", set=["remount"] + typed["set"], clear=list(typed["clear"]),
                            recursive=list(typed["recursive"])))
    else:
        out = [dict(copy_of(typed), propagation=None)]
    if typed["propagation"]:
        out.append(dict(empty(), propagation=typed["propagation"]))
    return out
