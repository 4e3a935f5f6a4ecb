import sys
from pathlib import Path

# the pure tests import the `samplers` package and the Gaussian test process directly
ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
