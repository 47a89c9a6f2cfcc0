"""Regenerate the PromptSRC golden files from an official checkout (not a test; see README.md).

    python tests/golden/promptsrc/make_golden.py /path/to/PromptSRC /path/to/Dassl.pytorch

The checkout is copied to a temporary folder, official.patch is applied there, and the official trainer is run
by tests/golden/official_mp_driver.py (method "promptsrc").
"""

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from official_mp_driver import make  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    make("promptsrc", Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) == 4 else HERE)
