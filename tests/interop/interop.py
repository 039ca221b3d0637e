#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Interoperability of Sluice's tools with Debian's qemu-img/qemu-io 7.2,
# reported as TAP:
#   same-*     one command sequence run through both tool sets, each in its
#              own directory: normalised output, exit codes, the resulting
#              files (map and bytes) must be the same
#   cross-*    images created by one implementation and written by the
#              other are read back, checked and compared by both
#   verify-sh  ../shared/testdata/qed/verify.sh over the QED corpus
# Skips with a reason when qemu-img is not installed; the QED parts skip
# while Sluice has no qed driver.
#
# Copyright (c) 2026 The Sluice authors

import argparse
import difflib
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC_ROOT = os.path.dirname(os.path.dirname(HERE))
VERIFY_SH = os.path.join(os.path.dirname(SRC_ROOT), "shared", "testdata",
                         "qed", "verify.sh")
TIMINGS = re.compile(r"[0-9]+ ops; [0-9/:. sec]+ \([0-9/.inf]+ "
                     r"[EPTGMKi]*[Bb](ytes)?/sec and [0-9/.inf]+ ops/sec\)")


class Tools:
    def __init__(self, name, img, io):
        self.name = name
        self.img = img
        self.io = io

    def argv(self, tool, args):
        return [self.img if tool == "img" else self.io] + args


def normalise(text, tools):
    names = {os.path.basename(tools.img): "IMG", "qemu-img": "IMG",
             "sluice-img": "IMG", os.path.basename(tools.io): "IO",
             "qemu-io": "IO", "sluice-io": "IO"}
    for name, word in names.items():
        text = re.sub(r"(^|[^\w./-])" + re.escape(name) + r"(?![\w-])",
                      lambda m: m.group(1) + word, text, flags=re.M)
    text = TIMINGS.sub("X ops; TIME", text)
    # Host allocation of the files is the file system's business.
    text = re.sub(r"^disk size: .*$", "disk size: X", text, flags=re.M)
    return re.sub(r'"actual-size": [0-9]+', '"actual-size": X', text)


def run_steps(tools, steps, workdir):
    """Run STEPS in WORKDIR; the transcript, normalised."""
    out = []
    for tool, args in steps:
        if tool == "sh":
            subprocess.run(args, cwd=workdir, shell=True, check=True)
            continue
        p = subprocess.run(tools.argv(tool, args), cwd=workdir,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=300)
        text = p.stdout.decode("utf-8", errors="replace")
        out.append(f"$ {tool.upper()} {' '.join(args)}\n{text}"
                   f"[exit {p.returncode}]\n")
    return normalise("".join(out), tools)


