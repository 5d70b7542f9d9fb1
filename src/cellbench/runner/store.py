"""The results database of a run: one SQLite file, versioned schema.

Why SQLite: it ships with Python (no extra dependency for a core feature), a
transaction is atomic and durable across a killed process (the journal rolls
an unfinished one back on the next open), one file is easy to copy, and any
tool (``sqlite3``, pandas, DuckDB's sqlite scanner) reads it. The runner is the
only writer (Ray workers return results to it), so SQLite's single writer is
no limit; the tables are small (one row per image, threshold and grid entry).

Schema version 2 (``meta.schema_version``)::

    meta(key, value)                       schema_version, created_by
    runs(run_id, name, fingerprint, experiment_json, experiment_path, created_at)
    invocations(invocation_id, run_id, started_at, finished_at, resumed, status,
                executor_json, environment_json)           one row per `cellbench run`
    entries(run_id, entry_key, label, dataset, task, method, method_impl, regime,
            train_images, seed, status, error, config_json, invocation_id, host,
            started_at, finished_at)                       one row per grid entry; status 'done' | 'failed'
    trainings(run_id, entry_key, wall_s, n_images, images_json, history_json, resumed_from_cache)
    evaluations(evaluation_id, run_id, entry_key, split, ground_truth, flatten_policy,
                boundary_px, thresholds_json, n_images, predict_wall_s, settings_json, result_json)
    scores(evaluation_id, class, scope, threshold, metric, value)
          scope 'pooled' (TP/FP/FN summed over images) | 'image_mean' (per-image
          mean; also f1_median, f1_std) | 'coco'; class '' is all classes,
          a class name or 'macro' with per-class evaluation
    image_scores(evaluation_id, class, image, threshold, n_gt, n_pred, dice,
                 tp, fp, fn, precision, recall, f1, ap_dsb, extra_json)
    timings(run_id, entry_key, phase, split, wall_s, n_images)   phase 'train' | 'predict'

Version 1 (cellbench before the grid-entry naming) called ``entries`` ``cells``
and ``entry_key`` ``cell_key``. A file of another schema version is refused,
never migrated: a run made by an older cellbench is rerun.
Every grid entry is written in ONE transaction; the primary key
``(run_id, entry_key)`` makes a second write of the same entry fail, so a
resumed run can neither lose nor double-count an entry.

Read a run through the record methods (:meth:`ResultStore.runs`, ``entries``,
``trainings``, ``evaluations``, ``invocations``), which return the frozen
records of :mod:`cellbench.runner.records`; :meth:`ResultStore.open_readonly`
opens a database for reading only.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import sqlite3
import sys
from pathlib import Path
from typing import Any

from cellbench import __version__
from cellbench.errors import DataError
from cellbench.runner.isa import cpu_record
from cellbench.runner.records import EntryRecord, EvaluationRecord, InvocationRecord, RunRecord, TrainingRecord

__all__ = ["SCHEMA_VERSION", "ResultStore", "environment"]

#: Prefix of the hidden file a database is built in before it is renamed into place.
PARTIAL_PREFIX = ".partial-"

SCHEMA_VERSION = 2

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    run_id INTEGER PRIMARY KEY, name TEXT NOT NULL, fingerprint TEXT NOT NULL,
    experiment_json TEXT NOT NULL, experiment_path TEXT, created_at TEXT NOT NULL);
CREATE TABLE invocations (
    invocation_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL REFERENCES runs(run_id),
    started_at TEXT NOT NULL, finished_at TEXT, resumed INTEGER NOT NULL, status TEXT NOT NULL,
    executor_json TEXT NOT NULL, environment_json TEXT NOT NULL);
CREATE TABLE entries (
    run_id INTEGER NOT NULL REFERENCES runs(run_id), entry_key TEXT NOT NULL, label TEXT NOT NULL,
    dataset TEXT NOT NULL, task TEXT NOT NULL, method TEXT NOT NULL, method_impl TEXT NOT NULL,
    regime TEXT NOT NULL, train_images INTEGER, seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('done', 'failed')), error TEXT,
    config_json TEXT NOT NULL, invocation_id INTEGER REFERENCES invocations(invocation_id),
    host TEXT, started_at TEXT, finished_at TEXT,
    PRIMARY KEY (run_id, entry_key));
CREATE TABLE trainings (
    run_id INTEGER NOT NULL, entry_key TEXT NOT NULL, wall_s REAL, n_images INTEGER,
    images_json TEXT, history_json TEXT, resumed_from_cache INTEGER,
    PRIMARY KEY (run_id, entry_key), FOREIGN KEY (run_id, entry_key) REFERENCES entries(run_id, entry_key));
CREATE TABLE evaluations (
    evaluation_id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, entry_key TEXT NOT NULL,
    split TEXT, ground_truth TEXT NOT NULL, flatten_policy TEXT, boundary_px INTEGER NOT NULL,
    thresholds_json TEXT NOT NULL, n_images INTEGER NOT NULL, predict_wall_s REAL,
    settings_json TEXT NOT NULL, result_json TEXT NOT NULL,
    FOREIGN KEY (run_id, entry_key) REFERENCES entries(run_id, entry_key));
CREATE TABLE scores (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(evaluation_id), class TEXT NOT NULL,
    scope TEXT NOT NULL, threshold REAL, metric TEXT NOT NULL, value REAL);
CREATE TABLE image_scores (
    evaluation_id INTEGER NOT NULL REFERENCES evaluations(evaluation_id), class TEXT NOT NULL,
    image TEXT NOT NULL, threshold REAL NOT NULL, n_gt INTEGER, n_pred INTEGER, dice REAL,
    tp INTEGER, fp INTEGER, fn INTEGER, precision REAL, recall REAL, f1 REAL, ap_dsb REAL, extra_json TEXT);
CREATE TABLE timings (
    run_id INTEGER NOT NULL, entry_key TEXT NOT NULL, phase TEXT NOT NULL, split TEXT,
    wall_s REAL, n_images INTEGER);
CREATE INDEX scores_by_evaluation ON scores(evaluation_id);
CREATE INDEX image_scores_by_evaluation ON image_scores(evaluation_id);
CREATE INDEX evaluations_by_entry ON evaluations(run_id, entry_key);
"""

