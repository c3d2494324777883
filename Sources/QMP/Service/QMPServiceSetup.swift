// Setting a service up from its command line: block devices opened in the
// order given, NBD server and exports, the PID file, then the monitors and
// the qtest channel. The first failure is reported with the
// option that caused it, and whatever was set up so far is undone.
import BlockGraph

extension QMPService {
    public func configure(_ configuration: ServeConfiguration) throws {
        do {
            for (origin, object) in configuration.objects {
                do { try objects.add(object) } catch { throw QMPServiceError("\(origin): \(QMPError(reporting: error).desc)") }
            }
            for (origin, device) in configuration.blockDevices {
                do {
                    switch device {
                    case let .blockdev(options): try graph.addBlockdev(options)
                    case let .drive(drive): try graph.addDrive(drive.options, id: drive.id)
                    }
                } catch {
                    throw QMPServiceError("\(origin): \(QMPError(reporting: error).desc)")
                }
            }
            for (origin, options) in configuration.nbdServers {
                do { try startNBDServer(options) } catch { throw QMPServiceError("\(origin): \(QMPError(reporting: error).desc)") }
            }
            for (origin, options) in configuration.exports {
                do { try addBlockExport(options) } catch { throw QMPServiceError("\(origin): \(QMPError(reporting: error).desc)") }
            }
            // As qemu-storage-daemon: after the nodes, exports and NBD server,
            // before any client is greeted (a greeting on stdio is written at
            // once, and a harness may look for the file as soon as it has one).
            if let path = configuration.pidFile { try writePIDFile(path) }
            for monitor in configuration.monitors {
                do {
                    switch monitor.endpoint {
                    case .stdio: try addStdioMonitor(pretty: monitor.pretty)
                    case let .unixSocket(path): try addSocketMonitor(path: path, pretty: monitor.pretty)
                    case let .unixConnect(path): try addConnectedMonitor(path: path, pretty: monitor.pretty)
                    case let .socketDescriptor(fd): try addConnectedMonitor(fd: fd, pretty: monitor.pretty)
                    }
                } catch let error as QMPServiceError {
                    throw QMPServiceError("\(monitor.origin): \(error.message)")
                }
            }
            if let (origin, endpoint) = configuration.qtest {
                do { try addQtestChannel(endpoint) } catch let error as QMPServiceError {
                    throw QMPServiceError("\(origin): \(error.message)")
                }
            }
        } catch {
            abandon()
            throw error
        }
    }
}
