"""The report's figures, one module per stage; each module registers its figures on import.

A module here imports a stage's own figure function (e.g. `nextlab.train.plot.plot_loss`) where
the stage has one, and adds what the report needs around it: the declared inputs, the tidy data
table, and the findings with intervals. See `nextlab.report.registry` for the entry format.

A new module is listed here (in data-flow order) so that importing the package registers it, and so
that the report's code fingerprint, computed from the imports, covers it.
"""

from nextlab.report.figures import data, train, posttrain, evaluate, nondeterminism, mechanisms, positions, agent  # noqa: F401, I001
