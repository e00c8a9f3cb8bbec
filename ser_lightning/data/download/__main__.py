"""`python -m ser_lightning.data.download CORPUS [--dest DIR]`: see the package's docstring."""

import sys

from ser_lightning.data.download import main

sys.exit(main())
