#!/usr/bin/env python3
"""Checks a release binary's header against its target triple: a Mach-O's
CPU type and LC_BUILD_VERSION (platform macOS, minos), an ELF's machine
and that it is static (no PT_INTERP, no PT_DYNAMIC with DT_NEEDED).

    binfmt.py [--minos 11.0] FILE TRIPLE...   (pairs)

Prints one line per file; exits 1 if any does not match."""
import struct
import sys

MH_MAGIC_64 = 0xFEEDFACF
LC_BUILD_VERSION = 0x32
LC_VERSION_MIN_MACOSX = 0x24
PLATFORM_MACOS = 1
CPU = {"aarch64": 0x0100000C, "x86_64": 0x01000007}  # CPU_TYPE_ARM64, CPU_TYPE_X86_64
ELF_MACHINE = {"aarch64": 183, "x86_64": 62}
PT_INTERP, PT_DYNAMIC = 3, 2


def version(v):
    return f"{v >> 16}.{(v >> 8) & 0xFF}" + (f".{v & 0xFF}" if v & 0xFF else "")


def macho(data, arch, want_minos):
    magic, cputype, _sub, _ftype, ncmds, _size, _flags, _res = struct.unpack_from("<IiiIIIII", data, 0)
    if magic != MH_MAGIC_64:
        return f"not a 64-bit little-endian Mach-O (magic {magic:#x})"
    if cputype != CPU[arch]:
        return f"CPU type {cputype:#x}, expected {CPU[arch]:#x} ({arch})"
    off, minos = 32, None
    for _ in range(ncmds):
        cmd, cmdsize = struct.unpack_from("<II", data, off)
        if cmd == LC_BUILD_VERSION:
            platform, m, _sdk = struct.unpack_from("<III", data, off + 8)
            if platform != PLATFORM_MACOS:
                return f"LC_BUILD_VERSION platform {platform}, expected 1 (macOS)"
            minos = version(m)
        elif cmd == LC_VERSION_MIN_MACOSX:
            minos = version(struct.unpack_from("<I", data, off + 8)[0])
        off += cmdsize
    if minos is None:
        return "no LC_BUILD_VERSION load command"
    if minos != want_minos:
        return f"minos {minos}, expected {want_minos}"
    return None, f"Mach-O {arch}, minos {minos}"


def elf(data, arch):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return "not a 64-bit little-endian ELF"
    machine = struct.unpack_from("<H", data, 18)[0]
    if machine != ELF_MACHINE[arch]:
        return f"ELF machine {machine}, expected {ELF_MACHINE[arch]} ({arch})"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for i in range(phnum):
        ptype, = struct.unpack_from("<I", data, phoff + i * phentsize)
        if ptype == PT_INTERP:
            return "dynamically linked (has PT_INTERP), expected static"
    return None, f"ELF {arch}, static"


def check(path, triple, want_minos):
    arch = triple.split("-")[0]
    with open(path, "rb") as f:
        data = f.read()
    if arch not in CPU:
        return f"unknown architecture in {triple}"
    res = macho(data, arch, want_minos) if "-apple-darwin" in triple else elf(data, arch)
    if isinstance(res, str):
        return res
    print(f"OK {path}: {res[1]}")
    return None


def main(argv):
    want_minos = "11.0"
    if argv[:1] == ["--minos"]:
        want_minos, argv = argv[1], argv[2:]
    if not argv or len(argv) % 2:
        sys.exit(__doc__)
    bad = 0
    for path, triple in zip(argv[::2], argv[1::2]):
        err = check(path, triple, want_minos)
        if err:
            print(f"FAIL {path} ({triple}): {err}")
            bad += 1
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main(sys.argv[1:])
