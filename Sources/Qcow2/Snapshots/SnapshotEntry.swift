// One entry of the internal snapshot table (docs/interop/qcow2.txt,
// "Snapshots"). On disk, each entry is:
//
//   0 -  7  l1_table_offset        24 - 31  vm_clock_nsec
//   8 - 11  l1_size                32 - 35  vm_state_size (32-bit)
//  12 - 13  id_str_size            36 - 39  extra_data_size
//  14 - 15  name_size              40 -     extra data, id string, name
//  16 - 19  date_sec
//  20 - 23  date_nsec
//
// Extra data, each field present only if extra_data_size covers it:
//   0 - 7 vm_state_size_large, 8 - 15 disk_size, 16 - 23 icount.
// Entries start at 8-byte aligned offsets from the table's start.

package struct SnapshotEntry: Equatable, Sendable {
    package var l1TableOffset: UInt64
    package var l1Size: UInt32
    /// The unique ID string and the name, as stored (not NUL terminated on disk).
    package var idBytes: [UInt8]
    package var nameBytes: [UInt8]
    package var dateSeconds: UInt32
    package var dateNanoseconds: UInt32
    /// Guest clock at the time of the snapshot.
    package var vmClockNanoseconds: UInt64
    /// Size of the saved VM state: the 64-bit extra field if present, else
    /// the 32-bit header field (QEMU writes 0 there when it does not fit).
    package var vmStateSize: UInt64
    /// The virtual disk size when the snapshot was taken; nil if the entry
    /// predates the field (the image's current size applies then).
    package var diskSize: UInt64?
    /// Instruction count of record/replay; nil if not recorded (absent, or
    /// stored as all ones).
    package var icount: UInt64?
    /// extra_data_size as stored.
    package var extraDataSize: UInt32
    /// Extra data beyond the fields this version knows, kept for rewriting.
    package var unknownExtraData: [UInt8]

    package init(
        l1TableOffset: UInt64, l1Size: UInt32, id: String, name: String,
        dateSeconds: UInt32 = 0, dateNanoseconds: UInt32 = 0, vmClockNanoseconds: UInt64 = 0,
        vmStateSize: UInt64 = 0, diskSize: UInt64? = nil, icount: UInt64? = nil
    ) {
        self.l1TableOffset = l1TableOffset
        self.l1Size = l1Size
        idBytes = Array(id.utf8)
        nameBytes = Array(name.utf8)
        self.dateSeconds = dateSeconds
        self.dateNanoseconds = dateNanoseconds
        self.vmClockNanoseconds = vmClockNanoseconds
        self.vmStateSize = vmStateSize
        self.diskSize = diskSize
        self.icount = icount
        extraDataSize = SnapshotEntry.knownExtraDataSize
        unknownExtraData = []
    }

    /// An entry as read from disk: the fixed part (`headerSize` bytes; its
    /// extra_data_size field is not used), then the extra data as far as it
    /// is kept, the ID and the name. Fields the extra data does not reach
    /// take QEMU's defaults (the 32-bit VM state size; no disk size; no
    /// instruction count).
    init(fixed h: [UInt8], extraData: ArraySlice<UInt8>, idBytes: [UInt8], nameBytes: [UInt8]) {
        self.init(
            l1TableOffset: h.be(UInt64.self, at: 0), l1Size: h.be(UInt32.self, at: 8), id: "", name: "",
            dateSeconds: h.be(UInt32.self, at: 16), dateNanoseconds: h.be(UInt32.self, at: 20),
            vmClockNanoseconds: h.be(UInt64.self, at: 24), vmStateSize: UInt64(h.be(UInt32.self, at: 32)))
        let extra = Array(extraData)
        extraDataSize = UInt32(extra.count)
        if extra.count >= 8 { vmStateSize = extra.be(UInt64.self, at: 0) }
        if extra.count >= 16 { diskSize = extra.be(UInt64.self, at: 8) }
        if extra.count >= 24 {
            let count = extra.be(UInt64.self, at: 16)
            icount = count == UInt64.max ? nil : count
        }
        unknownExtraData = Array(extra.dropFirst(Int(Self.knownExtraDataSize)))
        self.idBytes = idBytes
        self.nameBytes = nameBytes
    }

    /// What the fixed part of an entry says follows it.
    struct Lengths {
        var id: Int
        var name: Int
        var extraData: UInt32

        init(fixed h: [UInt8]) {
            id = Int(h.be(UInt16.self, at: 12))
            name = Int(h.be(UInt16.self, at: 14))
            extraData = h.be(UInt32.self, at: 36)
        }
    }

    package var id: String { String(decoding: idBytes, as: UTF8.self) }
    package var name: String { String(decoding: nameBytes, as: UTF8.self) }

    /// The fixed part of an entry.
    package static let headerSize = 40
    /// The extra data QEMU writes: vm_state_size_large, disk_size, icount.
    package static let knownExtraDataSize: UInt32 = 24

    /// Bytes of the entry on disk, without alignment padding.
    package var encodedLength: Int {
        Self.headerSize + Int(max(extraDataSize, Self.knownExtraDataSize)) + idBytes.count + nameBytes.count
    }

    /// The entry as QEMU writes it: the three known extra fields always, any
    /// unknown extra data after them; `virtualSize` stands in for a missing
    /// disk size, as QEMU fills it in when reading.
    package func encode(virtualSize: UInt64) -> [UInt8] {
        let extraSize = max(extraDataSize, Self.knownExtraDataSize)
        var b = [UInt8](repeating: 0, count: Self.headerSize + Int(Self.knownExtraDataSize))
        b.setBE(l1TableOffset, at: 0)
        b.setBE(l1Size, at: 8)
        b.setBE(UInt16(truncatingIfNeeded: idBytes.count), at: 12)
        b.setBE(UInt16(truncatingIfNeeded: nameBytes.count), at: 14)
        b.setBE(dateSeconds, at: 16)
        b.setBE(dateNanoseconds, at: 20)
        b.setBE(vmClockNanoseconds, at: 24)
        // A VM state too big for 32 bits reads as "no VM state" to old readers.
        b.setBE(vmStateSize <= UInt64(UInt32.max) ? UInt32(vmStateSize) : 0, at: 32)
        b.setBE(extraSize, at: 36)
        b.setBE(vmStateSize, at: 40)
        b.setBE(diskSize ?? virtualSize, at: 48)
        b.setBE(icount ?? UInt64.max, at: 56)
        return b + unknownExtraData + idBytes + nameBytes
    }
}
