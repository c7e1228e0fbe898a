#!/usr/bin/env python3
"""Install the files a manifest lists into a folder, verified by sha256.

Used by `make setup` for the ONNX models (models/manifest.toml, [[model]]) and the
test media (tests/media/manifest.toml, [[file]]). For each entry:

  1. already in DEST with the right sha256: nothing to do;
  2. present in the shared folder (../shared/models or ../shared/media): copy, verify;
  3. otherwise download from the entry's `source` address, verify;
  4. none of these: fail, saying what to do.

A file whose sha256 differs is never left in DEST. Exit status 0 when every file is
installed, 1 otherwise. Standard library only: this runs before anything is built.
"""

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import tomllib
import urllib.request


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install(entry, dest, shared):
    name = entry["file"]
    want = entry["sha256"]
    target = os.path.join(dest, name)
    if os.path.isfile(target):
        if sha256_of(target) == want:
            return "present"
        os.remove(target)

    candidate = os.path.join(shared, name) if shared else None
    fd, tmp = tempfile.mkstemp(dir=dest, prefix=f".{name}.")
    os.close(fd)
    try:
        if candidate and os.path.isfile(candidate):
            shutil.copyfile(candidate, tmp)
            origin = candidate
        elif entry.get("source"):
            origin = entry["source"]
            try:
                with urllib.request.urlopen(origin, timeout=60) as r, open(tmp, "wb") as out:
                    shutil.copyfileobj(r, out)
            except OSError as e:
                raise SystemExit(
                    f"error: {name}: not in {shared or 'a shared folder'} and the download from "
                    f"{origin} failed ({e}). Copy the file into {dest} (sha256 {want}) or set "
                    f"GRIDSIGHT_SHARED to a folder that holds it, then run `make setup` again."
                )
        else:
            raise SystemExit(
                f"error: {name}: not in {shared or 'a shared folder'} and it has no download "
                f"address. Copy it into {dest} (sha256 {want}) or set GRIDSIGHT_SHARED to a folder "
                f"that holds it, then run `make setup` again."
            )
        got = sha256_of(tmp)
        if got != want:
            raise SystemExit(
                f"error: {name} from {origin} has sha256 {got}, the manifest wants {want}; "
                f"the file was not installed."
            )
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
        return f"installed from {origin}"
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", required=True)
    p.add_argument("--table", required=True, help="array of tables to read: model or file")
    p.add_argument("--dest", required=True)
    p.add_argument("--shared", default="", help="folder to copy from before downloading")
    p.add_argument("--copy-manifest", action="store_true", help="also place the manifest in DEST")
    a = p.parse_args()

    with open(a.manifest, "rb") as f:
        entries = tomllib.load(f).get(a.table, [])
    if not entries:
        sys.exit(f"error: {a.manifest} lists no [[{a.table}]] entries")
    os.makedirs(a.dest, exist_ok=True)
    changed = 0
    for entry in entries:
        what = install(entry, a.dest, a.shared)
        if what != "present":
            changed += 1
            print(f"  {entry['file']}: {what}")
    if a.copy_manifest:
        target = os.path.join(a.dest, os.path.basename(a.manifest))
        if os.path.abspath(target) != os.path.abspath(a.manifest):
            shutil.copyfile(a.manifest, target)
    if changed == 0:
        print(f"  {len(entries)} files in {a.dest} already installed and verified")


if __name__ == "__main__":
    main()
