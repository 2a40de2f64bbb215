#!/usr/bin/env python3
"""CPython's regression tests natively and under libpheap_preload.so.

Each module of Debian's libpython3.11-testsuite runs as `PYTHON -m test -v
MODULE`, once natively and then, right after, once preloaded (a fresh
PHEAP_DIR and a heap named after the module); the script compares the
results case by case (ok, FAIL, ERROR, skipped, expected failure,
unexpected success) and reports every case whose result differs, and every
module that hangs (past --timeout) or crashes. With --native-twice a second
native run finds the cases that differ natively from run to run: their
differences are listed apart and do not fail the comparison.

Exit status: 0 when the results agree, 1 when a case differs or a module
hangs or crashes only preloaded, 2 on a usage error, 77 (a skip to meson)
when the interpreter or its test suite is missing or the preload library
cannot open a heap here.

  tests/preload/cpython_regress.py --lib build/preload/libpheap_preload.so          # every module
  tests/preload/cpython_regress.py --quick --lib build/preload/libpheap_preload.so  # CI's subset
"""

import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

FULL = ("test_dict test_list test_set test_unicode test_json test_pickle test_threading test_subprocess "
        "test_mmap test_gc test_weakref test_re test_zlib test_hashlib test_decimal test_itertools "
        "test_collections test_os test_signal test_multiprocessing_fork test_posix").split()
# CI's subset: modules that run in seconds and still allocate hard
# (containers, strings, regular expressions, buffers handed to zlib).
QUICK = "test_list test_re test_dict test_zlib test_json test_set".split()

# The interpreter the Debian test suite belongs to (a python3 earlier on
# PATH, such as a pyenv one, has its own or none).
DEFAULT_PYTHON = "/usr/bin/python3.11"

OK, FAIL, ERROR, SKIP, XFAIL, XPASS = "ok", "FAIL", "ERROR", "skipped", "expected failure", "unexpected success"

# "test_x (test.test_dict.DictTest.test_x)", maybe with a subtest's
# parameters after it (indented): the line unittest's verbose runner starts
# a case with. A doctest's line is "Doctest: NAME".
CASE = re.compile(r"^\s*(?P<name>\w+) \((?P<id>[\w.]+)\)(?P<sub> \(.*?\))?(?P<rest>(?: \.\.\.)?.*)$")
DOCTEST = re.compile(r"^Doctest: (?P<id>\S+)(?P<rest>.*)$")
# A failure's header in the summary unittest prints at the end.
SUMMARY = re.compile(r"^(?P<kind>FAIL|ERROR|UNEXPECTED SUCCESS): (?P<head>.*?)\s*$")
# A result at the end of a line: the case's own output may come before it
# on the same line.
RESULT = re.compile(r"(?:^|\.\.\. |(?<=\S))(?P<r>ok|FAIL|ERROR|expected failure|unexpected success|skipped .*)$")


def case_key(m):
    """The key of a case header's match, or None if it is no case's: a
    test's id ends in its name."""
    if not m["id"].endswith("." + m["name"]):
        return None
    return m["id"] + (m["sub"] or "")


def result_of(text):
    """The result that ends `text` (what follows " ... "), else None."""
    m = RESULT.search(text.strip())
    if m is None:
        return None
    r = m["r"]
    return SKIP if r.startswith("skipped") else r


