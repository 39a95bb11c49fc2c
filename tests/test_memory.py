"""A step's freed block arrays go back to the system (unetflow.memory): measured in a fresh process, against
glibc's adaptive threshold, which keeps them."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    from unetflow.memory import return_freed_arrays

    def rss_mib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) // 1024

    if sys.argv[1] == "fixed":
        assert return_freed_arrays()
    first = np.ones(2**20)  # 8 MiB: freeing it raises glibc's adaptive threshold above the blocks below
    del first
    before = rss_mib()
    kept, blocks = [], []
    for _ in range(16):  # a block's 4 MiB array, and a small result kept between them, as steps do
        blocks.append(np.ones(2**19))
        kept.append(np.ones(4096))
    del blocks
    print(rss_mib() - before)
    """
)


def _kept_mib(policy: str) -> int:
    output = subprocess.run(
        [sys.executable, "-c", SCRIPT, policy], capture_output=True, text=True, check=True
    ).stdout
    return int(output.strip())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_freed_block_arrays_go_back_to_the_system_where_the_adaptive_threshold_keeps_them() -> None:
    assert _kept_mib("adaptive") >= 32  # 64 MiB of freed blocks held between the small arrays
    assert _kept_mib("fixed") < 8
