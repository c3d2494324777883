// The commands the service offers, in the order query-commands lists them
// (QEMU's order for the same commands).
extension QMPService {
    static func commandTable() -> [QMPCommand] {
        [
            ExportCommands.objectDel,
            ExportCommands.objectAdd,
            ControlCommands.quit,
            ControlCommands.queryCommands,
            ControlCommands.queryVersion,
            ControlCommands.capabilitiesAfterNegotiation,
            ExportCommands.queryBlockExports,
            ExportCommands.blockExportDel,
            ExportCommands.blockExportAdd,
            ExportCommands.nbdServerStop,
            ExportCommands.nbdServerStart,
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
            BlockdevCommands.queryNamedBlockNodes,
            BlockCommitCommand.command,
            JobCommands.queryBlockJobs,
        ]
    }
}