def parse(output):
    """Per-case results of a verbose run, {case: result}, and the case that
    started last without a result (where a hang or crash happened). A case
    that runs twice in one module (a load_tests that adds it again) gets
    " #2" after its second key."""
    results, pending, seen = {}, None, {}
    parents = set()  # cases whose subtests reported instead of them
    lines = output.splitlines()

    def start(key):
        seen[key] = seen.get(key, 0) + 1
        return key if seen[key] == 1 else f"{key} #{seen[key]}"

    for line in lines:
        d = DOCTEST.match(line)
        m = None if d else CASE.match(line)
        key = d["id"] if d else (case_key(m) if m else None)
        if key is not None:
            if d:
                key = "Doctest: " + key
            elif m["sub"] and pending and pending.split(" #")[0] == m["id"]:
                parents.add(pending)
            # A subtest's line is followed by more of the same test: the
            # parent stays the case in progress.
            if not (m and m["sub"]):
                pending = start(key)
                rest = (d or m)["rest"]
                if " ..." in rest:
                    r = result_of(rest.split(" ...", 1)[1])
                    if r is not None:
                        results[pending] = r
                        pending = None
            else:
                r = result_of(m["rest"].split(" ...", 1)[1]) if " ..." in m["rest"] else None
                results[start(key)] = r or "missing"
            continue
        if pending is None:
            continue
        # A docstring's line ends in " ... RESULT"; output the case printed
        # ends in the result, on its line or on a line of its own.
        r = result_of(line.rsplit(" ...", 1)[1] if " ..." in line else line)
        if r is not None:
            results[pending] = r
            pending = None
    # The summary names every failure again: trust it where the verbose
    # line was mixed with the test's output.
    told = {}
    for i, line in enumerate(lines):
        s = SUMMARY.match(line)
        if not s:
            continue
        kind = XPASS if s["kind"] == "UNEXPECTED SUCCESS" else s["kind"]
        m = CASE.match(s["head"])
        key = case_key(m) if m else None
        if key is None and i + 1 < len(lines) and DOCTEST.match(lines[i + 1]):
            key = "Doctest: " + DOCTEST.match(lines[i + 1])["id"]
        if key is None:
            continue
        told[(key, kind)] = told.get((key, kind), 0) + 1
    for (key, kind), n in told.items():
        keys = [key] + [f"{key} #{j}" for j in range(2, seen.get(key, 1) + 1)]
        have = sum(1 for k in keys if results.get(k) == kind)
        for k in keys:
            if have >= n:
                break
            if results.get(k) != kind:
                results[k] = kind
                have += 1
    # A test whose subtests failed reports only them: it failed as the
    # first of them did.
    for p in parents:
        if p not in results:
            subs = [r for k, r in results.items() if k.startswith(p + " (") and r in (FAIL, ERROR)]
            if subs:
                results[p] = subs[0]
                if pending == p:
                    pending = None
    return results, pending


def failure_text(output, case, lines=6):
    """The last lines of the traceback the summary shows for `case`."""
    out = output.splitlines()
    case = case.split(" #")[0]
    for i, line in enumerate(out):
        s = SUMMARY.match(line)
        if not s:
            continue
        m = CASE.match(s["head"])
        key = case_key(m) if m else None
        if key is None and i + 1 < len(out) and DOCTEST.match(out[i + 1]):
            key = "Doctest: " + DOCTEST.match(out[i + 1])["id"]
        if key != case:
            continue
        body = []
        for later in out[i + 1:]:
            if later.startswith("=" * 20) or later.startswith("-" * 70) and body and \
                    any(b.startswith("Traceback") for b in body):
                break
            if not later.startswith("-" * 70):
                body.append(later)
        while body and not body[-1].strip():
            body.pop()
        return body[-lines:]
    return []


class Run:
    """One run of one module: its outcome and per-case results."""

    def __init__(self, module, kind):
        self.module, self.kind = module, kind
        self.results, self.pending = {}, None
        self.status = "?"  # passed, failed, skipped, hang, crash
        self.detail = ""
        self.seconds = 0.0
        self.output = ""

    def counts(self):
        ok = sum(1 for r in self.results.values() if r in (OK, XFAIL))
        fail = sum(1 for r in self.results.values() if r in (FAIL, ERROR, XPASS))
        skip = sum(1 for r in self.results.values() if r == SKIP)
        return ok, fail, skip


def clean_environment():
    """This environment without the preload library's variables, nor
    meson's MALLOC_PERTURB_ (it changes glibc's malloc, the native side)."""
    return {k: v for k, v in os.environ.items()
            if k not in ("LD_PRELOAD", "MALLOC_PERTURB_") and not k.startswith("PHEAP_")}


