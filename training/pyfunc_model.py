"""MLflow models-from-code definition of the Kuaxin credit model.

MLflow logs this file as the model's code (``mlflow.pyfunc.log_model(python_model=<this
path>, artifacts={"model_dir": ...})``) and runs it when the model is loaded; the only thing it
does on import is tell MLflow which object is the model (``mlflow.models.set_model``), which is
the models-from-code contract. The model itself is the saved :class:`training.model.CreditModel`
folder, passed as the ``model_dir`` artifact.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

CONTRIB_PREFIX = "contrib__"


class CreditPyfunc(PythonModel):
    """Pyfunc wrapper: features in; PD, log-odds, score, grade, class and contributions out."""

    def load_context(self, context: Any) -> None:
        """Load the CreditModel folder from the ``model_dir`` artifact."""
        from training.model import CreditModel

        self.model = CreditModel.load(context.artifacts["model_dir"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> pd.DataFrame:
        """Score and explain every row.

        Returns
        -------
        DataFrame
            ``pd, log_odds, score, grade, supervision_class, base`` and one
            ``contrib__<feature>`` column per feature (calibrated log-odds).
        """
        out = self.model.score(model_input).reset_index(drop=True)
        contrib, base = self.model.explain(model_input)
        out["base"] = base
        extra = pd.DataFrame(
            contrib, columns=[CONTRIB_PREFIX + n for n in self.model.feature_names]
        )
        return pd.concat([out, extra], axis=1)


mlflow.models.set_model(CreditPyfunc())
