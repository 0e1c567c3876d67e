"""usecase-zoo: reproducible models for West African public-sector AI use cases.

Importing this package is cheap; the use cases (and their model registrations) load on first use
of the registry, so `zoo --help` stays fast.
"""

__version__ = "0.1.0"

# Use cases shipped with the package; each is a sub-package with data.py, models.py, task.py.
USECASES = ("crop_disease", "doc_fraud", "translation", "speech")
