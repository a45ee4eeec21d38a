#!/usr/bin/env python3
"""Regenerates Sources/VaultlineCore/Chunking/FastCDC+GearTable.swift.

GEAR[i] is the first 8 bytes, big-endian, of MD5 over 64 bytes each equal to i: the table
used by fastcdc-rs and by Bazel's FastCDC 2020 test vectors.
"""
import hashlib, pathlib
g = [int.from_bytes(hashlib.md5(bytes([i]) * 64).digest()[:8], "big") for i in range(256)]
out = ["// Generated: GEAR[i] = first 8 bytes (big-endian) of MD5(64 bytes each equal to i).",
       "// The table of fastcdc-rs and Bazel's FastCDC 2020; regenerate with tools/gen-gear-table.py.",
       "", "extension FastCDC {", "    /// The 256-entry Gear table shared by FastCDC 2016 and 2020.",
       "    static let gear: [UInt64] = ["]
for i in range(0, 256, 4):
    out.append("        " + ", ".join("0x%016x" % x for x in g[i:i + 4]) + ",")
out += ["    ]", "}", ""]
path = pathlib.Path(__file__).resolve().parent.parent / "Sources/VaultlineCore/Chunking/FastCDC+GearTable.swift"
path.write_text("\n".join(out))
