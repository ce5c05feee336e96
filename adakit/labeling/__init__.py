"""Real annotation: people answer a run's open queries.

- `adakit.labeling.run`: open a run folder for labelling (domains, classes, open queries, image files).
- `adakit.labeling.answers`: read answers from a CSV or a Label Studio JSON export, validate them with
  line numbers and commit the valid ones in one transaction (idempotent).
- `adakit.labeling.labelstudio`: Label Studio tasks and labelling config for a run's queries.
- `adakit.labeling.server`: the local labelling page (`adakit label`), one ledger transaction per answer.
"""

from adakit.labeling.answers import ImportReport, import_answers, read_answers
from adakit.labeling.labelstudio import export_labelstudio
from adakit.labeling.run import LabelingRun, open_run
from adakit.labeling.server import ExposedServerWarning, make_server, serve_in_thread

__all__ = ["ExposedServerWarning", "ImportReport", "LabelingRun", "export_labelstudio", "import_answers",
           "make_server", "open_run", "read_answers", "serve_in_thread"]
