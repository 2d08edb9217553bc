"""The review queue as MLflow's runs table shows it: the run search of the anomalies that match a
filter, and that search saved on the experiment as a view with the columns a reviewer decides on,
opened by a link.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from sensorwatch.pipeline.review.runs import (
    ASSET_TAG,
    DAY_TAG,
    KIND_TAG,
    PEAK_OVER,
    TOP_TAG,
    VERDICT_TAG,
    VERSION_TAG,
)

# The review queue as MLflow's runs table shows it: a saved view of the experiment (an experiment
# tag ``mlflow.sharedViewState.<key>`` holding the search and the table's columns, as the UI's
# "Views" menu saves one), opened by ``?viewStateShareKey=<key>``. A link cannot choose columns
# any other way, and the UI ignores a saved view when the link also carries a search. Sorted by a
# param (not by start time) and filtered, the table lists the anomalies flat, without their days.
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
QUEUE_ORDER = "params.`start`"
QUEUE_COLUMNS = (
    "params.`asset`",
    "params.`start`",
    f"metrics.`{PEAK_OVER}`",
    "metrics.`peak_score`",
    f"tags.`{TOP_TAG}`",
    f"tags.`{VERDICT_TAG}`",
)
# The table's order (MLflow's Duration column, the alarm's, after its start); a width is applied
# only to a column named in the order.
QUEUE_ORDER_OF_COLUMNS = (
    "attributes.`Run Name`",
    *QUEUE_COLUMNS[:2],
    "duration",
    *QUEUE_COLUMNS[2:],
)
QUEUE_WIDTHS = {
    "attributes.`Run Name`": 175,
    "params.`asset`": 90,
    "params.`start`": 190,
    "duration": 80,
    f"metrics.`{PEAK_OVER}`": 115,
    "metrics.`peak_score`": 85,
    f"tags.`{TOP_TAG}`": 190,
    f"tags.`{VERDICT_TAG}`": 110,
}


def queue_filter(
    day: str | None = None,
    asset: str | None = None,
    version: str | None = None,
    verdict: str | None = None,
) -> str:
    """The run search of the anomalies that match every filter given (a value MLflow's filter
    cannot quote is left out).

    >>> queue_filter(verdict="confirmed", day="2026-11-22")
    "tags.`sensorwatch.kind` = 'anomaly' and tags.`sensorwatch.day` = '2026-11-22' and tags.`verdict` = 'confirmed'"
    """
    query = [f"tags.`{KIND_TAG}` = 'anomaly'"]
    for tag, value in (
        (DAY_TAG, day),
        (VERSION_TAG, version),
        (VERDICT_TAG, verdict),
        (ASSET_TAG, asset),
    ):
        if value is not None and "'" not in value:
            query.append(f"tags.`{tag}` = '{value}'")
    return " and ".join(query)


def queue_view(search: str, name: str, created_ms: int) -> tuple[str, str]:
    """The saved view of the review queue for a run search: its key and its tag's value.

    The key follows from the view, so the same search gives the same key (and one tag).

    >>> key, value = queue_view("tags.`verdict` = 'unreviewed'", "unreviewed", 0)
    >>> key.startswith("sensorwatch-queue-"), json.loads(json.loads(value)["state"])["orderByAsc"]
    (True, False)
    """
    state = json.dumps(
        {
            "searchFilter": search,
            "orderByKey": QUEUE_ORDER,
            "orderByAsc": False,
            "selectedColumns": list(QUEUE_COLUMNS),
            "columnOrder": list(QUEUE_ORDER_OF_COLUMNS),
            "columnWidths": QUEUE_WIDTHS,
            "runListHidden": False,
        },
        sort_keys=True,
    )
    key = "sensorwatch-queue-" + hashlib.sha1(state.encode()).hexdigest()[:12]
    envelope = {"name": f"Review: {name}", "createdAt": created_ms, "state": state}
    return key, json.dumps(envelope)


def view_url(base: str, experiment_id: str, key: str) -> str:
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={key}"


def save_view(client: Any, experiment_id: str, search: str, name: str, tags: dict[str, str]) -> str:
    """Save the queue's view for ``search`` on the experiment (whose tags are ``tags``) unless it is
    there; its key."""
    key, value = queue_view(search, name, 0)
    if VIEW_TAG_PREFIX + key not in tags:
        value = queue_view(search, name, int(datetime.now(UTC).timestamp() * 1000))[1]
        client.set_experiment_tag(experiment_id, VIEW_TAG_PREFIX + key, value)
    return key
