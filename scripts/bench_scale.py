"""Part 5 of scripts/bench: how cost grows with work.

  a. the output relay: 1 GB of 100-byte lines from the server, written
     straight to a pipe, through `paperclipd run` to a pipe, and through
     `paperclipd run --log-file` with rotation; wall time, MB/s, CPU seconds
     of paperclipd and of the writer;
  b. `status --all` (text and --json) with 1, 10 and 100 instances under
     one home;
  c. `status` (text and --json) while the server has 0, 100 and 1,000
     adopted processes.

Imported by scripts/bench.py, which passes itself (`run(bench)`) for its
helpers, paths, notes and clean-up lists. With BENCH_BEFORE (an earlier
build: scripts/bench builds it from BENCH_BEFORE_REV) every measurement is
made for that build too, after this one's. Budgeted to BENCH_SCALE_BUDGET
seconds (150) for both; 1 GB shrinks to 250 MB, with a note, when there is
less time. To iterate: BENCH_ONLY=scale scripts/bench (part 5 alone), and
BENCH_SCALE_PARTS=ab to run only some of a, b, c.
"""

import json
import os
import re
import signal
import statistics
import subprocess
import threading
import time

SCALE_BUDGET = float(os.environ.get("BENCH_SCALE_BUDGET", "150"))
SPEW_BYTES = int(os.environ.get("BENCH_SPEW_BYTES", str(1000 * 1000 * 1000)))
LOG_MAX_SIZE = 100 * 1024 * 1024  # --log-max-size: ~9 rotations in 1 GB
LOG_KEEP = 2
STATUS_REPS = 5
INSTANCE_COUNTS = (1, 10, 100)
ADOPTED_COUNTS = tuple(int(x) for x in os.environ.get("BENCH_ADOPTED", "0,100,1000").split(","))
# BENCH_SCALE_PARTS=c (or ab, …) runs only those (to iterate)
PARTS = os.environ.get("BENCH_SCALE_PARTS", "abc")
TICK = os.sysconf("SC_CLK_TCK")
MB = 1000 * 1000
# The paperclipd being measured, and a tag for its scratch directories
# (part 5 runs once per build: this one, and BENCH_BEFORE when set).
RUN = {"bin": None, "tag": ""}
DROPPED = re.compile(rb"(\d+) bytes of output were dropped")


