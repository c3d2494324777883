import Testing
@testable import Qcow2

/// Builds one raw table entry as the spec lays it out, with any extra data.
private func rawEntry(
    l1Offset: UInt64 = 0x30000, l1Size: UInt32 = 1, id: String, name: String,
    dateSec: UInt32 = 1_700_000_000, dateNsec: UInt32 = 5, vmClock: UInt64 = 3_723_456_000_000,
    vmState32: UInt32 = 0, extra: [UInt8]
) -> [UInt8] {
    var h = [UInt8](repeating: 0, count: 40)
    BigEndian.store(l1Offset, into: &h, at: 0)
    BigEndian.store(l1Size, into: &h, at: 8)
    BigEndian.store(UInt16(id.utf8.count), into: &h, at: 12)
    BigEndian.store(UInt16(name.utf8.count), into: &h, at: 14)
    BigEndian.store(dateSec, into: &h, at: 16)
    BigEndian.store(dateNsec, into: &h, at: 20)
    BigEndian.store(vmClock, into: &h, at: 24)
    BigEndian.store(vmState32, into: &h, at: 32)
    BigEndian.store(UInt32(extra.count), into: &h, at: 36)
    return h + extra + Array(id.utf8) + Array(name.utf8)
}

private func be64(_ v: UInt64) -> [UInt8] {
    var b = [UInt8](repeating: 0, count: 8)
    BigEndian.store(v, into: &b, at: 0)
    return b
}

/// Entries joined with the 8-byte alignment the spec asks for.
private func table(_ entries: [[UInt8]]) -> [UInt8] {
    var out: [UInt8] = []
    for e in entries {
        out += [UInt8](repeating: 0, count: (8 - out.count % 8) % 8)
        out += e
    }
    return out
}

@Suite struct SnapshotTableTests {
    @Test func decodesAllFieldsOfQemuEntries() throws {
        let bytes = table([
            rawEntry(id: "1", name: "first", extra: be64(4096) + be64(1 << 30) + be64(77)),
            rawEntry(l1Offset: 0x50000, l1Size: 2, id: "12", name: "second snapshot",
                     extra: be64(UInt64(1) << 33) + be64(2 << 30) + be64(UInt64.max)),
        ])
        let t = try SnapshotTable.decode(bytes, count: 2)
        #expect(t.entries.count == 2)
        #expect(t.byteLength == UInt64(bytes.count))
        let a = t.entries[0]
        #expect(a.l1TableOffset == 0x30000 && a.l1Size == 1)
        #expect(a.id == "1" && a.name == "first")
        #expect(a.dateSeconds == 1_700_000_000 && a.dateNanoseconds == 5)
        #expect(a.vmClockNanoseconds == 3_723_456_000_000)
        #expect(a.vmStateSize == 4096 && a.diskSize == 1 << 30 && a.icount == 77)
        #expect(a.extraDataSize == 24 && a.unknownExtraData.isEmpty)
        let b = t.entries[1]
        #expect(b.l1TableOffset == 0x50000 && b.l1Size == 2)
        #expect(b.name == "second snapshot")
        // The 64-bit size wins over the 32-bit field; all-ones icount means none.
        #expect(b.vmStateSize == UInt64(1) << 33)
        #expect(b.icount == nil)
    }

    @Test func secondEntryStartsAligned() throws {
        // 40 + 24 + 1 + 3 = 68 bytes: the next entry starts at 72.
        let first = rawEntry(id: "1", name: "abc", extra: be64(0) + be64(0) + be64(0))
        #expect(first.count == 68)
        let bytes = table([first, rawEntry(id: "2", name: "d", extra: [])])
        #expect(bytes.count == 72 + 42)
        let t = try SnapshotTable.decode(bytes, count: 2)
        #expect(t.entries[1].id == "2" && t.entries[1].name == "d")
        #expect(t.byteLength == 114)
    }

