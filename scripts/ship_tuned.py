"""Tune a dataset with `recagent tune` and ship the result under models/tuned/ (what the published figures use).

    python scripts/ship_tuned.py ml-latest-small candidates20
    python scripts/ship_tuned.py redial crs --first-dialogues 50     # tuned on validation dialogues 1-50 only
    python scripts/ship_tuned.py lastfm-hetrec2011 loo

The tune runs with a scratch tuned folder, so a user's var/tuned is untouched; the shipped file keeps the values
of the other families it already had (agent/tuned.py FAMILIES) and records, for each value, the command and the
data hash that made it. Datasets are read from RECAGENT_DATA_DIR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "tuned"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("protocol", choices=["loo", "candidates20", "crs"])
    parser.add_argument("--first-dialogues", type=int, help="crs: tune on the first N validation dialogues")
    args = parser.parse_args(argv)
    data_dir = Path(os.environ.get("RECAGENT_DATA_DIR", "data"))
    with tempfile.TemporaryDirectory() as scratch:
        command = ["recagent", "tune", "--dataset", args.dataset, "--protocol", args.protocol, "--quiet"]
        shown = list(command)
        if args.first_dialogues:
            source = data_dir / "redial" / "valid_data_sample100.jsonl"
            subset = Path(scratch) / "dialogues.jsonl"
            lines = source.read_text(encoding="utf-8").splitlines(keepends=True)[: args.first_dialogues]
            subset.write_text("".join(lines), encoding="utf-8")
            command += ["--dialogues", str(subset)]
            shown += ["--dialogues", f"<the first {args.first_dialogues} dialogues of redial/{source.name}>"]
        env = {**os.environ, "RECAGENT_TUNED_DIR": str(Path(scratch) / "tuned")}
        run = subprocess.run([str(Path(sys.executable).with_name("recagent")), *command[1:]], env=env,
                             capture_output=True, text=True)
        if run.returncode != 0:
            sys.stderr.write(run.stderr[-4000:])
            raise SystemExit(f"{' '.join(shown)} failed with exit code {run.returncode}")
        out = run.stdout
        result = json.loads(out.strip().splitlines()[-1])
        (tuned_file,) = (Path(scratch) / "tuned").glob("*.json")
        tuned = json.loads(tuned_file.read_text(encoding="utf-8"))
    record = {"command": " ".join(shown), "data_hash": result.get("data_hash"), "protocol": args.protocol,
              "git_commit": result.get("git_commit"),
              **{k: tuned[k] for k in ("metric", "validation", "se", "users", "dialogues") if k in tuned}}
    from agent.tuned import FAMILIES

    path = SHIPPED / tuned_file.name
    earlier = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"values": {}, "sources": {}}
    replaced = {FAMILIES[k] for k in tuned["values"]} if args.protocol != "candidates20" else {"linear"}
    new_values = {k: v for k, v in tuned["values"].items() if FAMILIES[k] in replaced}
    kept = {k: v for k, v in earlier["values"].items() if FAMILIES[k] not in replaced}
    sources = {k: v for k, v in earlier["sources"].items() if k in kept}
    payload = {"dataset": tuned["dataset"], "values": {**kept, **new_values},
               "sources": {**sources, **{k: record for k in new_values}}, **record}
    SHIPPED.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"{path.relative_to(ROOT)}: {', '.join(sorted(new_values))} ({record['command']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
