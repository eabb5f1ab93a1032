"""Training, evaluation and calibration of the Task 1 classifiers (the paper's setup).

- :mod:`.train` - :func:`~training.train.train` yields typed records from :mod:`.progress`.
- :mod:`.data`, :mod:`.sampler`, :mod:`.losses` - labels CSV, class-aware sampling, the DB loss.
- :mod:`.metrics`, :mod:`.report`, :mod:`.calibration` - evaluation, reports, thresholds.

No Qt, no database, no app import (an import-linter contract): the app calls in, never the
reverse.
"""
