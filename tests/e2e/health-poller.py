#!/usr/bin/env python3
"""Polls http://HOST:PORT/api/health every INTERVAL_MS and logs every attempt
as `<send ns> <receive ns> <state>` (CLOCK_MONOTONIC), where state is
`refused`, `error:<what>` or `<code> <body's status field>`. Stops after the
first `200 ok` (logging `FIRST_OK <send ns> <receive ns>`) or at the deadline.

    health-poller.py HOST PORT INTERVAL_MS DEADLINE_S LOG
"""
import http.client
import json
import signal
import sys
import time

host, port, interval, deadline, log = (
    sys.argv[1], int(sys.argv[2]), float(sys.argv[3]) / 1000, float(sys.argv[4]), sys.argv[5])
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
mono = lambda: time.clock_gettime_ns(time.CLOCK_MONOTONIC)
end = time.monotonic() + deadline
with open(log, "a", buffering=1) as f:
    f.write(f"{mono()} {mono()} started\n")
    while time.monotonic() < end:
        t_send = mono()
        code, st = None, None
        c = http.client.HTTPConnection(host, port, timeout=2)
        try:
            c.request("GET", "/api/health", headers={"Connection": "close"})
            r = c.getresponse()
            body = r.read(65536)
            code = r.status
            try:
                st = json.loads(body).get("status")
            except Exception:
                st = "<not-json>"
            state = f"{code} {st}"
        except ConnectionRefusedError:
            state = "refused"
        except Exception as e:  # reset while starting, timeout, ...
            state = f"error:{type(e).__name__}"
        finally:
            c.close()
        t_recv = mono()
        f.write(f"{t_send} {t_recv} {state}\n")
        if code == 200 and st == "ok":
            f.write(f"FIRST_OK {t_send} {t_recv}\n")
            break
        time.sleep(max(0.0, interval - (t_recv - t_send) / 1e9))
