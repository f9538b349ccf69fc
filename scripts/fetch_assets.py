#!/usr/bin/env python3
"""Fetch the browser assets the static site serves itself (no CDN).

Used by `make book`. Standard library only.

It runs `npm pack` for three pinned packages, checks each tarball against the
integrity hash pinned below (and prints it), and extracts only the files the
site needs into `_vendor/` (git-ignored), which `_config.yml` lists in
`html_static_path`, so they end up under `_static/` of the built site:

    _vendor/requirejs/require.js                       RequireJS
    _vendor/html-manager/dist/embed-amd.js (+ fonts)   the ipywidgets HTML manager
    _vendor/mathjax/es5/tex-mml-chtml.js (+ fonts...)  MathJax 3

It is idempotent: a stamp file records the versions fetched, and nothing is
done when the stamp matches and every file is present.

If npm is missing (or cannot reach the registry), it says so and writes a copy
of `_config.yml` without the block between `# BEGIN vendored-assets` and
`# END vendored-assets` to `_vendor/cdn-config.yml`; `make book` then builds
with that config, i.e. with the default CDN assets, so the book still builds
(but its pages need the internet for widgets and math). The file is removed
again as soon as the assets are vendored.
"""

from __future__ import annotations

import argparse
import base64
import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (npm name, version, pinned integrity, folder under _vendor, files to keep: globs
# relative to the package root, matched with fnmatch, where "*" also matches "/").
PACKAGES = [
    (
        "requirejs",
        "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        "requirejs",
        ["require.js", "package.json"],
    ),
    (
        "@jupyter-widgets/html-manager",
        "1.0.15",
        "sha512-5thBIV6ymNgmPVOHvzx+gGy8ZSKmSazhtGw4/c4xJDVzRhG9PTeQsRjF3FUTopvFi//SABeNz1yp47bCrJ3CQA==",
        "html-manager",
        [
            "package.json",
            "dist/embed-amd.js",
            "dist/*.woff",
            "dist/*.woff2",
            "dist/*.ttf",
            "dist/*.eot",
            "dist/*.svg",
        ],
    ),
    (
        "mathjax",
        "3.2.2",
        "sha512-Bt+SSVU8eBG27zChVewOicYs7Xsdt40qm4+UpHyX7k0/O9NliPc+x77k1/FEsPsjKPZGJvtRZM1vO+geW0OhGw==",
        "mathjax",
        [
            "LICENSE",
            "package.json",
            "es5/tex-mml-chtml.js",
            "es5/output/chtml/*",
            "es5/input/*",
            "es5/ui/*",
            "es5/a11y/*",
            "es5/adaptors/*",
            "es5/sre/*",
        ],
    ),
]

# A file that must exist in each folder for the vendored copy to count as complete.
SENTINELS = [
    "requirejs/require.js",
    "html-manager/dist/embed-amd.js",
    "mathjax/es5/tex-mml-chtml.js",
    "mathjax/es5/output/chtml/fonts/woff-v2/MathJax_Main-Regular.woff",
]

STAMP = ".stamp.json"
BEGIN, END = "# BEGIN vendored-assets", "# END vendored-assets"


def log(msg: str) -> None:
    print(f"fetch_assets: {msg}", file=sys.stderr, flush=True)


def wanted_stamp() -> dict:
    return {f"{name}@{version}": integrity for name, version, integrity, _, _ in PACKAGES}


def is_complete(dest: Path) -> bool:
    try:
        stamp = json.loads((dest / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return stamp == wanted_stamp() and all((dest / s).is_file() for s in SENTINELS)


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512(path.read_bytes()).digest()
    return "sha512-" + base64.b64encode(digest).decode()


def npm_pack(workdir: Path) -> list[Path]:
    """Download every tarball with one `npm pack`; return their paths in PACKAGES order."""
    specs = [f"{name}@{version}" for name, version, _, _, _ in PACKAGES]
    env = dict(os.environ, npm_config_update_notifier="false", npm_config_fund="false")
    proc = subprocess.run(
        ["npm", "pack", "--json", "--pack-destination", str(workdir), *specs],
        check=False,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"`npm pack` failed ({proc.returncode}):\n{proc.stderr.strip()}")
    info = json.loads(proc.stdout)
    paths = []
    for (name, version, pinned, _, _), item in zip(PACKAGES, info, strict=True):
        if (item["name"], item["version"]) != (name, version):
            raise RuntimeError(f"npm returned {item['name']}@{item['version']}, expected {name}@{version}")
        tarball = workdir / item["filename"]
        actual = integrity_of(tarball)
        log(f"  {name}@{version}  {actual}")
        if actual != pinned or item.get("integrity", actual) != pinned:
            raise SystemExit(
                f"fetch_assets: integrity mismatch for {name}@{version}:\n"
                f"  pinned {pinned}\n  got    {actual}\nRefusing to vendor it."
            )
        paths.append(tarball)
    return paths


def extract(tarball: Path, globs: list[str], target: Path) -> int:
    count = 0
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            # npm tarballs keep everything under one top folder, usually "package/".
            rel = member.name.split("/", 1)[1] if "/" in member.name else member.name
            if not any(fnmatch.fnmatchcase(rel, g) for g in globs):
                continue
            out = (target / rel).resolve()
            if not out.is_relative_to(target.resolve()):
                raise RuntimeError(f"unsafe path in {tarball.name}: {member.name}")
            out.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
    return count


def write_cdn_config(config: Path, out: Path) -> None:
    lines = config.read_text(encoding="utf8").splitlines(keepends=True)
    kept, skipping, seen = [], False, False
    for line in lines:
        stripped = line.strip()
        if stripped == BEGIN:
            skipping, seen = True, True
            continue
        if stripped == END:
            skipping = False
            continue
        if not skipping:
            kept.append(line)
    if not seen:
        raise SystemExit(f"fetch_assets: no '{BEGIN}' block in {config.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = "# Generated by scripts/fetch_assets.py: _config.yml without vendored assets (CDN fallback).\n"
    out.write_text(header + "".join(kept), encoding="utf8")


def fall_back(reason: str, config: Path, fallback: Path) -> int:
    bar = "!" * 78
    log(
        f"\n{bar}\n{reason}\n"
        "The book will be built with CDN assets (RequireJS, widget manager and MathJax\n"
        "from cdnjs/jsDelivr): its pages will need the internet for widgets and math,\n"
        "and the site tests that forbid off-site requests will fail.\n"
        "Install node/npm (e.g. `apt-get install npm`) and run `make book` again to vendor them.\n"
        f"Using {fallback.relative_to(ROOT) if fallback.is_relative_to(ROOT) else fallback}\n{bar}"
    )
    write_cdn_config(config, fallback)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=ROOT / "_vendor", help="where to put the assets")
    ap.add_argument("--config", type=Path, default=ROOT / "_config.yml", help="the book's config")
    ap.add_argument("--force", action="store_true", help="fetch even when the stamp says up to date")
    ap.add_argument("--no-fallback", action="store_true", help="fail instead of falling back to CDN assets")
    args = ap.parse_args(argv)
    dest: Path = args.dest.resolve()
    fallback = dest / "cdn-config.yml"

    if not args.force and is_complete(dest):
        fallback.unlink(missing_ok=True)
        log(f"vendored assets up to date ({', '.join(wanted_stamp())})")
        return 0

    if shutil.which("npm") is None:
        if args.no_fallback:
            raise SystemExit("fetch_assets: npm not found, and --no-fallback was given")
        return fall_back("npm was not found on PATH.", args.config, fallback)

    log("fetching pinned packages from the npm registry:")
    with tempfile.TemporaryDirectory(prefix="k8snet-assets-") as tmp:
        tmpdir = Path(tmp)
        try:
            tarballs = npm_pack(tmpdir)
        except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
            if args.no_fallback:
                raise SystemExit(f"fetch_assets: {exc}") from exc
            return fall_back(f"npm could not fetch the assets: {exc}", args.config, fallback)
        staging = tmpdir / "staging"
        for (name, version, _, folder, globs), tarball in zip(PACKAGES, tarballs, strict=True):
            n = extract(tarball, globs, staging / folder)
            log(f"{name}@{version}: {n} files -> {dest.name}/{folder}/")
        dest.mkdir(parents=True, exist_ok=True)
        (dest / STAMP).unlink(missing_ok=True)
        for _, _, _, folder, _ in PACKAGES:
            shutil.rmtree(dest / folder, ignore_errors=True)
            shutil.move(str(staging / folder), dest / folder)
    missing = [s for s in SENTINELS if not (dest / s).is_file()]
    if missing:
        raise SystemExit(f"fetch_assets: expected files missing after extraction: {missing}")
    (dest / STAMP).write_text(json.dumps(wanted_stamp(), indent=1, sort_keys=True) + "\n")
    fallback.unlink(missing_ok=True)
    size = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    log(f"vendored assets ready in {dest.name}/ ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
