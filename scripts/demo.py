"""`make demo`: run the example enrichment DAG end to end and show what it changed.

By default everything is local: the Truto emulator on a free loopback port, a temporary
AIRFLOW_HOME with a sqlite metadata DB, and ``dag.test()``. With ``TRUTO_API_TOKEN`` and
``TRUTO_INTEGRATED_ACCOUNT_ID`` set, the same DAG runs against the real Truto API, writing only to
the opportunity ids listed in ``TRUTO_OPPORTUNITY_IDS``.

Exit status: 0 when the DAG run succeeded, 1 when it failed, 2 on a configuration problem.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
import tempfile
from collections.abc import Iterator
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
DAG_ID = "example_truto_enrichment"
SHOWN_FIELDS = ("name", "amount", "stage", "status", "custom_fields", "updated_at")


def _prepare_airflow_home() -> pathlib.Path:
    home = pathlib.Path(tempfile.mkdtemp(prefix="truto-demo-airflow-"))
    os.environ["AIRFLOW_HOME"] = str(home)
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    os.environ["AIRFLOW__CORE__DAGS_FOLDER"] = str(ROOT / "dags_examples")
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
    os.environ["AIRFLOW__DATABASE__LOAD_DEFAULT_CONNECTIONS"] = "False"
    os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"
    return home


@contextlib.contextmanager
def _target() -> Iterator[tuple[str, list[str], str, Any]]:
    """Yield (mode description, opportunity ids, integrated account id, emulator handle or
    ``None``) with the connection set."""
    token = os.environ.get("TRUTO_API_TOKEN", "").strip()
    if token:
        account = os.environ.get("TRUTO_INTEGRATED_ACCOUNT_ID", "").strip()
        ids = [
            i.strip() for i in os.environ.get("TRUTO_OPPORTUNITY_IDS", "").split(",") if i.strip()
        ]
        if not account or not ids:
            print(
                "Real-Truto mode needs TRUTO_INTEGRATED_ACCOUNT_ID and TRUTO_OPPORTUNITY_IDS "
                "(comma-separated ids the demo may write to); nothing was sent.",
                file=sys.stderr,
            )
            raise SystemExit(2)
        os.environ["AIRFLOW_CONN_TRUTO_DEFAULT"] = json.dumps(
            {
                "conn_type": "truto",
                "host": os.environ.get("TRUTO_BASE_URL", "https://api.truto.one"),
                "password": token,
                "extra": {"integrated_account_id": account},
            }
        )
        yield "real Truto API", ids, account, None
        return

    from truto_airflow.emulator import run_emulator

    with run_emulator() as emu:
        account = emu.accounts["hubspot"]
        os.environ["AIRFLOW_CONN_TRUTO_DEFAULT"] = emu.airflow_conn_json(account="hubspot")
        ids = emu.opportunity_ids(account)[:3]
        yield f"local Truto emulator at {emu.base_url}", ids, account, emu


def _snapshot(ids: list[str], account: str) -> dict[str, dict[str, Any]]:
    from truto_airflow.hooks.truto import TrutoHook

    with TrutoHook("truto_default") as hook:
        return {
            opp_id: hook.get_opportunity(
                opp_id, integrated_account_id=account, ignore_remote_data=True
            )
            for opp_id in ids
        }


def _show(value: Any) -> str:
    if isinstance(value, dict) and set(value) <= {"id", "name"}:
        return str(value.get("name") or value.get("id"))
    return json.dumps(value, default=str) if isinstance(value, (dict, list)) else str(value)


def _print_changes(before: dict[str, dict[str, Any]], after: dict[str, dict[str, Any]]) -> int:
    changed = 0
    for opp_id, old in before.items():
        new = after.get(opp_id, {})
        diffs = [f for f in SHOWN_FIELDS if old.get(f) != new.get(f)]
        if not diffs:
            continue
        changed += 1
        print(f"\nopportunity {opp_id} ({new.get('name') or old.get('name')}):")
        for f in diffs:
            print(f"  {f:14} {_show(old.get(f))}  ->  {_show(new.get(f))}")
    return changed


def _quiet_dynamic_asset_warnings() -> None:
    """Airflow warns "AssetModel ... not found" / "inactive" for an asset an alias creates at run
    time until a DAG processor has seen a DAG scheduled on it; ``dag.test()`` runs none, so every
    event here would warn. The events are still recorded (README, "The enrichment loop")."""
    os.environ.setdefault("AIRFLOW__LOGGING__NAMESPACE_LEVELS", "airflow.assets.manager=error")


def main() -> int:
    _prepare_airflow_home()
    _quiet_dynamic_asset_warnings()
    with _target() as (mode, ids, account, emulator):
        print(f"truto-airflow demo: DAG {DAG_ID!r} against the {mode}")
        print(f"opportunities: {', '.join(ids)}")

        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb()
        bag = DagBag(dag_folder=str(ROOT / "dags_examples"))
        if bag.import_errors:
            for path, err in bag.import_errors.items():
                print(f"import error in {path}:\n{err}", file=sys.stderr)
            return 1
        dag = bag.get_dag(DAG_ID)
        if dag is None:
            print(f"DAG {DAG_ID!r} not found in dags_examples/", file=sys.stderr)
            return 1

        before = _snapshot(ids, account)
        dag_run = dag.test(run_conf={"opportunity_ids": ids, "integrated_account_id": account})
        states = {ti.task_id: ti.state for ti in dag_run.get_task_instances()}
        after = _snapshot(ids, account)

        print(f"\nDAG run {dag_run.run_id}: {dag_run.state}")
        for task_id, state in sorted(states.items()):
            print(f"  {task_id:28} {state}")
        changed = _print_changes(before, after)
        print(f"\n{changed} opportunit{'y' if changed == 1 else 'ies'} changed.")
        ok = str(dag_run.state) in {"success", "DagRunState.SUCCESS"}
        if emulator is not None:  # the loop rewrites whole accounts: emulator only
            ok = _demo_loop(bag, emulator) and ok
        return 0 if ok else 1


LOOP_DAG_ID = "example_truto_enrichment_loop"
LOOP_ACCOUNTS = ("pipedrive", "attio", "salesforce")


def _return_value(run: Any, task_id: str) -> Any:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = (
            session.query(XComModel)
            .filter_by(dag_id=run.dag_id, run_id=run.run_id, task_id=task_id, key="return_value")
            .one_or_none()
        )
        return None if row is None else XComModel.deserialize_value(row)


def _demo_loop(bag: Any, emulator: Any) -> bool:
    """Run the enrichment loop twice on three emulator accounts: scores written, then none."""
    dag = bag.get_dag(LOOP_DAG_ID)
    accounts = [emulator.accounts[key] for key in LOOP_ACCOUNTS]
    shown = [(a, emulator.opportunity_ids(a)[0]) for a in accounts]
    before = {key: emulator.opportunity(*key) for key in shown}
    print(f"\n--- DAG {LOOP_DAG_ID!r}: export -> score -> partition -> write -> summary")
    print(f"accounts: {', '.join(LOOP_ACCOUNTS)}")
    ok = True
    for attempt in ("first run", "second run (same scores)"):
        run = dag.test(run_conf={"integrated_account_ids": accounts, "chunk_size": 20})
        summary = _return_value(run, "summary")
        print(f"{attempt}: {run.state}; {summary}")
        ok = ok and str(run.state) in {"success", "DagRunState.SUCCESS"}
    for (account, opp_id), old in before.items():
        new = emulator.opportunity(account, opp_id) or {}
        print(
            f"  {opp_id:24} custom_fields {_show((old or {}).get('custom_fields'))}  ->  "
            f"{_show(new.get('custom_fields'))}"
        )
    return ok


if __name__ == "__main__":
    raise SystemExit(main())