def env():
    """The bench's environment without a manager's: paperclipd runs as
    from a shell (no NOTIFY_SOCKET, no unit)."""
    e = dict(os.environ)
    for k in ("NOTIFY_SOCKET", "INVOCATION_ID", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS"):
        e.pop(k, None)
    return e


def cpu_secs(pid):
    """user + system CPU seconds of pid itself (all its threads), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def popen(b, argv, stdout, logname):
    """Like bench.spawn, with stdout and stderr to `stdout` (an fd)."""
    p = subprocess.Popen(argv, env=env(), stdin=subprocess.DEVNULL, stdout=stdout,
                         stderr=stdout, start_new_session=True)
    p.pidfd = os.pidfd_open(p.pid)
    b.PROCS.append(p)
    return p


class Drain:
    """Reads a pipe and throws the bytes away, noting when the last came and
    whether the writer's last line (SPEW-END) arrived."""

    def __init__(self, fd):
        self.fd = fd
        self.bytes = 0
        self.last = None
        self.ended = threading.Event()
        self.dropped_reports = 0
        self.dropped = 0
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        tail = b""
        while True:
            try:
                data = os.read(self.fd, 1 << 20)
            except OSError:
                break
            if not data:
                break
            self.last = time.time()
            self.bytes += len(data)
            if b"were dropped" in data:
                found = DROPPED.findall(data)
                self.dropped_reports += len(found)
                self.dropped += sum(int(n) for n in found)
            tail = (tail + data[-200:])[-200:]
            if b"SPEW-END" in tail:
                self.ended.set()
        self.ended.set()

    def wait(self, timeout):
        """Waits for the end line, or for 2 s without output (when the end
        line itself was dropped)."""
        end = time.time() + timeout
        while time.time() < end:
            if self.ended.wait(0.2):
                return True
            if self.last and time.time() - self.last > 2:
                return False
        return False


def wait_for_log_end(path, timeout):
    """Polls the current log file for the writer's last line; returns when
    it was seen (or None)."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            with open(path, "rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - 4096))
                if b"SPEW-END" in f.read():
                    return time.time()
        except OSError:
            pass
        time.sleep(0.01)
    return None


def relay_one(b, mode, nbytes):
    """One 1 GB run; returns a dict of measurements."""
    d = os.path.join(b.TMP, f"{RUN['tag']}spew-{mode}")
    os.makedirs(d)
    port = b.free_port()
    child = [b.CHILD, "spew", str(nbytes)]
    log_path = os.path.join(d, "logs", "paperclipd.log")
    if mode == "direct":
        argv = child
    else:
        argv = [RUN["bin"], "run", "--home", os.path.join(d, "home"), "--url", f"http://127.0.0.1:{port}",
                "--ready-timeout", "10m"]
        if mode == "log-file":
            argv += ["--log-file", log_path, "--log-max-size", str(LOG_MAX_SIZE),
                     "--log-keep", str(LOG_KEEP)]
        argv += ["--"] + child + [str(port)]
    r, w = os.pipe()
    if mode == "log-file":
        os.close(r)
        os.close(w)
        r = None
        w = os.open(os.path.join(d, "console.log"), os.O_WRONLY | os.O_CREAT, 0o644)
    drain = Drain(r) if r is not None else None
    t0 = time.time()
    p = popen(b, argv, w, f"spew-{mode}")
    os.close(w)
    res = {"mode": mode, "bytes": nbytes}
    timeout = max(10.0, min(90.0, b.left() - 30))
    if drain:
        complete = drain.wait(timeout)
        t_end = drain.last
        res["received"] = drain.bytes
        res["gap_reports"] = drain.dropped_reports
        res["dropped"] = drain.dropped
    else:
        t_end = wait_for_log_end(log_path, timeout)
        complete = t_end is not None
    res["complete"] = complete
    if t_end:
        res["wall"] = t_end - t0
    # CPU while everything is still alive (the writer waits for a signal).
    if mode == "direct":
        res["writer_cpu"] = cpu_secs(p.pid)
    else:
        res["paperclipd_cpu"] = cpu_secs(p.pid)
        spew = [c for c in children(p.pid) if comm(c) == "bench-child"]
        res["writer_cpu"] = cpu_secs(spew[0]) if spew else None
        try:
            with open(f"/proc/{p.pid}/status") as f:
                for line in f:
                    if line.startswith(("VmHWM:", "VmRSS:")):
                        res[line.split(":")[0]] = int(line.split()[1]) * 1024
        except OSError:
            pass
    if mode == "log-file":
        kept = [log_path] + [f"{log_path}.{n}" for n in range(1, LOG_KEEP + 1)]
        res["files"] = [os.path.getsize(k) for k in kept if os.path.exists(k)]
        found = [n for k in kept if os.path.exists(k) for n in DROPPED.findall(open(k, "rb").read())]
        res["gap_reports"] = len(found)
        res["dropped"] = sum(int(n) for n in found)
    b.stop(p)
    if mode == "direct":
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if drain:
        drain.thread.join(5)
        os.close(r)
    # the log files are ~300 MB: not kept
    subprocess.call(["rm", "-rf", d])
    return res


def part_relay(b, nbytes):
    out = []
    for mode in ("direct", "pipe", "log-file"):
        b.log(f"part 5a: {nbytes / MB:.0f} MB, {mode}")
        out.append(relay_one(b, mode, nbytes))
    return out


def timed(argv, reps):
    """Median wall time of `reps` calls, the last exit code and stdout."""
    times, code, out = [], None, b""
    for _ in range(reps):
        t = time.perf_counter()
        cp = subprocess.run(argv, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, timeout=120)
        times.append(time.perf_counter() - t)
        code, out = cp.returncode, cp.stdout
    return statistics.median(times), code, out


def write_instance(home, name, port):
    d = os.path.join(home, "instances", name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump({"server": {"host": "127.0.0.1", "port": port}}, f)


def wait_ready(b, home, name, timeout):
    end = time.time() + timeout
    while time.time() < end:
        cp = subprocess.run([RUN["bin"], "status", "--home", home, "-i", name], env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if cp.returncode == 0:
            return True
        time.sleep(0.05)
    return False


def run_instance(b, home, name, port, server):
    d = os.path.join(b.TMP, f"{RUN['tag']}srv-{name}")
    os.makedirs(d, exist_ok=True)
    b.STATE_DIRS.append(d)
    write_instance(home, name, port)
    logf = os.open(os.path.join(b.TMP, f"{RUN['tag']}run-{name}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    p = popen(b, [RUN["bin"], "run", "--home", home, "-i", name, "--"] + server(d, port), logf, name)
    os.close(logf)
    return p, d


def part_all(b, budget_end):
    """status --all with 1, 10, 100 instances: one runs (ready), the others
    are stopped (a config.json each, on distinct ports nobody listens on)."""
    home = os.path.join(b.TMP, f"{RUN['tag']}home-all")
    port = b.free_port()
    p, _ = run_instance(b, home, "inst000", port, lambda d, port: [b.CHILD, "serve", d, str(port)])
    out = {"ready": wait_ready(b, home, "inst000", 15)}
    made = 1
    for n in INSTANCE_COUNTS:
        if time.time() > budget_end:
            b.NOTES.append(f"part 5b stopped before {n} instances (time budget)")
            break
        while made < n:
            write_instance(home, f"inst{made:03d}", b.free_port())
            made += 1
        text, code, _ = timed([RUN["bin"], "status", "--all", "--home", home], STATUS_REPS)
        js, _, raw = timed([RUN["bin"], "status", "--all", "--json", "--home", home], STATUS_REPS)
        try:
            rows = json.loads(raw)
        except ValueError:
            rows = []
        out[n] = {"text": text, "json": js, "rows": len(rows), "exit": code,
                  "states": sorted({str(r.get("state")) for r in rows})}
        b.log(f"part 5b: {n} instances: {text * 1000:.1f} ms text, {js * 1000:.1f} ms json")
    one, _, _ = timed([RUN["bin"], "status", "--home", home, "-i", "inst001"], STATUS_REPS)
    out["one_stopped"] = one
    one, _, _ = timed([RUN["bin"], "status", "--home", home, "-i", "inst000"], STATUS_REPS)
    out["one_running"] = one
    b.stop(p)
    # Every instance running: each adds processes and sockets to /proc.
    home = os.path.join(b.TMP, f"{RUN['tag']}home-running")
    running = []
    out["running"] = {}
    for n in INSTANCE_COUNTS:
        if time.time() > budget_end:
            b.NOTES.append(f"part 5b stopped before {n} running instances (time budget)")
            break
        while len(running) < n:
            name = f"run{len(running):03d}"
            running.append(run_instance(b, home, name, b.free_port(),
                                        lambda d, port: [b.CHILD, "serve", d, str(port)])[0])
        end = time.time() + 30
        while time.time() < end and subprocess.call(
                [RUN["bin"], "status", "--all", "--home", home], env=env(),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
            time.sleep(0.1)
        reps = 3 if n >= 100 else STATUS_REPS
        text, code, _ = timed([RUN["bin"], "status", "--all", "--home", home], reps)
        js, _, _ = timed([RUN["bin"], "status", "--all", "--json", "--home", home], reps)
        out["running"][n] = {"text": text, "json": js, "all_ready": code == 0}
        b.log(f"part 5b: {n} running: {text * 1000:.1f} ms text, {js * 1000:.1f} ms json")
    for p in running:
        os.kill(p.pid, signal.SIGTERM)
    for p in running:
        b.stop(p)
    return out


def part_adopted(b, budget_end):
    """status while the server has 0, 100, 1000 adopted processes."""
    out = {}
    for n in ADOPTED_COUNTS:
        if time.time() > budget_end:
            b.NOTES.append(f"part 5c stopped before {n} adopted processes (time budget)")
            break
        home = os.path.join(b.TMP, f"{RUN['tag']}home-adopt{n}")
        port = b.free_port()
        p, d = run_instance(b, home, "default", port,
                            lambda d, port: [b.CHILD, "leak", str(n), d, str(port)])
        ok = b.wait_file(os.path.join(d, "start"), 60) and wait_ready(b, home, "default", 15)
        text, _, _ = timed([RUN["bin"], "status", "--home", home], STATUS_REPS)
        js, _, raw = timed([RUN["bin"], "status", "--json", "--home", home], STATUS_REPS)
        try:
            count = (json.loads(raw).get("adopted") or {}).get("count")
        except ValueError:
            count = None
        out[n] = {"text": text, "json": js, "count": count, "ready": ok}
        b.log(f"part 5c: {n} adopted (status counts {count}): {text * 1000:.1f} ms text, "
              f"{js * 1000:.1f} ms json")
        kids = children(p.pid)
        b.stop(p, grace=20)
        # run stops what it adopted on its way out; whatever is left is ours
        for c in kids:
            if b.alive(c) and comm(c) == "bench-child":
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    return out


def run(b):
    """Part 5 for this build and, with BENCH_BEFORE, for that one after it;
    returns [(build name, results)]."""
    builds = [("this build", b.BIN)]
    if getattr(b, "BEFORE", None):
        builds.append((b.BEFORE_NAME, b.BEFORE))
    out = []
    start = time.time()
    budget_end = min(start + SCALE_BUDGET, b.DEADLINE - 10)
    # ~10 s per GB and build at worst; the same size for every build
    nbytes = SPEW_BYTES
    if budget_end - start < 60 * len(builds):
        nbytes = SPEW_BYTES // 4
        b.NOTES.append(f"part 5a wrote {nbytes / MB:.0f} MB instead of {SPEW_BYTES / MB:.0f} MB "
                       "(time budget)")
    for i, (name, path) in enumerate(builds):
        if budget_end - time.time() < 30:
            b.NOTES.append(f"part 5 not run for {name} (time budget)")
            break
        RUN["bin"], RUN["tag"] = path, f"b{i}-"
        # this build may use what the others leave
        share = (budget_end - time.time()) / (len(builds) - i)
        out.append((name, run_one(b, time.time() + max(share, 40), nbytes)))
    return out


def run_one(b, budget_end, nbytes):
    start = time.time()
    res = {}
    if "a" in PARTS:
        res["relay"] = part_relay(b, nbytes)
    if "b" in PARTS:
        res["all"] = part_all(b, budget_end - 20)
    if "c" in PARTS:
        res["adopted"] = part_adopted(b, budget_end)
    res["seconds"] = time.time() - start
    return res


def fmt_ms(x):
    return "–" if x is None else f"{x * 1000:.1f} ms"


def report(runs):
    """The Markdown section; runs = [(build name, results)], this build first."""
    lines = []
    add = lines.append
    add("## 5. How cost grows with work")
    add("")
    if not runs:
        add("not run (time budget)")
        return "\n".join(lines)
    many = len(runs) > 1
    col = "| build " if many else ""
    sep = "|---" if many else ""

    def cell(name):
        return f"| {name} " if many else ""

    relay = [(name, r) for name, res in runs for r in res.get("relay") or []]
    if relay:
        n = relay[0][1]["bytes"]
        add(f"### a. Output relay: {n / MB:.0f} MB of 100-byte lines (bench-child spew, 256 KiB writes)")
        add("")
        add(col + "| path | wall | MB/s | paperclipd CPU (user+sys) | writer CPU | paperclipd VmHWM | "
            "delivered |")
        add(sep + "|---|---|---|---|---|---|---|")
        names = {"direct": "server → pipe (no supervisor)",
                 "pipe": "server → paperclipd → pipe",
                 "log-file": f"server → paperclipd → --log-file (rotated every "
                             f"{LOG_MAX_SIZE // 1048576} MiB, keep {LOG_KEEP})"}
        for name, r in relay:
            wall = r.get("wall")
            if not wall:
                add(cell(name) + f"| {names[r['mode']]} | – | – | – | – | – | no end seen |")
                continue
            pcpu = r.get("paperclipd_cpu")
            hwm = r.get("VmHWM")
            got = "all" if r.get("complete") else "end line missing"
            if r["mode"] == "pipe":
                got = f"{r.get('received', 0) / MB:.0f} MB received"
            if r.get("gap_reports"):
                got += (f"; {r['dropped'] / MB:.1f} MB dropped ({r['gap_reports']} report(s)"
                        + (" in the kept files" if r["mode"] == "log-file" else "") + ")")
            add(cell(name) + f"| {names[r['mode']]} | {wall:.2f} s | {r['bytes'] / MB / wall:.0f} | "
                + ("–" if pcpu is None else f"{pcpu:.2f} s")
                + f" | {'–' if r.get('writer_cpu') is None else format(r['writer_cpu'], '.2f') + ' s'} | "
                + ("–" if hwm is None else f"{hwm / 1048576:.1f} MiB") + f" | {got} |")
        add("")
        add("The writer's last line ends each run; wall = spawn → last byte at the reader (a "
            "Python loop reading 1 MiB at a time) or the last line in the log file (polled every "
            "10 ms). The server also answers HTTP on its port (a forked helper) so readiness "
            "passes at once and probing stops. CPU from /proc/PID/stat (all threads) before the "
            "run ends.")
        add("")
    alls = [(name, res["all"]) for name, res in runs if res.get("all")]
    if alls:
        add(f"### b. `status --all` by number of instances (median of {STATUS_REPS} calls)")
        add("")
        add(col + "| instances | one running, the rest stopped: text | --json | every one running: "
            "text | --json |")
        add(sep + "|---|---|---|---|---|")
        for name, al in alls:
            ru = al.get("running") or {}
            for n in INSTANCE_COUNTS:
                if n not in al and n not in ru:
                    continue
                a, r = al.get(n) or {}, ru.get(n) or {}
                add(cell(name) + f"| {n} | {fmt_ms(a.get('text'))} | {fmt_ms(a.get('json'))} | "
                    f"{fmt_ms(r.get('text'))} | {fmt_ms(r.get('json'))} |")
        add("")
        al = alls[0][1]
        add("Running: `paperclipd run -i NAME -- bench-child serve` (each ready); stopped: a "
            "`config.json` on a port where nothing listens. `status -i` alone"
            + ("" if not many else " (this build)") + f": a running instance "
            f"{fmt_ms(al.get('one_running'))}, a stopped one {fmt_ms(al.get('one_stopped'))}.")
        for name, al in alls:
            ru = al.get("running") or {}
            if 1 in ru and 100 in ru:
                add(f"{name}: 100 running instances cost {ru[100]['text'] / ru[1]['text']:.0f}× one "
                    "(linear: ≤ 100×).")
        add("")
    ads = [(name, res["adopted"]) for name, res in runs if res.get("adopted")]
    if ads:
        add(f"### c. `status` by number of adopted processes (median of {STATUS_REPS} calls)")
        add("")
        add(col + "| adopted | text | --json | counted by status |")
        add(sep + "|---|---|---|---|")
        for name, ad in ads:
            for n in ADOPTED_COUNTS:
                if n in ad:
                    r = ad[n]
                    add(cell(name) + f"| {n} | {fmt_ms(r['text'])} | {fmt_ms(r['json'])} | {r['count']} |")
        add("")
        add("The server (`bench-child leak N`) double-forks N processes that sleep, so the "
            "`run` (a subreaper) adopts them, then serves HTTP; `status` finds them in /proc.")
        for name, ad in ads:
            if 0 in ad and max(ad) != 0:
                hi = max(ad)
                add(f"{name}: each adopted process adds "
                    f"{(ad[hi]['text'] - ad[0]['text']) / hi * 1e6:.0f} µs to `status`.")
        add("")
    add(f"_Part 5 took {sum(res.get('seconds', 0) for _, res in runs):.0f} s._")
    return "\n".join(lines)
