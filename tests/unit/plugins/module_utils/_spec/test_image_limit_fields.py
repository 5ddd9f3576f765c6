"""The image budgets have one list of names (_image.budget.LIMITS): the spec's field table
takes its rootfs.image.limits fields from it, and the field path is named once."""
from ansible_collections.fromscratch.containerfs.plugins.module_utils._image import budget as _budget
from ansible_collections.fromscratch.containerfs.plugins.module_utils._spec import fields as _fields


def test_the_table_holds_the_budgets_where_the_path_says():
    assert _fields.field(_fields.IMAGE_LIMITS_PATH).fields == _fields.IMAGE_LIMITS
    assert _fields.names(_fields.IMAGE_LIMITS_PATH) == _budget.LIMIT_NAMES
    assert _fields.IMAGE_LIMIT_FIELD % {"name": "bytes"} == _fields.IMAGE_LIMITS_PATH + ".bytes"
