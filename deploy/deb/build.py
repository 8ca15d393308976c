#!/usr/bin/env python3
"""Build failoverd's Debian package from Cargo.toml's [package.metadata.deb].

    python3 deploy/deb/build.py [--profile debug|release] [--out DIR] [--no-build]

The metadata table is written in cargo-deb's format (assets as
[source, destination, mode]; `target/release/...` sources; conf-files;
maintainer-scripts; `$auto` in depends), so the package has one description.
This script builds it with `dpkg-deb` instead of cargo-deb, because CI would
otherwise compile cargo-deb (minutes on two cores) on every clean run, and
because CI keeps ONE build profile: `--profile debug` packages
target/debug/failoverd (a test package; releases use `--profile release`).

Needs python3 (3.11+, for tomllib), cargo (unless --no-build) and dpkg-deb;
`$auto` dependencies come from dpkg-shlibdeps when dpkg-dev is installed,
else from the binary's NEEDED libraries looked up with `dpkg -S`.
Prints the .deb's path on the last line.
"""

import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def die(msg):
    sys.exit(f"deb/build.py: {msg}")


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw).stdout


def shlib_depends(binary):
    """Package dependencies of a binary's shared libraries."""
    if shutil.which("dpkg-shlibdeps"):
        with tempfile.TemporaryDirectory() as tmp:
            os.makedirs(os.path.join(tmp, "debian"))
            with open(os.path.join(tmp, "debian", "control"), "w") as f:
                f.write("Source: failoverd\n\nPackage: failoverd\nArchitecture: any\n")
            out = run(["dpkg-shlibdeps", "-O", "--ignore-missing-info", os.path.abspath(binary)], cwd=tmp)
            for line in out.splitlines():
                if line.startswith("shlibs:Depends="):
                    return [d.strip() for d in line.split("=", 1)[1].split(",") if d.strip()]
        return []
    needed = [
        line.split("[", 1)[1].rstrip("]")
        for line in run(["readelf", "-d", binary]).splitlines()
        if "(NEEDED)" in line
    ]
    pkgs = set()
    for lib in needed:
        owners = subprocess.run(["dpkg", "-S", f"*/{lib}"], text=True, capture_output=True).stdout
        if not owners:
            die(f"no package owns {lib} (needed by {binary}); install dpkg-dev for dpkg-shlibdeps")
        pkgs.add(owners.split(":", 1)[0])
    return sorted(pkgs)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="release", choices=["debug", "release"])
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "debian"))
    ap.add_argument("--no-build", action="store_true", help="package what target/<profile> holds")
    args = ap.parse_args()

    with open(os.path.join(ROOT, "Cargo.toml"), "rb") as f:
        cargo = tomllib.load(f)
    pkg = cargo["package"]
    meta = pkg.get("metadata", {}).get("deb")
    if not meta:
        die("Cargo.toml has no [package.metadata.deb]")
    name, version = pkg["name"], pkg["version"]
    deb_version = f"{version}-{meta.get('revision', '1')}"

    if not args.no_build:
        cmd = ["cargo", "build", "--bin", name]
        if args.profile == "release":
            cmd.append("--release")
        subprocess.run(cmd, cwd=ROOT, check=True)

    arch = run(["dpkg", "--print-architecture"]).strip()
    stage = tempfile.mkdtemp(prefix="failoverd-deb-")
    os.chmod(stage, 0o755)  # becomes "./" in the archive
    try:
        binaries = []
        for src, dest, mode in meta["assets"]:
            src = src.replace("target/release/", f"target/{args.profile}/", 1)
            matches = sorted(glob.glob(os.path.join(ROOT, src)))
            if not matches:
                die(f"asset {src} does not exist (build first, or check the path)")
            for path in matches:
                target = dest + os.path.basename(path) if dest.endswith("/") else dest
                if len(matches) > 1 and not dest.endswith("/"):
                    die(f"asset {src} matches several files; its destination must end with /")
                out = os.path.join(stage, target.lstrip("/"))
                os.makedirs(os.path.dirname(out), exist_ok=True)
                shutil.copyfile(path, out)
                os.chmod(out, int(mode, 8))
                if path.startswith(os.path.join(ROOT, "target")):
                    binaries.append(out)

        # Debian policy: every package ships its copyright file, in the
        # machine-readable format, under /usr/share/doc/<package>/.
        doc = os.path.join(stage, "usr", "share", "doc", name)
        os.makedirs(doc, exist_ok=True)
        license_id = pkg.get("license") or die("Cargo.toml has no license")
        with open(os.path.join(doc, "copyright"), "w") as f:
            f.write(
                "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n"
                f"Upstream-Name: {name}\n\n"
                "Files: *\n"
                f"Copyright: {meta.get('copyright', name + ' authors')}\n"
                f"License: {license_id}\n"
                + (
                    f" On Debian systems the full text of the {license_id} license is in\n"
                    f" /usr/share/common-licenses/{license_id}.\n"
                    if os.path.exists(f"/usr/share/common-licenses/{license_id}")
                    else ""
                )
            )
        os.chmod(os.path.join(doc, "copyright"), 0o644)

        debian = os.path.join(stage, "DEBIAN")
        os.makedirs(debian)
        conffiles = meta.get("conf-files", [])
        for c in conffiles:
            if not os.path.isfile(os.path.join(stage, c.lstrip("/"))):
                die(f"conf-file {c} is not among the assets")
        if conffiles:
            with open(os.path.join(debian, "conffiles"), "w") as f:
                f.write("".join(c + "\n" for c in conffiles))
        scripts = meta.get("maintainer-scripts")
        if scripts:
            for s in ("preinst", "postinst", "prerm", "postrm"):
                p = os.path.join(ROOT, scripts, s)
                if os.path.exists(p):
                    shutil.copyfile(p, os.path.join(debian, s))
                    os.chmod(os.path.join(debian, s), 0o755)

        depends = []
        for d in (x.strip() for x in meta.get("depends", "$auto").split(",")):
            if d == "$auto":
                for b in binaries:
                    depends.extend(x for x in shlib_depends(b) if x not in depends)
            elif d:
                depends.append(d)
        size_kb = sum(
            os.path.getsize(os.path.join(dp, fn))
            for dp, _, fns in os.walk(stage)
            if not dp.startswith(debian)
            for fn in fns
        ) // 1024 + 1
        desc = meta.get("extended-description", "").strip().splitlines()
        long_desc = "".join(f" {line}\n" if line.strip() else " .\n" for line in desc)
        control = (
            f"Package: {name}\n"
            f"Version: {deb_version}\n"
            f"Architecture: {arch}\n"
            f"Maintainer: {meta['maintainer']}\n"
            f"Installed-Size: {size_kb}\n"
            f"Depends: {', '.join(depends)}\n"
            f"Section: {meta.get('section', 'misc')}\n"
            f"Priority: {meta.get('priority', 'optional')}\n"
            f"Description: {pkg['description']}\n{long_desc}"
        )
        with open(os.path.join(debian, "control"), "w") as f:
            f.write(control)

        os.makedirs(args.out, exist_ok=True)
        deb = os.path.join(args.out, f"{name}_{deb_version}_{arch}.deb")
        # Root-owned files without fakeroot.
        # A debug package is a test artifact of 60+ MB: compress it fast.
        level = "-z1" if args.profile == "debug" else "-z6"
        subprocess.run(
            ["dpkg-deb", "--root-owner-group", "-Zxz", level, "--build", stage, deb],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    print(deb)


if __name__ == "__main__":
    main()
