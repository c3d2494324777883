// The commands the service offers, in the order query-commands lists them
// (QEMU's order for the same commands).
extension QMPService {
    static func commandTable() -> [QMPCommand] {
        [
            ControlCommands.quit,
            ControlCommands.queryCommands,
            ControlCommands.queryVersion,
            ControlCommands.capabilitiesAfterNegotiation,
            JobCommands.queryJobs,
            JobCommands.finalize,
            JobCommands.dismiss,
            JobCommands.complete,
            JobCommands.cancel,
            JobCommands.resume,
            JobCommands.pause,
            BlockdevCommands.delete,
            BlockdevCommands.add,
            JobCommands.blockJobFinalize,
            JobCommands.blockJobDismiss,
            JobCommands.blockJobComplete,
            JobCommands.blockJobResume,
            JobCommands.blockJobPause,
            JobCommands.blockJobCancel,
            JobCommands.blockJobSetSpeed,
            BlockStreamCommand.command,
            BitmapCommands.merge,
            BitmapCommands.disable,
            BitmapCommands.enable,
            BitmapCommands.clear,
            BitmapCommands.remove,
            BitmapCommands.add,
            BlockdevCommands.queryNamedBlockNodes,
            BlockCommitCommand.command,
            JobCommands.queryBlockJobs,
        ]
    }
}
