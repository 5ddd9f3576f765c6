"""The typed form of mount options: parsed once, turned back into words in one place."""
import pytest

from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import mountopts


def test_parse_sorts_words_into_their_kinds():
    typed = mountopts.parse(["rbind", "ro", "nosuid", "dev", "rnoexec", "size=1m", "mode=0700", "rslave"])
    assert typed == {"bind": "rbind", "set": ["ro", "nosuid"], "clear": ["dev"], "recursive": ["rnoexec"],
                     "propagation": "rslave", "data": ["size=1m", "mode=0700"]}


@pytest.mark.parametrize("words,ro", [(["ro", "rw"], False), (["rw", "ro"], True), (["ro"], True), ([], False)])
def test_the_last_word_for_a_flag_wins(words, ro):
    """As in an option string: `ro,rw` is read-write (the fault of issue 8's first case)."""
    typed = mountopts.parse(words)
    assert mountopts.is_readonly(typed) is ro
    assert len(typed["set"]) + len(typed["clear"]) == (1 if words else 0)


def test_rbind_wins_over_bind_and_last_propagation_and_recursive_attribute_win():
    typed = mountopts.parse(["bind", "rbind", "bind", "rprivate", "rslave", "rro", "rrw"])
    assert typed["bind"] == "rbind" and typed["propagation"] == "rslave" and typed["recursive"] == ["rrw"]


def test_words_round_trip_and_default_to_defaults():
    words = ["bind", "ro", "nosuid", "exec", "rnodev", "size=1m", "private"]
    assert mountopts.words(mountopts.parse(words)) == words
    assert mountopts.option_string(mountopts.parse([])) == "defaults"


def test_flag_helpers_copy_and_keep_the_original():
    typed = mountopts.parse(["nosuid", "ro", "mode=755"])
    later = mountopts.without_flags(typed, "ro")
    assert later["set"] == ["nosuid"] and typed["set"] == ["nosuid", "ro"]
    again = mountopts.with_flags(later, "remount", "rw", "ro")
    assert again["set"] == ["nosuid", "remount", "ro"] and again["clear"] == []
    assert mountopts.checked_flags(mountopts.parse(["noexec", "relatime", "ro", "nodev"])) == ["ro", "nodev", "noexec"]


@pytest.mark.parametrize("word,unshare", [("rslave", "slave"), ("rprivate", "private"), ("shared", "shared")])
def test_unshare_propagation(word, unshare):
    assert mountopts.unshare_propagation(word) == unshare


@pytest.mark.parametrize("words, calls", [
    (["rbind"], ["rbind"]),
    (["rbind", "ro", "nosuid", "rprivate"], ["rbind", "bind,remount,ro,nosuid", "rprivate"]),
    (["bind", "rw", "rro"], ["bind", "bind,remount,rw,rro"]),
    (["nosuid", "size=1m", "rslave"], ["nosuid,size=1m", "rslave"]),
    (["bind", "remount", "ro"], ["bind,remount,ro"]),
    ([], ["defaults"]),
])
def test_calls_split_what_mount8_does_in_several_system_calls(words, calls):
    """A bind's flags need a remount after it, and a propagation change a call of its own:
    the applier makes each on a descriptor opened after the call before."""
    typed = mountopts.parse(words)
    assert [mountopts.option_string(c) for c in mountopts.calls(typed)] == calls
    assert mountopts.parse(words) == typed, "calls() changed its argument"
