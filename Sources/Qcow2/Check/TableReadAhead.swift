// Read-ahead for the check's walks over tables it reads one cluster at a
// time, in order (the L2 tables an L1 table names, the refcount blocks): a
// window of the next tables is announced to the kernel (BlockFile.willRead),
// so that on an image not yet in the page cache their reads are in flight
// together while the current one is checked. Only a hint: what the check
// reads, and when, does not change.

struct TableReadAhead {
    /// Tables announced ahead of the one being read: 4 MiB with 64 KiB clusters.
    static let window = 64

    private let file: BlockFile
    private let clusterSize: UInt64
    /// The table offset for each position of the walk (0: none).
    private let offsetAt: (Int) -> UInt64
    private let count: Int
    private var announced = 0

    init(file: BlockFile, clusterSize: UInt64, count: Int, offsetAt: @escaping (Int) -> UInt64) {
        self.file = file
        self.clusterSize = clusterSize
        self.count = count
        self.offsetAt = offsetAt
    }

    /// The walk is at `position`: announces the tables up to `window` past it.
    mutating func advance(to position: Int) {
        let end = min(count, position + Self.window)
        while announced < end {
            let offset = offsetAt(announced)
            if offset != 0 && offset & (clusterSize - 1) == 0 { file.willRead(offset: offset, length: clusterSize) }
            announced += 1
        }
    }
}
