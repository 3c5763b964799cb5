import BordergateCertificates
import BordergateFleet
import BordergatePolicy
import Logging
import ServiceLifecycle

/// The daemon's fleet export (`export: {postgres: ...}`): ships the audit log to PostgreSQL from
/// a cursor in `<state>/export/`. Configured at start; a reload does not change where events go
/// (a restart does), so one cursor always means one table.
struct FleetExportService: Service {
    let exporter: FleetExporter?

    init(config: BordergateConfig, settings: Settings, logger: Logger) {
        guard let export = config.export else {
            exporter = nil
            return
        }
        let target = FleetTarget(url: export.postgresURL, table: export.table)
        exporter = FleetExporter(target: target, hostName: LocalCA.hostName, logPath: settings.auditLogPath,
                                 cursorPath: settings.stateDirectory + "/export/postgres-\(export.table).cursor", logger: logger)
    }

    func run() async throws {
        guard let exporter else {
            try await gracefulShutdown()
            return
        }
        await cancelWhenGracefulShutdown { await exporter.run() }
    }
}
