// What an open image's metadata lock owns (the part of QEMU's BDRVQcow2State
// that s->lock guards): the mapping tables of every image, and for an image
// open for writing the write path's state. Types reachable only from here are
// not Sendable, so code reaches them only through `MetadataLock.withLock`,
// and their methods run with the lock held by construction.

/// The metadata under an image's `MetadataLock`.
final class MetadataCore {
    /// The active L1 table and the L2 cache.
    let tables: ClusterTables
    /// The write path's state (also holding `tables`); nil for images opened
    /// read-only. Set once, while the image opens.
    var writer: Qcow2Writer?

    init(tables: ClusterTables) {
        self.tables = tables
    }
}

/// The metadata lock, held: what the core's methods take to wait, wake
/// waiters, or release the lock for I/O.
typealias HeldMetadataLock = MetadataLock<MetadataCore>.Held
