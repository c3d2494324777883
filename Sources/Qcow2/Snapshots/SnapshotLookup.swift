// Finding snapshots and naming new ones, as QEMU 7.2 does (qcow2-snapshot.c:
// find_new_snapshot_id, find_snapshot_by_id_and_name,
// find_snapshot_by_id_or_name; block/snapshot.c: bdrv_snapshot_find).
// IDs and names are compared as C strings: up to their first NUL byte.
// Names need not be unique: QEMU allows duplicates, and every lookup takes
// the first match in table order.

extension SnapshotEntry {
    /// The ID and name as QEMU holds them (C strings).
    var idCString: ArraySlice<UInt8> { idBytes.prefix { $0 != 0 } }
    var nameCString: ArraySlice<UInt8> { nameBytes.prefix { $0 != 0 } }

    /// QEMU's snapshot names live in 256-byte buffers (QEMUSnapshotInfo's
    /// name): a longer name is cut to 255 bytes when a snapshot is made.
    package static let maxNameBytes = 255
}

extension SnapshotTable {
    /// The ID QEMU gives a new snapshot: one more than the largest ID read
    /// as a number by strtoul (an ID that is no number counts as 0).
    package var nextID: String {
        var largest: UInt64 = 0
        for entry in entries { largest = max(largest, Self.strtoul(entry.idCString)) }
        return String(largest &+ 1)
    }

    /// Index of the first snapshot with this ID and/or name (nil for a
    /// condition not applied; both nil finds nothing).
    package func index(id: String?, name: String?) -> Int? {
        guard id != nil || name != nil else { return nil }
        let idBytes = id.map { Array($0.utf8.prefix { $0 != 0 }) }
        let nameBytes = name.map { Array($0.utf8.prefix { $0 != 0 }) }
        return entries.firstIndex { entry in
            (idBytes.map { entry.idCString.elementsEqual($0) } ?? true)
                && (nameBytes.map { entry.nameCString.elementsEqual($0) } ?? true)
        }
    }

    /// The snapshot an apply names: by ID first, then by name.
    package func index(idOrName: String) -> Int? {
        index(id: idOrName, name: nil) ?? index(id: nil, name: idOrName)
    }

    /// C's strtoul in base 10: leading white space, an optional sign, then
    /// digits up to the first other byte; overflow gives ULONG_MAX, and a
    /// minus sign negates (modulo 2^64), as C does.
    static func strtoul(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var i = bytes.startIndex
        while i < bytes.endIndex, bytes[i] == 0x20 || (0x09...0x0d).contains(bytes[i]) { i += 1 }
        var negative = false
        if i < bytes.endIndex, bytes[i] == UInt8(ascii: "+") || bytes[i] == UInt8(ascii: "-") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        var value: UInt64 = 0
        var overflow = false
        while i < bytes.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[i]) {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[i] - UInt8(ascii: "0")))
            if o1 || o2 { overflow = true }
            value = sum
            i += 1
        }
        if overflow { return .max }
        return negative ? 0 &- value : value
    }
}
