extension Qcow2Writer {
    func repairRefcountsLocked() throws {
        throw Qcow2Error.writeFailed(errno: 5, reason: "repair pending")
    }
}
