"""The kernels of the last synchronised stretch in a CubeCL profile log.

`CUBECL_DEBUG_LOG=FILE CUBECL_DEBUG_OPTION=profile realsyn bench train-step ...`
times every kernel on the device and, at every sync, writes a table of the kernels
launched since the last one (the bench syncs after each step), so the last table is
the last timed step's. Prints how many kernels of how many kinds, and the busiest.

    python3 benches/cubecl_profile.py /tmp/cubecl.log [TOP]
"""

import sys


def last_table(lines):
    """(kernels, total) of the last table: rows [name, duration, count, ratio]."""
    # Each table: a header row "| Name | Duration | Num Computed | Ratio |", a rule,
    # rows sorted by device time, a "Total" row, then a closing rule.
    starts = [i for i, line in enumerate(lines) if "Num Computed" in line]
    if not starts:
        return None, None
    rows = []
    for line in lines[starts[-1] + 2 :]:
        if line.startswith("|\u23af"):  # the closing rule
            break
        cells = [c.strip() for c in line.strip().strip("|").rsplit(" | ", 3)]
        if len(cells) == 4 and cells[2].isdigit():
            rows.append(cells)
    total = next((r for r in rows if r[0] == "Total"), None)
    return [r for r in rows if r[0] != "Total"], total


def short(name):
    """The kernel's name without the runtime; of a matmul's long type list, its
    families (which say whether it runs on tensor cores: Cmma/Mma, or not: Unit)."""
    parts = [p.strip() for p in name.split("|")]
    parts = [p for p in parts if p and not p.endswith("Runtime")]
    if parts and parts[0] == "MatmulEntry":
        families = [p for p in parts if p.endswith("MatmulFamily")]
        return " | ".join(["MatmulEntry", *dict.fromkeys(families)])
    return " | ".join(parts[:2]) + (" | ..." if len(parts) > 2 else "")


def main():
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 25
    lines = open(sys.argv[1], errors="replace").read().splitlines()
    kernels, total = last_table(lines)
    if total is None:
        print("no CubeCL profile table in the log (did the run sync after its step?)")
        return
    print(f"one profiled step: {total[2]} kernels of {len(kernels)} kinds, {total[1]} on the device")
    for name, duration, count, ratio in kernels[:top]:
        print(f"{duration:>14} {count:>6} {ratio:>5}  {short(name)}")


if __name__ == "__main__":
    main()