def run_module(args, module, kind):
    """Runs `module` once, natively or preloaded (kind "preloaded"), in a
    fresh temporary directory that it removes afterwards."""
    run = Run(module, kind)
    tmp = tempfile.mkdtemp(prefix=f"pheap-cpython-{module}-{kind}-")
    try:
        env = clean_environment()
        os.makedirs(os.path.join(tmp, "tmp"))
        env["TMPDIR"] = os.path.join(tmp, "tmp")  # regrtest's working directories, and the tests' files
        store = os.path.join(tmp, "store")
        if kind == "preloaded":
            env.update({
                "LD_PRELOAD": args.lib,
                "PHEAP_DIR": store,
                "PHEAP_NAME": "cpython-" + module,
                "PHEAP_COMMIT_MS": str(args.commit_ms),
                "PHEAP_REQUIRE": "1",  # a heap that cannot open is a failure, not a run on glibc's malloc
                "PHEAP_LOG": "warn",
            })
            if args.children:
                env["PHEAP_CHILDREN"] = "1"
        # regrtest's own timeout dumps every thread's stack before ours kills
        # the process group, so a hang's log shows where it was.
        inner = max(10, args.timeout - max(5, args.timeout // 10))
        cmd = [args.python, "-m", "test", "-v", f"--timeout={inner}", *args.regrtest_arg, module]
        # Output to a file, not a pipe: a process a test started in a session
        # of its own may hold it open after the interpreter ends.
        output = os.path.join(tmp, "output")
        start = time.monotonic()
        with open(output, "wb") as f:
            p = subprocess.Popen(cmd, env=env, cwd=tmp, stdin=subprocess.DEVNULL, stdout=f,
                                 stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            p.wait(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_group(p.pid)
            p.wait()
        run.seconds = time.monotonic() - start
        # Whatever the tests left running in the group goes too.
        kill_group(p.pid)
        with open(output, "rb") as f:
            run.output = f.read().decode("utf-8", "replace")
        run.results, run.pending = parse(run.output)
        rc = p.returncode
        # faulthandler's line follows the " ... " of the case that hung.
        if timed_out or re.search(r"Timeout \(\d+:\d+:\d+\)!$", run.output, re.M):
            run.status = "hang"
            run.detail = f"past {args.timeout if timed_out else inner} s"
        elif rc < 0:
            run.status = "crash"
            run.detail = f"killed by signal {signal.Signals(-rc).name}"
        elif kind == "preloaded" and rc == 70 and "pheap" in run.output and not run.results:
            run.status = "crash"
            run.detail = "the heap did not open: " + first_line_with(run.output, "pheap")
        elif "Tests result:" not in run.output:
            run.status = "crash"
            run.detail = f"exit status {rc} before regrtest's summary"
        elif rc == 0 and re.search(r"^\S+ skipped", run.output, re.M) and not run.results:
            run.status = "skipped"
            run.detail = first_line_with(run.output, f"{module} skipped")
        elif rc == 0:
            run.status = "passed"
        else:
            run.status = "failed"
            run.detail = f"exit status {rc}"
        # A preloaded run that left no store ran on glibc's malloc: no comparison.
        if kind == "preloaded" and run.status not in ("hang", "crash") and \
                not (os.path.isdir(store) and os.listdir(store)):
            run.status = "no heap"
            run.detail = "no heap store was written"
        if run.pending and run.status in ("hang", "crash"):
            run.detail += f", in {run.pending}"
        if args.log_dir:
            with open(os.path.join(args.log_dir, f"{module}.{kind}.log"), "w") as f:
                f.write(run.output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run


def first_line_with(text, needle):
    for line in text.splitlines():
        if needle in line:
            return line.strip()
    return ""


def kill_group(pgid):
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class Module:
    """A module's runs and how they compare."""

    def __init__(self, name):
        self.name = name
        self.native = self.native2 = self.preloaded = None
        self.flaky = set()  # cases whose result differed between the native runs
        self.diffs = []  # (case, native result, preloaded result), the flaky ones excluded
        self.flaky_diffs = []
        self.missing = 0  # cases a hung or crashed preloaded run never reached

    def compare(self):
        n, p = self.native, self.preloaded
        if self.native2:
            for case in set(n.results) | set(self.native2.results):
                if n.results.get(case) != self.native2.results.get(case):
                    self.flaky.add(case)
        cut_short = p.status in ("hang", "crash") and n.status not in ("hang", "crash")
        for case in sorted(set(n.results) | set(p.results)):
            a, b = n.results.get(case, "missing"), p.results.get(case, "missing")
            if a == b:
                continue
            if b == "missing" and cut_short:
                self.missing += 1
                continue
            (self.flaky_diffs if case in self.flaky else self.diffs).append((case, a, b))

    def preload_only_trouble(self):
        """A hang or crash preloaded that the native runs did not have."""
        bad = ("hang", "crash", "no heap")
        native_bad = self.native.status in bad or (self.native2 is not None and self.native2.status in bad)
        return self.preloaded.status in bad and not native_bad

    def failed(self):
        return bool(self.diffs) or self.preload_only_trouble()


def run_one(args, name, log):
    m = Module(name)
    m.native = run_module(args, name, "native")
    if args.native_twice:
        m.native2 = run_module(args, name, "native2")
    m.preloaded = run_module(args, name, "preloaded")
    m.compare()
    report_module(m, log)
    return m


def report_module(m, log):
    lines = [f"== {m.name}: native {m.native.status} in {m.native.seconds:.0f} s, "
             f"preloaded {m.preloaded.status} in {m.preloaded.seconds:.0f} s"
             + (f", second native run {m.native2.status}" if m.native2 else "")]
    for run in (m.native, m.native2, m.preloaded):
        if run and run.detail:
            lines.append(f"   {run.kind}: {run.status}: {run.detail}")
    if m.missing:
        lines.append(f"   {m.missing} cases not reached preloaded")
    for case, a, b in m.diffs:
        lines.append(f"   DIFFERS {case}: native {a}, preloaded {b}")
        for t in failure_text(m.preloaded.output if b in (FAIL, ERROR, XPASS) else m.native.output, case):
            lines.append(f"      | {t}")
    for case, a, b in m.flaky_diffs:
        lines.append(f"   natively flaky {case}: native {a}, preloaded {b}")
    extra = sorted(m.flaky - {c for c, _, _ in m.flaky_diffs})
    for case in extra:
        lines.append(f"   natively flaky {case}: {m.native.results.get(case, 'missing')} then "
                     f"{m.native2.results.get(case, 'missing')}, preloaded agrees with one")
    log("\n".join(lines))


def summary(mods, log):
    head = ("module", "cases", "native ok/fail/skip", "preloaded ok/fail/skip", "diffs", "natively flaky", "native s",
            "preloaded s", "preloaded")
    rows = []
    for m in mods:
        n, p = m.native, m.preloaded
        cases = len(set(n.results) | set(p.results))
        status = p.status if p.status == n.status else f"{p.status} (native {n.status})"
        rows.append((m.name, str(cases), "/".join(map(str, n.counts())), "/".join(map(str, p.counts())),
                     str(len(m.diffs)) + (f"+{m.missing} not reached" if m.missing else ""),
                     str(len(m.flaky)) if m.native2 else "-", f"{n.seconds:.0f}", f"{p.seconds:.0f}", status))
    widths = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    log(fmt.format(*head))
    for r in rows:
        log(fmt.format(*r))


def main():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lib", default=os.path.join(root, "build", "preload", "libpheap_preload.so"),
                    help="the preload library (default: build/preload/libpheap_preload.so)")
    ap.add_argument("--python", default=DEFAULT_PYTHON, help=f"the interpreter (default: {DEFAULT_PYTHON})")
    ap.add_argument("--quick", action="store_true", help="CI's subset: " + " ".join(QUICK))
    ap.add_argument("--modules", help="comma-separated modules (default: every module of the full set)")
    ap.add_argument("--timeout", type=int, help="seconds per run of a module before it counts as a hang "
                    "(default: 600, 120 with --quick)")
    ap.add_argument("--commit-ms", type=int, default=int(os.environ.get("PHEAP_COMMIT_MS", "1000")),
                    help="PHEAP_COMMIT_MS of the preloaded runs (default: $PHEAP_COMMIT_MS, else 1000)")
    ap.add_argument("--jobs", type=int, default=1, help="modules run at once (default: 1)")
    ap.add_argument("--native-twice", action="store_true",
                    help="run natively twice and list cases that differ between those runs apart")
    ap.add_argument("--children", action="store_true",
                    help="PHEAP_CHILDREN=1: the interpreters the tests start persist too")
    ap.add_argument("--log-dir", help="keep each run's output there, as MODULE.KIND.log")
    ap.add_argument("--regrtest-arg", action="append", default=[],
                    help="an argument for regrtest, e.g. --regrtest-arg=-uall (repeatable)")
    ap.add_argument("--sanitize", default="none", help="the build's b_sanitize: an instrumented library cannot be "
                    "preloaded into an ordinary program, so anything but none skips")
    args = ap.parse_args()
    modules = args.modules.split(",") if args.modules else (QUICK if args.quick else FULL)
    if args.timeout is None:
        args.timeout = 120 if args.quick else 600
    if args.jobs < 1 or args.timeout < 1:
        ap.error("--jobs and --timeout must be positive")

    def skip(why):
        print("skipped: " + why)
        sys.exit(77)

    if args.sanitize != "none":
        skip("a sanitizer runtime must be the first library a program loads, so an instrumented "
             "libpheap_preload.so cannot run the interpreter (build without b_sanitize to run this)")
    if not os.access(args.python, os.X_OK):
        skip(f"no {args.python}")
    # test_list stands for the test suite package (regrtest itself comes
    # with the standard library); a module missing beside it is misnamed.
    missing = subprocess.run(
        [args.python, "-c", "import importlib.util, sys\n"
         "print(' '.join(m for m in sys.argv[1:] if importlib.util.find_spec('test.' + m) is None))",
         "regrtest", "test_list", *modules], env=clean_environment(), capture_output=True, text=True)
    absent = missing.stdout.split()
    if missing.returncode != 0 or "regrtest" in absent or "test_list" in absent:
        skip(f"{args.python} lacks CPython's regression tests "
             "(Debian's libpython3.11-testsuite; tools/bootstrap installs it)")
    if absent:
        ap.error(f"no such test module: {', '.join(absent)}")
    if not os.path.isfile(args.lib):
        ap.error(f"no preload library at {args.lib} (build it, or give --lib)")
    args.lib = os.path.abspath(args.lib)
    with tempfile.TemporaryDirectory(prefix="pheap-cpython-probe-") as d:
        env = clean_environment()
        env.update({"LD_PRELOAD": args.lib, "PHEAP_DIR": d, "PHEAP_NAME": "probe", "PHEAP_REQUIRE": "1"})
        probe = subprocess.run(["/bin/true"], env=env, capture_output=True, text=True)
        if probe.returncode != 0:
            skip("the preload library cannot open a heap here: " + probe.stderr.strip())
    if args.log_dir:
        os.makedirs(args.log_dir, exist_ok=True)

    lock = threading.Lock()

    def log(text):
        with lock:
            print(text, flush=True)

    log(f"{len(modules)} modules, natively and under {args.lib} (PHEAP_COMMIT_MS={args.commit_ms}), "
        f"timeout {args.timeout} s per run, {args.python}")
    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, args, name, log) for name in modules]
        mods = [f.result() for f in futures]
    log("")
    summary(mods, log)
    failed = [m.name for m in mods if m.failed()]
    flaky = sum(len(m.flaky_diffs) for m in mods)
    log(f"\n{len(mods)} modules in {time.monotonic() - start:.0f} s: "
        + (f"preloaded results differ in {', '.join(failed)}" if failed else "preloaded results agree")
        + (f"; {flaky} differences on natively flaky cases" if flaky else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
