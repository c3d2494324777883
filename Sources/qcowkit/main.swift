import QcowKitCommands

QcowKit.runMain()
