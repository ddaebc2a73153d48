"""A job's parts on disk, for `--resume`: `OUT.parts/` holds one file per finished part and a
manifest naming the job (input, model, options) and each finished part's record, with the size
and SHA-256 its file must hold. The output file is made from the parts, in order, once every shard
is done (jobs/shards.py runs the shards)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

from rnncli.errors import RnncliError, UsageError
from rnncli.jobs.shards import Part


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _part_record_schema():
    from rnncli.formats.schema import ListOf, MapOf, Pair

    return {"index": int, "first": int, "items": int, "counts": MapOf(float), "bad": ListOf(Pair(int, str)),
            "bad_lines": int, "bytes": int, "sha256": str}


def manifest_schema():
    """What a manifest holds (checked when a job is resumed): the job, and each finished part's record
    with the size and digest of its file."""
    from rnncli.formats.schema import MapOf

    return {"job": dict, "parts": MapOf(_part_record_schema(), keys=str.isdigit, keys_are="a part number")}


class PartStore:
    """`OUT.parts/`: one file per finished part and a manifest naming the job and its finished parts,
    each with what its file must hold (size, SHA-256), so that --resume trusts no part it cannot
    verify: one that fails the check (truncated, changed, missing) runs again (`rejected` says why)."""

    def __init__(self, output: str, job: dict, resume: bool):
        self.folder = output + ".parts"
        self.manifest_path = os.path.join(self.folder, "manifest.json")
        self.job = job
        self.done: dict[int, dict] = {}
        self.rejected: list[tuple[int, int, str]] = []  # (part, its first item, why) of parts that run again
        if os.path.exists(self.manifest_path):
            if not resume:
                raise UsageError(f"{self.folder} holds an unfinished job: add --resume to finish it, or delete "
                                 "the folder to start again")
            try:
                with open(self.manifest_path, encoding="utf-8") as f:
                    manifest = json.load(f)
            except (OSError, ValueError) as err:
                raise RnncliError(f"{self.manifest_path}: unreadable ({err}); delete {self.folder} to start again") \
                    from None
            from rnncli.formats.schema import check

            try:
                check(manifest, manifest_schema(), self.manifest_path)
            except RnncliError as err:
                raise RnncliError(f"{err}; delete {self.folder} to start the job again") from None
            if manifest["job"] != job:
                raise UsageError(f"{self.folder} belongs to another job (different input, model or options); "
                                 "delete it to start this one")
            for key, record in manifest["parts"].items():
                why = self._failed_check(int(key), record)
                if why:
                    self.rejected.append((int(key), record["first"], why))
                else:
                    self.done[int(key)] = record
        else:
            os.makedirs(self.folder, exist_ok=True)
            self._write_manifest()

    def _part_path(self, index: int) -> str:
        return os.path.join(self.folder, f"{index:05d}.part")

    def _failed_check(self, index: int, record: dict) -> str:
        """Why part `index`'s file does not hold what its record says ("" when it does)."""
        path = self._part_path(index)
        if record["index"] != index:
            return "its record names another part"
        try:
            size = os.path.getsize(path)
        except OSError:
            return "its file is missing"
        if size != record["bytes"]:
            return f"its file holds {size:,} bytes, not {record['bytes']:,}"
        if file_digest(path) != record["sha256"]:
            return "its file was changed"
        return ""

    def _write_manifest(self) -> None:
        from rnncli.formats.files import atomic_write

        body = json.dumps({"job": self.job, "parts": {str(k): v for k, v in sorted(self.done.items())}}, indent=1)
        atomic_write(self.manifest_path, lambda f: f.write(body.encode("utf-8")), "manifest")

    def save(self, part: Part) -> None:
        from rnncli.formats.files import atomic_write

        data = part.text.encode("utf-8")
        atomic_write(self._part_path(part.index), lambda f: f.write(data), "part")
        self.done[part.index] = {**part.to_record(), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        self._write_manifest()

    def load(self, index: int, text: bool = True) -> Part:
        """A finished part: its numbers from the manifest, its text from its file (if `text`)."""
        if not text:
            return Part.from_record(self.done[index], "")
        with open(self._part_path(index), encoding="utf-8") as f:
            return Part.from_record(self.done[index], f.read())

    def finish(self, output: str, indices: list[int]) -> None:
        """Concatenate the parts, in order, into `output` (atomically), then remove the folder."""
        from rnncli.formats.files import atomic_write

        def write(f) -> None:
            for i in indices:
                with open(self._part_path(i), "rb") as part:
                    shutil.copyfileobj(part, f)

        atomic_write(output, write, "output", streams=True)
        shutil.rmtree(self.folder, ignore_errors=True)