def map_json(tools, path, fmt):
    p = subprocess.run([tools.img, "map", "-f", fmt, "--output=json", path],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return p.stdout.decode("utf-8", errors="replace")


def files_of(d):
    return sorted(f for f in os.listdir(d)
                  if os.path.isfile(os.path.join(d, f)))


def diff(a, b, na, nb):
    return "".join(difflib.unified_diff(a.splitlines(True),
                                        b.splitlines(True), na, nb))


class Suite:
    def __init__(self, args):
        self.args = args
        self.n = 0
        self.failed = []
        self.ref = Tools("qemu", shutil.which("qemu-img") or "",
                         shutil.which("qemu-io") or "")
        self.sl = Tools("sluice", os.path.abspath(args.img),
                        os.path.abspath(args.io))
        self.scratch = tempfile.mkdtemp(prefix="sluice-interop-")

    def result(self, name, ok, detail="", skip=None):
        self.n += 1
        if skip:
            print(f"ok {self.n} - {name} # SKIP {skip}")
        elif ok:
            print(f"ok {self.n} - {name}")
        else:
            self.failed.append(name)
            print(f"not ok {self.n} - {name}")
            lines = [ln for ln in detail.rstrip("\n").splitlines()
                     if not TIMINGS.search(ln)]
            for line in lines[:60]:
                print("# " + line)
        sys.stdout.flush()

    def fresh(self, tag):
        return tempfile.mkdtemp(prefix=tag + "-", dir=self.scratch)

    def sluice_has(self, fmt):
        d = self.fresh("probe")
        p = subprocess.run([self.sl.img, "create", "-q", "-f", fmt,
                            os.path.join(d, "probe"), "1M"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = p.stdout.decode("utf-8", errors="replace")
        return p.returncode == 0 or "Unknown file format" not in text

    # --- same commands through both ------------------------------------

    def same(self, name, fmt, steps, images):
        d_ref = self.fresh(name + "-qemu")
        d_sl = self.fresh(name + "-sluice")
        try:
            t_ref = run_steps(self.ref, steps, d_ref)
            t_sl = run_steps(self.sl, steps, d_sl)
        except (subprocess.SubprocessError, OSError) as e:
            self.result(f"same-{name}", False, f"error: {e}")
            return
        problems = []
        if t_ref != t_sl:
            problems.append("output differs:\n" +
                            diff(t_ref, t_sl, "qemu", "sluice"))
        if files_of(d_ref) != files_of(d_sl):
            problems.append(f"files differ: {files_of(d_ref)} vs "
                            f"{files_of(d_sl)}")
        for img, ifmt in images:
            a, b = os.path.join(d_ref, img), os.path.join(d_sl, img)
            if not (os.path.exists(a) and os.path.exists(b)):
                continue
            # Both maps are taken with QEMU's tool, so only the images
            # differ.
            ma = map_json(self.ref, a, ifmt)
            mb = map_json(self.ref, b, ifmt)
            if ma != mb:
                problems.append(f"map of {img} differs:\n" +
                                diff(ma, mb, "qemu", "sluice"))
            with open(a, "rb") as fa, open(b, "rb") as fb:
                if fa.read() != fb.read():
                    problems.append(f"bytes of {img} differ")
        self.result(f"same-{name}", not problems, "\n".join(problems))

    # --- images handed from one implementation to the other -------------

    def cross(self, fmt, creator, writer):
        name = f"cross-{fmt}-{creator.name}-created-{writer.name}-written"
        d = self.fresh(name)
        img = os.path.join(d, "t." + fmt)
        opts = ["-o", "cluster_size=4096"] if fmt == "qed" else []
        writes = [("0x11", "0", "64k"), ("0x22", "70000", "3000"),
                  ("0x33", "4190208", "8k"), ("0x44", "15M", "1M")]
        problems = []

        def run(argv):
            p = subprocess.run(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=d)
            return p.returncode, p.stdout.decode("utf-8", errors="replace")

        rc, out = run([creator.img, "create", "-q", "-f", fmt] + opts +
                      [img, "16M"])
        if rc:
            problems.append(f"create by {creator.name}: {out}")
        cmds = []
        for pat, off, ln in writes:
            cmds += ["-c", f"write -P {pat} {off} {ln}"]
        cmds += ["-c", "write -z 8M 64k"]
        rc, out = run([writer.io, "-f", fmt] + cmds + [img])
        if rc or "error" in out.lower() or "fail" in out.lower():
            problems.append(f"writes by {writer.name}: {out}")
        reads = []
        for pat, off, ln in writes:
            reads += ["-c", f"read -P {pat} {off} {ln}"]
        reads += ["-c", "read -P 0 8M 64k", "-c", "read -P 0 64k 4464",
                  "-c", "read -P 0 9M 6M"]
        for reader in (self.ref, self.sl):
            rc, out = run([reader.io, "-r", "-f", fmt] + reads + [img])
            if rc or "fail" in out.lower():
                problems.append(f"reads by {reader.name}: {out}")
        if fmt == "qed":
            for checker in (self.ref, self.sl):
                rc, out = run([checker.img, "check", img])
                if rc:
                    problems.append(f"check by {checker.name} (exit {rc}):"
                                    f" {out}")
        # The same image made by QEMU alone must compare equal.
        gold = os.path.join(d, "gold." + fmt)
        run([self.ref.img, "create", "-q", "-f", fmt] + opts + [gold, "16M"])
        run([self.ref.io, "-f", fmt] + cmds + [gold])
        for cmp_tool in (self.ref, self.sl):
            rc, out = run([cmp_tool.img, "compare", "-f", fmt, "-F", fmt,
                           img, gold])
            if rc:
                problems.append(f"compare by {cmp_tool.name} (exit {rc}):"
                                f" {out}")
        self.result(name, not problems, "\n".join(problems))

    def cross_backing(self, base_maker, top_maker):
        name = (f"cross-backing-{base_maker.name}-base-"
                f"{top_maker.name}-overlay")
        d = self.fresh(name)
        problems = []

        def run(argv):
            p = subprocess.run(argv, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, cwd=d)
            return p.returncode, p.stdout.decode("utf-8", errors="replace")

        steps = [
            [base_maker.img, "create", "-q", "-f", "qed", "base.qed", "4M"],
            [base_maker.io, "-f", "qed", "-c", "write -P 0x51 0 4M",
             "base.qed"],
            [top_maker.img, "create", "-q", "-f", "qed", "-b", "base.qed",
             "-F", "qed", "-o", "cluster_size=4096", "top.qed"],
            [top_maker.io, "-f", "qed", "-c", "write -P 0x52 1M 5000",
             "-c", "write -z 2M 4k", "top.qed"],
        ]
        for argv in steps:
            rc, out = run(argv)
            if rc:
                problems.append(f"{' '.join(argv)}: exit {rc}: {out}")
        reads = ["-c", "read -P 0x51 0 1M", "-c", "read -P 0x52 1M 5000",
                 "-c", "read -P 0x51 1053576 995576", "-c",
                 "read -P 0 2M 4k", "-c", "read -P 0x51 2101248 2093056"]
        for reader in (self.ref, self.sl):
            rc, out = run([reader.io, "-r", "-f", "qed"] + reads +
                          ["top.qed"])
            if rc or "fail" in out.lower():
                problems.append(f"reads by {reader.name}: {out}")
            rc, out = run([reader.img, "check", "top.qed"])
            if rc:
                problems.append(f"check by {reader.name}: {out}")
        ma = map_json(self.ref, os.path.join(d, "top.qed"), "qed")
        mb = map_json(self.sl, os.path.join(d, "top.qed"), "qed")
        if normalise(ma, self.ref) != normalise(mb, self.sl):
            problems.append("map differs:\n" + diff(ma, mb, "qemu",
                                                    "sluice"))
        self.result(name, not problems, "\n".join(problems))

    # --- the corpus ----------------------------------------------------

    def verify_sh(self):
        if not os.path.exists(VERIFY_SH):
            self.result("verify-sh", True, skip=f"{VERIFY_SH} not found")
            return
        p = subprocess.run([VERIFY_SH, "--img", self.sl.img,
                            "--io", self.sl.io],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        text = p.stdout.decode("utf-8", errors="replace")
        fails = [line for line in text.splitlines()
                 if line.startswith("FAIL")]
        summary = text.strip().splitlines()[-1:] or ["no output"]
        self.result("verify-sh", p.returncode == 0,
                    "\n".join(fails + summary))


def scenarios(fmt):
    """(name, steps, images) run through both implementations."""
    other = "raw" if fmt == "qed" else "qed"
    img = "t." + fmt
    opts = ["-o", "cluster_size=4096"] if fmt == "qed" else []
    io = lambda *cmds: ("io", ["-f", fmt] +
                        [a for c in cmds for a in ("-c", c)] + [img])
    out = []
    out.append((f"basic-{fmt}", [
        ("img", ["create", "-f", fmt] + opts + [img, "64M"]),
        io("write -P 0xa1 0 64k", "write -P 0xa2 65000 1000",
           "write -P 0xa3 4190208 8k", "write -P 0xa4 63M 1M"),
        io("write -z 1M 128k", "write -z -u 2M 64k", "discard 63M 64k"),
        io("read -P 0xa1 0 64464", "read -P 0xa2 65000 1000",
           "read -P 0xa3 4190208 8k", "read -P 0 1M 128k",
           "read -v 64990 20", "read -P 0xa4 63M 1M", "length"),
        io("read 64M 1", "write -P 300 0 1", "read"),
        ("img", ["info", img]),
        ("img", ["info", "--output=json", img]),
        ("img", ["map", img]),
        ("img", ["map", "--output=json", img]),
        ("img", ["check", img]),
    ], [(img, fmt)]))
    out.append((f"convert-{fmt}", [
        ("img", ["create", "-q", "-f", fmt] + opts + [img, "8M"]),
        io("write -P 0x31 0 100k", "write -P 0x32 3M 3000",
           "write -z 6M 64k", "write -P 0x34 8184k 8k"),
        ("img", ["convert", "-f", fmt, "-O", other, img, "o." + other]),
        ("img", ["convert", "-f", other, "-O", fmt, "o." + other,
                 "back." + fmt]),
        ("img", ["compare", img, "back." + fmt]),
        ("img", ["compare", "-f", fmt, "-F", other, img, "o." + other]),
        ("img", ["map", "--output=json", "o." + other]),
        ("img", ["map", "--output=json", "back." + fmt]),
    ], [(img, fmt), ("o." + other, other), ("back." + fmt, fmt)]))
    out.append((f"resize-{fmt}", [
        ("img", ["create", "-q", "-f", fmt] + opts + [img, "4M"]),
        io("write -P 0x71 0 1M", "write -P 0x72 4092k 4k"),
        ("img", ["resize", "-f", fmt, img, "+4M"]),
        ("img", ["resize", "-f", fmt, img, "2M"]),
        io("read -P 0x72 4092k 4k", "read -P 0 4M 4M", "length"),
        ("img", ["info", img]),
    ], [(img, fmt)]))
    if fmt == "qed":
        out.append(("backing-qed", [
            ("img", ["create", "-f", "qed"] + opts + ["base.qed", "4M"]),
            ("io", ["-f", "qed", "-c", "write -P 0x41 0 2M", "base.qed"]),
            ("img", ["create", "-f", "qed", "-b", "base.qed", "-F", "qed"] +
             opts + [img]),
            io("write -P 0x42 512k 5000", "write -z 1M 4k",
               "read -P 0x41 0 512k", "read -P 0x42 512k 5000"),
            ("img", ["map", img]),
            ("img", ["map", "--output=json", img]),
            ("img", ["info", "--backing-chain", img]),
            ("img", ["convert", "-O", "qed", "-B", "base.qed", "-F", "qed",
                     img, "delta.qed"]),
            ("img", ["convert", "-O", "raw", img, "flat.raw"]),
            ("img", ["create", "-q", "-f", "raw", "base2.raw", "4M"]),
            ("img", ["rebase", "-b", "base2.raw", "-F", "raw", img]),
            ("img", ["compare", "-F", "raw", img, "flat.raw"]),
            ("img", ["rebase", "-u", "-b", "base.qed", "-F", "qed", img]),
            ("img", ["info", img]),
            ("img", ["check", img]),
        ], [(img, "qed"), ("delta.qed", "qed"), ("flat.raw", "raw")]))
        out.append(("repair-qed", [
            ("sh", "cp {}/leaked.qed {}/l2-entry-beyond-eof.qed . && "
                   "chmod u+w *.qed".format(*[os.path.join(
                       os.path.dirname(VERIFY_SH), "images")] * 2)),
            ("img", ["check", "leaked.qed"]),
            ("img", ["check", "-r", "all", "leaked.qed"]),
            ("img", ["check", "-r", "all", "l2-entry-beyond-eof.qed"]),
            ("img", ["check", "l2-entry-beyond-eof.qed"]),
            ("io", ["-c", "write -P 0x99 0 4k", "l2-entry-beyond-eof.qed"]),
        ], [("leaked.qed", "qed"), ("l2-entry-beyond-eof.qed", "qed")]))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--img", required=True)
    ap.add_argument("--io", required=True)
    ap.add_argument("--tap", action="store_true",
                    help="accepted for symmetry; the output is always TAP")
    args = ap.parse_args()

    s = Suite(args)
    if not s.ref.img or not s.ref.io:
        print("1..0 # SKIP qemu-img/qemu-io (Debian's qemu-utils) not "
              "installed")
        return 0
    for tool in (s.sl.img, s.sl.io):
        if not os.access(tool, os.X_OK):
            print(f"1..0 # SKIP {tool} not built")
            return 0

    have_qed = s.sluice_has("qed")
    no_qed = None if have_qed else "Sluice has no qed driver yet"
    corpus = os.path.isdir(os.path.join(os.path.dirname(VERIFY_SH),
                                        "images"))
    try:
        plan = []
        for fmt in ("raw", "qed"):
            for name, steps, images in scenarios(fmt):
                plan.append(("same", fmt, name, steps, images))
        plan_len = len(plan) + 4 * 2 + 2 + 1
        print(f"1..{plan_len}")
        for _, fmt, name, steps, images in plan:
            if fmt == "qed" and no_qed:
                s.result(f"same-{name}", True, skip=no_qed)
            elif name == "repair-qed" and not corpus:
                s.result(f"same-{name}", True, skip="QED corpus not found")
            else:
                s.same(name, fmt, steps, images)
        for fmt in ("raw", "qed"):
            for creator, writer in ((s.ref, s.sl), (s.sl, s.ref),
                                    (s.sl, s.sl), (s.ref, s.ref)):
                if fmt == "qed" and no_qed:
                    s.result(f"cross-{fmt}-{creator.name}-created-"
                             f"{writer.name}-written", True, skip=no_qed)
                else:
                    s.cross(fmt, creator, writer)
        for base, top in ((s.ref, s.sl), (s.sl, s.ref)):
            if no_qed:
                s.result(f"cross-backing-{base.name}-base-{top.name}-"
                         "overlay", True, skip=no_qed)
            else:
                s.cross_backing(base, top)
        if no_qed:
            s.result("verify-sh", True, skip=no_qed)
        else:
            s.verify_sh()
    finally:
        shutil.rmtree(s.scratch, ignore_errors=True)
    if s.failed:
        print(f"# Failures: {' '.join(s.failed)}")
    else:
        print(f"# Passed all {s.n} interop tests")
    return 1 if s.failed else 0


if __name__ == "__main__":
    sys.exit(main())
