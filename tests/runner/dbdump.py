"""Comparable content of a results database: everything but ids, times and hosts."""

from __future__ import annotations

import sqlite3


def db_content(path) -> dict:
    db = sqlite3.connect(path)
    q = lambda sql: sorted(tuple(r) for r in db.execute(sql).fetchall())  # noqa: E731
    out = {
        "entries": q("SELECT entry_key, label, status, substr(error, 1, instr(error || char(10), char(10))), "
                     "config_json FROM entries"),
        "trainings": q("SELECT entry_key, n_images, images_json, history_json FROM trainings"),
        "evaluations": q("SELECT entry_key, split, ground_truth, flatten_policy, n_images, result_json FROM evaluations"),
        "scores": q("SELECT e.entry_key, e.split, e.ground_truth, s.class, s.scope, s.threshold, s.metric, s.value "
                    "FROM scores s JOIN evaluations e USING (evaluation_id)"),
        "image_scores": q("SELECT e.entry_key, e.split, e.ground_truth, i.class, i.image, i.threshold, i.n_gt, i.n_pred, "
                          "i.dice, i.tp, i.fp, i.fn, i.f1 FROM image_scores i JOIN evaluations e USING (evaluation_id)"),
        "timings": q("SELECT entry_key, phase, split, n_images FROM timings"),
    }
    db.close()
    return out