    @Test(arguments: [0, 8, 16, 24, 40])
    func extraDataDecidesWhichFieldsExist(extraSize: Int) throws {
        var extra = be64(9999) + be64(5 << 20) + be64(42) + [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        extra = Array(extra.prefix(extraSize))
        let t = try SnapshotTable.decode(rawEntry(id: "7", name: "n", vmState32: 123, extra: extra), count: 1)
        let e = t.entries[0]
        #expect(e.vmStateSize == (extraSize >= 8 ? 9999 : 123))
        #expect(e.diskSize == (extraSize >= 16 ? 5 << 20 : nil))
        #expect(e.icount == (extraSize >= 24 ? 42 : nil))
        #expect(e.unknownExtraData == (extraSize > 24 ? Array(1...16) : []))
        #expect(e.id == "7" && e.name == "n")
    }

    @Test func encodeRoundTripsAsQemuWritesIt() throws {
        var e = SnapshotEntry(l1TableOffset: 0x40000, l1Size: 3, id: "4", name: "vm",
                              dateSeconds: 10, dateNanoseconds: 20, vmClockNanoseconds: 30,
                              vmStateSize: UInt64(1) << 32, diskSize: nil, icount: nil)
        e.unknownExtraData = [9, 9, 9, 9, 9, 9, 9, 9]
        e.extraDataSize = 32
        let t = SnapshotTable(entries: [e, SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: "5", name: "x")], byteLength: 0)
        let bytes = t.encode(virtualSize: 1 << 20)
        // A VM state over 4 GiB leaves the 32-bit field zero.
        #expect(bytes[32..<36].allSatisfy { $0 == 0 })
        let back = try SnapshotTable.decode(bytes, count: 2)
        #expect(back.byteLength == UInt64(bytes.count))
        #expect(back.entries[0].vmStateSize == UInt64(1) << 32)
        #expect(back.entries[0].diskSize == 1 << 20) // filled in from the virtual size
        #expect(back.entries[0].icount == nil)
        #expect(back.entries[0].unknownExtraData == [9, 9, 9, 9, 9, 9, 9, 9])
        #expect(back.entries[1].name == "x" && back.entries[1].extraDataSize == 24)
    }

    @Test func tooMuchExtraDataIsRefused() {
        let bytes = rawEntry(id: "1", name: "a", extra: [UInt8](repeating: 0, count: 1025))
        #expect(throws: Qcow2Error.snapshotExtraDataTooLarge(entry: 0)) {
            try SnapshotTable.decode(bytes, count: 1)
        }
        #expect("\(Qcow2Error.snapshotExtraDataTooLarge(entry: 0))" == "Too much extra metadata in snapshot table entry 0")
        // Exactly 1 KiB is allowed.
        let ok = rawEntry(id: "1", name: "a", extra: [UInt8](repeating: 0, count: 1024))
        #expect((try? SnapshotTable.decode(ok, count: 1))?.entries.count == 1)
    }

    @Test func truncatedTablesAreRefusedNamingTheEntry() {
        let bytes = table([rawEntry(id: "1", name: "a", extra: []), rawEntry(id: "2", name: "bb", extra: be64(0))])
        for cut in [bytes.count - 1, 60, 48 + 39] {
            #expect(throws: Qcow2Error.snapshotTableTruncated(entry: 1)) {
                try SnapshotTable.decode(Array(bytes.prefix(cut)), count: 2)
            }
        }
        // More entries announced than present.
        #expect(throws: Qcow2Error.snapshotTableTruncated(entry: 2)) {
            try SnapshotTable.decode(bytes, count: 3)
        }
        #expect(throws: Qcow2Error.snapshotTableTruncated(entry: 0)) {
            try SnapshotTable.decode([], count: 1)
        }
    }

    @Test func tableSizeAndCountAreBounded() {
        // 1024 extra bytes and two 64 KiB names per entry: about 500 entries pass 64 MiB.
        let name = String(repeating: "n", count: 65535)
        let one = rawEntry(id: name, name: name, extra: [UInt8](repeating: 0, count: 1024))
        let perEntry = UInt64((one.count + 7) & ~7)
        let fits = Int(Qcow2Limits.maxSnapshotTableBytes / perEntry)
        var calls = 0
        let result = Result {
            try SnapshotTable.decode(count: UInt32(fits + 1), fileSize: UInt64.max, tableOffset: 0) { start, length in
                calls += 1
                let within = Int(start % perEntry)
                return Array(one[within..<within + length])
            }
        }
        #expect(throws: Qcow2Error.snapshotTableTooBig) { try result.get() }
        // The oversized entry was refused before its names were read.
        #expect(calls == 2 * fits + 1)
        #expect(throws: Qcow2Error.tooManySnapshots(65537)) {
            try SnapshotTable.decode([], count: 65537)
        }
    }

    @Test func offsetsNearTheTopOfTheRangeDoNotWrap() {
        #expect(throws: Qcow2Error.self) {
            try SnapshotTable.decode(count: 2, fileSize: UInt64.max, tableOffset: UInt64.max - 50) { _, length in
                rawEntry(id: "", name: "", extra: []).prefix(length).map { $0 }
            }
        }
    }

    @Test func emptyTableReadsNothing() throws {
        let t = try SnapshotTable.decode([], count: 0)
        #expect(t.entries.isEmpty && t.byteLength == 0)
    }

    @Test func snapshotInfoFollowsQemusCStrings() {
        var e = SnapshotEntry(l1TableOffset: 0, l1Size: 0, id: "1", name: "")
        e.nameBytes = Array("before\0after".utf8)
        e.idBytes = [UInt8](repeating: 0x61, count: 200)
        e.vmClockNanoseconds = 90_061_500_000_000 + 123
        let info = SnapshotInfo(e)
        #expect(info.name == "before")
        #expect(info.id.utf8.count == 127)
        #expect(info.vmClockSeconds == 90061 && info.vmClockNanoseconds == 500_000_123)
        #expect(info.icount == nil)
    }
}