_IMAGE_COLUMNS = ("tp", "fp", "fn", "precision", "recall", "f1", "ap_dsb")


def _now(ts: float | None = None) -> str:
    t = _dt.datetime.now(_dt.timezone.utc) if ts is None else _dt.datetime.fromtimestamp(ts, _dt.timezone.utc)
    return t.isoformat(timespec="seconds")


def environment() -> dict:
    """Where a run ran: Python, platform, CPU (model, instruction sets and the switches that hold the libraries
    below them: :mod:`cellbench.runner.isa`), CPU count and the versions of the packages that matter."""
    versions = {}
    for dist in ("cellbench", "numpy", "scipy", "scikit-image", "pycocotools", "torch", "cellpose",
                 "segment-anything", "stardist", "ray"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "host": platform.node(),
        "cpu": cpu_record(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


class ResultStore:
    """The results database of one run folder. Open with :meth:`create`, :meth:`open` or :meth:`open_readonly`."""

    def __init__(self, path: str | Path, connection: sqlite3.Connection) -> None:
        self.path = Path(path)
        self.db = connection

    # --- opening -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, *, run: dict | None = None) -> ResultStore:
        """A new results database at ``path``, written all or nothing.

        The schema (and, with ``run``, the run row: the keyword arguments of
        :meth:`create_run`) is written into a hidden partial file that is renamed
        into place when complete, so a process killed while creating leaves no
        database that ``open`` would refuse, only a partial file the next
        creation removes.
        """
        path = Path(path)
        if path.exists():
            raise DataError("results database exists already", path=path)
        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"{PARTIAL_PREFIX}{path.name}*"):
            stale.unlink()
        partial = path.with_name(f"{PARTIAL_PREFIX}{path.name}")
        db = cls._connect(partial)
        try:
            db.executescript(_SCHEMA)
            with db:
                db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
                db.execute("INSERT INTO meta VALUES ('created_by', ?)", (f"cellbench {__version__}",))
            if run is not None:
                cls(partial, db).create_run(**run)
        finally:
            db.close()
        os.replace(partial, path)
        return cls.open(path)

    @classmethod
    def open(cls, path: str | Path) -> ResultStore:
        """Open a results database to continue its run (read and write)."""
        return cls._open(Path(path), readonly=False)

    @classmethod
    def open_readonly(cls, path: str | Path) -> ResultStore:
        """Open a results database for reading only (reports, analysis): nothing is written.

        A write interrupted by a killed run is first rolled back, as any SQLite
        open does, so the last committed state is what is read.
        """
        path = Path(path)
        if path.is_file() and path.with_name(path.name + "-journal").exists():
            try:  # SQLite rolls an interrupted transaction back on the first read of a writable connection
                with contextlib.closing(sqlite3.connect(path, timeout=30)) as db:
                    db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.DatabaseError as exc:
                raise DataError(f"the last write to this results database was interrupted and cannot be rolled "
                                f"back here ({exc}); open it once where it is writable (cellbench run --resume)",
                                path=path) from exc
        return cls._open(path, readonly=True)

    @classmethod
    def _open(cls, path: Path, *, readonly: bool) -> ResultStore:
        if not path.is_file():
            raise DataError("no results database here", path=path)
        db = None
        try:
            db = cls._connect(path, readonly=readonly)
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise DataError(f"not a cellbench results database ({exc})", path=path) from exc
        if row is None:
            db.close()
            raise DataError("results database has no schema version (not created by cellbench?)", path=path)
        version = str(row[0])
        if version != str(SCHEMA_VERSION):
            db.close()
            older = version.isdigit() and int(version) < SCHEMA_VERSION
            who = "an older cellbench" if older else "a newer cellbench"
            fix = ("the run must be rerun (into a new run folder)" if older
                   else "read it with that cellbench, or rerun the experiment")
            raise DataError(
                f"results database has schema version {version}: the run was made by {who}; cellbench "
                f"{__version__} reads schema version {SCHEMA_VERSION} only and has no migration: {fix}",
                path=path,
            )
        return cls(path, db)

    @staticmethod
    def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
        if readonly:
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        else:
            db = sqlite3.connect(path, timeout=30)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys = ON")
        if not readonly:
            db.execute("PRAGMA synchronous = FULL")
        return db

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- writing -----------------------------------------------------------------
    def create_run(self, experiment: dict, *, name: str, fingerprint: str, path: str | None) -> int:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO runs (name, fingerprint, experiment_json, experiment_path, created_at) VALUES (?,?,?,?,?)",
                (name, fingerprint, json.dumps(experiment, sort_keys=True), path, _now()),
            )
        return int(cur.lastrowid)

    def begin_invocation(self, run_id: int, *, executor: dict, resumed: bool) -> int:
        with self.db:
            cur = self.db.execute(
                "INSERT INTO invocations (run_id, started_at, resumed, status, executor_json, environment_json) "
                "VALUES (?,?,?,?,?,?)",
                (run_id, _now(), int(resumed), "running", json.dumps(executor), json.dumps(environment())),
            )
        return int(cur.lastrowid)

    def end_invocation(self, invocation_id: int, status: str) -> None:
        with self.db:
            self.db.execute(
                "UPDATE invocations SET finished_at = ?, status = ? WHERE invocation_id = ?",
                (_now(), status, invocation_id),
            )

    def record_entry(self, run_id: int, invocation_id: int, outcome) -> None:
        """Write one :class:`~cellbench.runner.entry.EntryOutcome`, all of it or nothing."""
        cfg = outcome.config
        with self.db:  # one transaction: committed on success, rolled back on any error
            self.db.execute(
                "INSERT INTO entries VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id, outcome.key, outcome.label, cfg["dataset"]["name"], cfg["task"],
                    cfg["method"]["name"], cfg["method"]["method"], cfg["regime"]["name"],
                    cfg["regime"]["train_images"], cfg["seed"], outcome.status, outcome.error,
                    json.dumps(cfg, sort_keys=True), invocation_id, outcome.host,
                    _now(outcome.started), _now(outcome.finished),
                ),
            )
            if outcome.train is not None:
                t = outcome.train
                self.db.execute(
                    "INSERT INTO trainings VALUES (?,?,?,?,?,?,?)",
                    (run_id, outcome.key, t["wall_s"], len(t["images"]), json.dumps(t["images"]),
                     json.dumps(t["history"]), int(t.get("resumed_from_cache", False))),
                )
                self.db.execute(
                    "INSERT INTO timings VALUES (?,?,?,?,?,?)",
                    (run_id, outcome.key, "train", None, t["wall_s"], len(t["images"])),
                )
            seen_predict = set()
            for ev in outcome.evaluations:
                self._record_evaluation(run_id, outcome.key, cfg["evaluation"], ev)
                if ev.split not in seen_predict:
                    seen_predict.add(ev.split)
                    self.db.execute(
                        "INSERT INTO timings VALUES (?,?,?,?,?,?)",
                        (run_id, outcome.key, "predict", ev.split, ev.predict_wall_s, ev.n_images),
                    )

    def _record_evaluation(self, run_id: int, key: str, settings: dict, ev: EvaluationRecord) -> None:
        result = ev.result
        cur = self.db.execute(
            "INSERT INTO evaluations (run_id, entry_key, split, ground_truth, flatten_policy, boundary_px, "
            "thresholds_json, n_images, predict_wall_s, settings_json, result_json) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                run_id, key, ev.split, ev.ground_truth, ev.flatten_policy, ev.boundary_px,
                json.dumps(list(ev.thresholds)), ev.n_images, ev.predict_wall_s,
                json.dumps({**settings, "metrics": result.get("settings", {})}, sort_keys=True),
                json.dumps(result, sort_keys=True),
            ),
        )
        eid = int(cur.lastrowid)
        self._record_scores(eid, "", result)
        for cls, sub in (result.get("per_class") or {}).items():
            self._record_scores(eid, cls, sub)

    def _record_scores(self, eid: int, cls: str, result: dict) -> None:
        rows = []
        for scope in ("pooled", "image_mean"):
            for thr, metrics in (result.get(scope) or {}).items():
                for metric, value in metrics.items():
                    if _num(value) is not None or value is None:
                        rows.append((eid, cls, scope, float(thr), metric, _num(value)))
        for metric, value in (result.get("coco") or {}).items():
            if _num(value) is not None:
                rows.append((eid, cls, "coco", None, metric, _num(value)))
        self.db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?)", rows)
        image_rows = []
        for img in result.get("per_image") or ():
            for thr, m in (img.get("by_iou") or {}).items():
                extra = {k: v for k, v in m.items() if k not in _IMAGE_COLUMNS}
                image_rows.append(
                    (eid, cls, img["image"], float(thr), img.get("n_gt"), img.get("n_pred"), _num(img.get("dice")),
                     *(_num(m.get(c)) for c in _IMAGE_COLUMNS), json.dumps(extra, sort_keys=True))
                )
        self.db.executemany("INSERT INTO image_scores VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", image_rows)

    # --- reading -----------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> list[dict]:
        """Rows of any SQL query as dicts, for ad-hoc analysis; cellbench itself reads the records below."""
        return [dict(r) for r in self.db.execute(sql, params).fetchall()]

    def runs(self) -> list[RunRecord]:
        """The runs in this database (a run folder holds one)."""
        return [
            RunRecord(run_id=r["run_id"], name=r["name"], fingerprint=r["fingerprint"],
                      experiment=json.loads(r["experiment_json"]), experiment_path=r["experiment_path"],
                      created_at=r["created_at"])
            for r in self.db.execute("SELECT * FROM runs ORDER BY run_id")
        ]

    def finished_entries(self, run_id: int, *, include_failed: bool = True) -> set[str]:
        """Keys of the grid entries with stored results (failed ones too unless ``include_failed`` is False)."""
        sql = "SELECT entry_key FROM entries WHERE run_id = ?" + ("" if include_failed else " AND status = 'done'")
        return {r["entry_key"] for r in self.db.execute(sql, (run_id,))}

    def forget_failed(self, run_id: int) -> int:
        """Delete failed grid entries (so a resumed run tries them again); returns how many."""
        with self.db:
            cur = self.db.execute("DELETE FROM entries WHERE run_id = ? AND status = 'failed'", (run_id,))
        return cur.rowcount

    def trainings(self, run_id: int) -> dict[str, TrainingRecord]:
        """The training record of every grid entry that trained, by entry key."""
        return {
            r["entry_key"]: TrainingRecord(
                wall_s=r["wall_s"], n_images=r["n_images"], images=tuple(json.loads(r["images_json"] or "[]")),
                history=json.loads(r["history_json"]) if r["history_json"] else None,
                resumed_from_cache=bool(r["resumed_from_cache"]),
            )
            for r in self.db.execute("SELECT * FROM trainings WHERE run_id = ? ORDER BY rowid", (run_id,))
        }

    def entries(self, run_id: int) -> list[EntryRecord]:
        """Every stored grid entry of the run, done or failed, in the order they finished, with its training."""
        trainings = self.trainings(run_id)
        return [
            EntryRecord(
                key=r["entry_key"], label=r["label"], dataset=r["dataset"], task=r["task"], method=r["method"],
                method_impl=r["method_impl"], regime=r["regime"], train_images=r["train_images"], seed=r["seed"],
                status=r["status"], error=r["error"], config=json.loads(r["config_json"]),
                invocation_id=r["invocation_id"], host=r["host"], started_at=r["started_at"],
                finished_at=r["finished_at"], training=trainings.get(r["entry_key"]),
            )
            for r in self.db.execute("SELECT * FROM entries WHERE run_id = ? ORDER BY rowid", (run_id,))
        ]

    def evaluations(self, run_id: int) -> dict[str, tuple[EvaluationRecord, ...]]:
        """The evaluations of each grid entry, by entry key, in the order they were stored."""
        out: dict[str, list[EvaluationRecord]] = {}
        for r in self.db.execute("SELECT * FROM evaluations WHERE run_id = ? ORDER BY evaluation_id", (run_id,)):
            out.setdefault(r["entry_key"], []).append(EvaluationRecord(
                split=r["split"], ground_truth=r["ground_truth"], flatten_policy=r["flatten_policy"],
                boundary_px=r["boundary_px"], thresholds=tuple(json.loads(r["thresholds_json"])),
                n_images=r["n_images"], predict_wall_s=r["predict_wall_s"], result=json.loads(r["result_json"]),
            ))
        return {key: tuple(evs) for key, evs in out.items()}

    def invocations(self, run_id: int) -> list[InvocationRecord]:
        """Every ``cellbench run`` of the run folder, first to last."""
        return [
            InvocationRecord(
                invocation_id=r["invocation_id"], started_at=r["started_at"], finished_at=r["finished_at"],
                resumed=bool(r["resumed"]), status=r["status"], executor=json.loads(r["executor_json"]),
                environment=json.loads(r["environment_json"]),
            )
            for r in self.db.execute("SELECT * FROM invocations WHERE run_id = ? ORDER BY invocation_id", (run_id,))
        ]
