#!/usr/bin/env python3
"""Judges READY=1 against what the health poller saw.

    check-ready.py NOTIFY_LOG POLL_LOG

Passes when exactly one READY=1 arrived, the poller saw `200 ok`, every 200
before it said "starting", and READY=1 arrived after the poller's first
`200 ok` response -- or, when the wrapper sampled the switch first, at least
after the poller sent its last request answered "starting" (so READY=1 never
came while the server still said "starting"). Prints what it measured, and
`PROBLEM ...` lines on failure (exit 1).
"""
import sys

notify_log, poll_log = sys.argv[1], sys.argv[2]
ready = [int(l.split()[0]) for l in open(notify_log) if l.split()[2:3] == ["READY=1"]]
polls, first_ok = [], None
for line in open(poll_log):
    p = line.split(maxsplit=2)
    if p[0] == "FIRST_OK":
        first_ok = (int(p[1]), int(p[2]))
    else:
        polls.append((int(p[0]), int(p[1]), p[2].strip()))
problems = []
if len(ready) != 1:
    problems.append(f"{len(ready)} READY=1 messages (want exactly 1)")
if first_ok is None:
    problems.append("the poller never saw 200 \"ok\"")
before_ok = [s for (_, _, s) in polls if first_ok is None or s != "200 ok"]
other_200 = sorted({s for s in before_ok if s.startswith("200 ") and s != "200 starting"})
if other_200:
    problems.append(f"the poller saw other 200 answers before \"ok\": {other_200}")
starting = [(a, b) for (a, b, s) in polls if s == "200 starting"]
first_200 = next(((a, b) for (a, b, s) in polls if s.startswith("200 ")), None)
states = []
for (_, _, s) in polls:
    if not states or states[-1][0] != s:
        states.append([s, 1])
    else:
        states[-1][1] += 1
summary = " -> ".join(f"{s} x{n}" for s, n in states if s != "started")
ms = lambda ns: ns / 1e6
info = [f"poller: {summary}"]
if ready and first_ok:
    r = ready[0]
    delay = ms(r - first_ok[1])
    info.append(f"READY=1 {delay:+.1f} ms after the poller's first \"ok\" response "
                f"({ms(r - first_ok[0]):+.1f} ms after that request was sent)")
    if starting:
        info.append(f"\"starting\" was answered for {ms(starting[-1][1] - starting[0][0]):.0f} ms; "
                    f"READY=1 {ms(r - starting[-1][1]):+.1f} ms after the last \"starting\"")
    if r <= first_ok[1]:
        # The server switched to "ok" after it answered the last "starting"
        # and before it answered the first "ok". A "starting" answer to a
        # request SENT after READY=1 proves READY=1 came while the server was
        # still starting: fail. READY=1 between that send and the first "ok"
        # arriving is the poller's sampling gap (on a loaded machine its
        # answers arrive late): paperclipd may simply have sampled the switch
        # first, so it passes, noted.
        if starting and r < starting[-1][0]:
            problems.append(f"READY=1 arrived while the server still answered \"starting\" "
                            f"(the last \"starting\" answered a request sent {ms(starting[-1][0] - r):.1f} ms after READY=1)")
        elif not starting:
            problems.append(f"READY=1 arrived {ms(first_ok[1] - r):.1f} ms before the poller's first \"ok\" "
                            f"and the poller never saw \"starting\"")
        else:
            info.append(f"note: READY=1 came {ms(first_ok[1] - r):.1f} ms before the poller's first \"ok\" arrived "
                        f"but after its last \"starting\" request was sent: within the poller's sampling gap")
    print(f"READY_DELAY_MS={delay:.1f}")
for i in info:
    print(i)
for p in problems:
    print(f"PROBLEM {p}")
sys.exit(1 if problems else 0)
