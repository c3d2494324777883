// Reopening a node read-write or read-only (QEMU's bdrv_reopen_set_read_only):
// a commit job writes to a base that was opened read-only, and rewrites the
// headers of read-only overlays. The file is opened anew in the other mode
// and the image over it with it; the old image is closed cleanly first when
// it was writable (metadata written back, dirty bit cleared). Parents then
// read through the new image. Only at job boundaries, on the graph's thread.

import Qcow2

extension BlockGraph {
    /// Reopens a format node and its file node with `readOnly`.
    func reopen(_ node: BlockNode, readOnly: Bool) throws {
        guard node.isReadOnly != readOnly else { return }
        guard node.isFormatNode, let fileNode = node.file, let oldFile = fileNode.blockFile else {
            throw BlockGraphError("Node '\(node.nodeName)' cannot be reopened")
        }
        let oldImage = node.image
        if !readOnly { try checkFileLocks(oldFile, writable: true, except: fileNode) }

        // Going read-only: the writable image is closed first, so that its
        // metadata is on disk before the new one reads it.
        if readOnly {
            try node.flush()
            try closeImageKeepingFile(oldImage)
        }
        let newFile: BlockFile
        let newImage: BlockImage
        let newFileImage: RawImage
        let oldAccess = oldFile.access
        do {
            // The new descriptor takes the locks of the new mode over from
            // the old one (a conflict with another process is refused here).
            newFile = try oldFile.reopened(writable: !readOnly, access: fileAccess(node, readOnly: readOnly))
            do {
                newImage = try openImage(node, over: newFile)
                newFileImage = try RawImage(file: newFile)
            } catch {
                try? newFile.close()  // the open's error is the one to report
                try? oldFile.setAccess(oldAccess)
                throw error
            }
        } catch {
            // QEMU's reopen abort cannot fail; the reopen's error is the one thrown.
            if readOnly { try? restoreAfterFailedReopen(node, fileNode, oldFile) }
            throw error
        }
        // The old image was read-only: nothing to write back, nothing to fail.
        if !readOnly { try? closeImageKeepingFile(oldImage) }

        if let qcow2 = newImage as? Qcow2Image {
            qcow2.attachBacking(node.backing?.image)
        }
        node.replace(image: newImage, blockFile: nil)
        fileNode.replace(image: newFileImage, blockFile: newFile)
        node.isReadOnly = readOnly
        fileNode.isReadOnly = readOnly
        try? oldFile.close()  // QEMU's raw_close ignores close(2) too
        for parent in nodes where parent.backing === node { parent.qcow2?.attachBacking(newImage) }
    }

    private func openImage(_ node: BlockNode, over file: BlockFile) throws -> BlockImage {
        switch node.driver {
        case "qcow2":
            return try Qcow2Image(file: file)
        default:
            let raw = try RawImage(file: file)
            raw.isProbed = node.formatProbed
            return raw
        }
    }

    private func closeImageKeepingFile(_ image: BlockImage) throws {
        if let qcow2 = image as? Qcow2Image { try qcow2.closeKeepingFile() }
    }

    /// A read-only reopen failed after the writable image was closed: the
    /// old file is still open, so the node gets a new image over it.
    private func restoreAfterFailedReopen(_ node: BlockNode, _ fileNode: BlockNode, _ oldFile: BlockFile) throws {
        let image = try openImage(node, over: oldFile)
        if let qcow2 = image as? Qcow2Image { qcow2.attachBacking(node.backing?.image) }
        node.replace(image: image, blockFile: nil)
        for parent in nodes where parent.backing === node { parent.qcow2?.attachBacking(image) }
    }
}
