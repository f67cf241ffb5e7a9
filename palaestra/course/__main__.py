"""``python -m palaestra.course build``: see :mod:`palaestra.course.build`."""

import sys

from palaestra.course.build import main

sys.exit(main())
