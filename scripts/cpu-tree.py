"""CPU use of a process and all its descendants over a window, from /proc (Linux).

    python3 scripts/cpu-tree.py PID SECONDS

Prints one line per process (pid, name, % of one core over the window) and the total. A
process that starts inside the window counts from zero; one that ends inside it is left out
(its last ticks are lost with it). scripts/idle-cpu.sh calls this for an idle `roar dev`.
"""
import os
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(name, ppid, utime+stime ticks) of pid, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            raw = f.read()
    except OSError:
        return None
    # The name is in parentheses and may itself hold spaces or parentheses.
    name = raw[raw.index("(") + 1 : raw.rindex(")")]
    rest = raw[raw.rindex(")") + 2 :].split()
    return name, int(rest[1]), int(rest[11]) + int(rest[12])


def tree(root):
    """{pid: (name, ticks)} for root and every descendant."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = stat(int(entry))
            if s:
                procs[int(entry)] = s
    out, todo = {}, [root]
    while todo:
        pid = todo.pop()
        if pid in procs and pid not in out:
            out[pid] = (procs[pid][0], procs[pid][2])
            todo.extend(p for p, s in procs.items() if s[1] == pid)
    return out


def main():
    root, seconds = int(sys.argv[1]), float(sys.argv[2])
    before = tree(root)
    if not before:
        sys.exit(f"cpu-tree: no process {root}")
    t0 = time.monotonic()
    time.sleep(seconds)
    after = tree(root)
    wall = time.monotonic() - t0
    total = 0.0
    rows = []
    for pid, (name, ticks) in after.items():
        used = (ticks - before.get(pid, (name, 0))[1]) / TICK
        total += used
        rows.append((used, pid, name))
    for used, pid, name in sorted(rows, reverse=True):
        print(f"{pid:>8} {name:<24} {100 * used / wall:6.2f} % of a core")
    print(f"{'total':>8} {len(rows)} processes{'':<11} {100 * total / wall:6.2f} % of a core over {wall:.1f} s")


if __name__ == "__main__":
    main()
