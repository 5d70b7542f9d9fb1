import platform
import sys

from cellbench.methods.adapters.cellseg1.memory import keep_freed_memory


def test_keep_freed_memory_once_and_on_glibc_linux():
    first = keep_freed_memory()
    assert keep_freed_memory() is first  # once per process, same answer
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert first is True
