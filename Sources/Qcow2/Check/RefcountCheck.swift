// One pass of the refcount check (qcow2_check_refcounts): count every
// reference the metadata makes to a host cluster, compare the counts with the
// refcounts the image records, repair what the mode allows, then check the
// "copied" flags. The steps are in the files beside this one.

final class RefcountCheck {
    let image: Qcow2Checker
    let repair: CheckRepair
    let diagnostics: CheckDiagnostics
    var result = CheckResult()
    /// The references counted so far, one per host cluster.
    var references: ReferenceCounts
    /// Set when the refcount structure itself is broken and only a rebuild helps.
    var rebuild = false
    /// Bounds the table walking of one count (see `WalkBudget`).
    var budget = WalkBudget(fileLength: 0)
    /// The refcount blocks the last comparison found equal to the counts
    /// (RefcountComparison.swift).
    var matchingBlocks = MatchingBlocks()

    init(image: Qcow2Checker, repair: CheckRepair, diagnostics: @escaping CheckDiagnostics) throws {
        self.image = image
        self.repair = repair
        self.diagnostics = diagnostics
        references = try ReferenceCounts(clusters: 0, width: image.geometry.width,
                                         clusterSize: Int(image.geometry.clusterSize))
    }

    var geometry: CheckGeometry { image.geometry }

    /// Reports a finding, as QEMU's check prints it.
    func report(_ text: String) { diagnostics(CheckMessage(text)) }
    /// Reports an error the way QEMU's error reporting does (program name first).
    func reportError(_ text: String) { diagnostics(CheckMessage(text, isErrorReport: true)) }

    /// Runs the whole pass. Throws `CheckFailure` where QEMU's pass returns
    /// an error (the counts so far are then in `result`).
    func run() throws {
        let size = try image.fileLength()
        let clusters = geometry.clusters(forBytes: size)
        guard clusters <= UInt64(Int32.max) else {
            result.checkErrors += 1
            throw CheckFailure(errno: CheckErrno.tooBig)
        }
        // The guest disk in whole sectors, in clusters.
        result.fragmentation.totalClusters = Int64(geometry.clusters(forBytes: image.header.size & ~511))
        do {
            try references.resize(to: Int64(clusters))
        } catch {
            result.checkErrors += 1
            throw error
        }

        try calculate(repair: repair)

        // Without a rebuild, a repair compares a second time from this
        // state, with fixing enabled; the first comparison only reports.
        let beforeComparison = result
        var highestCluster = try compare(repair: [])

        if rebuild && repair.contains(.errors) {
            highestCluster = try rebuildAndRecount(highestCluster: highestCluster)
        } else if !repair.isEmpty {
            if rebuild {
                report("ERROR need to rebuild refcount structures")
                result.checkErrors += 1
                throw CheckFailure(errno: CheckErrno.io)
            }
            if result.leaks != 0 || result.corruptions != 0 {
                result = beforeComparison
                highestCluster = try compare(repair: repair)
            }
        }

        try checkCopiedFlags()
        result.imageEndOffset = (highestCluster + 1) &* Int64(geometry.clusterSize)
    }

    // MARK: Counting references

    /// Counts one reference to every cluster the byte range touches
    /// (qcow2_inc_refcounts_imrt). A range that ends a cluster or more past
    /// the end of the file is corruption and not counted; the last cluster
    /// may be only partly in the file.
    func countReference(offset: UInt64, size: UInt64) throws {
        // QEMU's arithmetic is on signed 64-bit offsets; keep its wrapping.
        let signedSize = Int64(bitPattern: size)
        guard signedSize > 0 else { return }
        let fileLength = Int64(bitPattern: try image.fileLength())
        if Int64(bitPattern: offset) &+ signedSize &- fileLength >= Int64(geometry.clusterSize) {
            report("ERROR: counting reference for region exceeding the end of the file by one cluster or more: "
                        + "offset 0x\(hexBare(offset)) size 0x\(hexBare(size))")
            result.corruptions += 1
            return
        }
        let start = geometry.startOfCluster(offset)
        let last = geometry.startOfCluster(offset &+ size &- 1)
        var clusterOffset = start
        while clusterOffset <= last {
            let k = Int64(clusterOffset >> geometry.clusterBits)
            if k >= references.count {
                do {
                    try references.resize(to: k + 1)
                } catch {
                    result.checkErrors += 1
                    throw error
                }
            }
            let refcount = references[k]
            if refcount == geometry.width.maxValue {
                report("ERROR: overflow cluster offset=0x\(hexBare(clusterOffset))")
                report("Use qcowkit amend to increase the refcount entry width or qcowkit convert to "
                            + "create a clean copy if the image cannot be opened for writing")
                result.corruptions += 1
            } else {
                references[k] = refcount + 1
            }
            let (next, overflow) = clusterOffset.addingReportingOverflow(geometry.clusterSize)
            if overflow { break }
            clusterOffset = next
        }
    }

    /// Counts every reference the image's metadata makes (calculate_refcounts):
    /// the header, the active L1 table and what it maps, every snapshot's,
    /// the snapshot table, the refcount table, the bitmaps; then checks the
    /// refcount blocks and counts them.
    func calculate(repair: CheckRepair) throws {
        budget = WalkBudget(fileLength: try image.fileLength())
        try countReference(offset: 0, size: geometry.clusterSize)
        try checkL1Table(offset: image.header.l1TableOffset, size: image.l1Table.count,
                         fragmentation: true, repair: repair, active: true)

        for snapshot in image.snapshotTable.entries {
            // "ERROR snapshot <id> (<name>) ...", the names as stored.
            let prefix = Array("ERROR snapshot ".utf8) + snapshot.idBytes + Array(" (".utf8) + snapshot.nameBytes
            if geometry.offsetIntoCluster(snapshot.l1TableOffset) != 0 {
                diagnostics(CheckMessage(bytes: prefix + Array(") l1_offset=\(hex(snapshot.l1TableOffset)): ".utf8)
                    + Array("L1 table is not cluster aligned; snapshot table entry corrupted".utf8)))
                result.corruptions += 1
                continue
            }
            if UInt64(snapshot.l1Size) > Qcow2Limits.maxL1TableBytes / 8 {
                diagnostics(CheckMessage(bytes: prefix + Array(") l1_size=\(hex(UInt64(snapshot.l1Size))): ".utf8)
                    + Array("L1 table is too large; snapshot table entry corrupted".utf8)))
                result.corruptions += 1
                continue
            }
            try checkL1Table(offset: snapshot.l1TableOffset, size: Int(snapshot.l1Size),
                             fragmentation: false, repair: repair, active: false)
        }
        try countReference(offset: image.snapshotTable.offset, size: image.snapshotTable.byteLength)
        try countReference(offset: image.refcountTableOffset, size: UInt64(image.refcountTable.count) * 8)
        try countBitmapReferences()
        try checkRefcountBlocks(repair: repair)
    }
}
